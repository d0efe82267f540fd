"""An open-loop load generator: requests sent on a fixed schedule whether or not earlier ones have answered.

wrk keeps a fixed number of requests in flight (a closed loop): when the server slows down,
wrk slows down with it, and the waiting it caused never shows in its latencies. Here the i-th
request is due at start + i / rate; it goes out on a free keep-alive connection, or a new one
if all are busy, and its latency counts from when it was due, so a stall shows in full.
"""

import asyncio
import collections
import gc
import itertools
import statistics
import time
from urllib.parse import urlsplit

MAX_CONNECTIONS = 256
SLOWEST = 8  # the slowest requests of a run, reported with when they were due: a stall shows as several at once


class OpenLoop:
    """Sends `make_request(n)` (method, path, body) to `url` at `rate` a second for `seconds`."""

    def __init__(self, url, rate, seconds, make_request, timeout=10.0):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.rate, self.seconds, self.make_request, self.timeout = rate, seconds, make_request, timeout
        self.latencies, self.errors = [], 0
        self.slowest = []  # (latency ms, when it was due: ms after the first request's due time)
        self.lag = (0.0, 0.0)  # the generator's own worst lateness (ms) and when
        self.kinds = collections.Counter()  # what the errors were: a status, or the exception's name
        self._idle = []
        self._open = 0

    def run(self):
        """Run the schedule; return a summary dict (latencies in ms).

        The generator's own garbage collection is off while it runs: a full collection here paused the
        loop for 90-110 ms, every request due meanwhile went out late, and the service seemed to stall on
        all its connections at once (bench/notes.md, issue 23).
        """
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            return asyncio.run(self._run())
        finally:
            gc.enable()
            gc.unfreeze()

    async def _run(self):
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1
        total = int(self.rate * self.seconds)
        watcher = asyncio.ensure_future(self._watch(start))
        tasks = []
        for n in range(total):
            due = start + n / self.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(self._one(n, due)))
        await asyncio.gather(*tasks)
        watcher.cancel()
        for _, writer in self._idle:
            writer.close()
        return dict(summary(self.latencies, self.errors, total, self.seconds), kinds=dict(self.kinds),
                    slowest=sorted(self.slowest, reverse=True)[:SLOWEST], lag=self.lag)

    async def _watch(self, start):
        """Note the generator's own worst lateness (ms, and when): a pause here delays every request due meanwhile,
        so a stall seen on all connections at once is the generator's, not the server's, when this saw it too."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(0.005)
            late = (loop.time() - asked - 0.005) * 1000
            if late > self.lag[0]:
                self.lag = (late, (asked - start) * 1000)

    async def _one(self, n, due):
        loop = asyncio.get_running_loop()
        method, path, body = self.make_request(n)
        request = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                   f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
                   ).encode() + body
        for attempt in (1, 2):
            try:
                connection, reused = await self._connection()
            except OSError as exc:
                self._failed(type(exc).__name__)
                return
            try:
                reader, writer = connection
                writer.write(request)
                status = await asyncio.wait_for(_read_response(reader), self.timeout)
            except (OSError, EOFError, asyncio.TimeoutError, ValueError) as exc:
                connection[1].close()
                self._open -= 1
                # A kept-alive connection the server closed while idle: send again on a fresh one.
                if reused and attempt == 1 and isinstance(exc, (EOFError, ConnectionError)):
                    continue
                self._failed(type(exc).__name__)
                return
            latency = (loop.time() - due) * 1000
            self.latencies.append(latency)
            self.slowest.append((latency, n * 1000 / self.rate))
            if not 200 <= status < 300:
                self._failed(str(status))
            self._idle.append(connection)
            return

    def _failed(self, kind):
        self.errors += 1
        self.kinds[kind] += 1

    async def _connection(self):
        """A kept-alive connection if one is free (reused=True), else a new one."""
        if self._idle:
            return self._idle.pop(), True
        if self._open >= MAX_CONNECTIONS:
            raise OSError("too many connections open")
        self._open += 1
        try:
            return await asyncio.open_connection(self.host, self.port), False
        except OSError:
            self._open -= 1
            raise


async def _read_response(reader):
    """Read one HTTP/1.1 response with a Content-Length; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


def percentile(values, fraction):
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))]


def summary(latencies, errors, sent, seconds):
    """p50, p99, p99.9 and worst latency (ms), errors and the rate actually answered."""
    if not latencies:
        return {"p50": float("nan"), "p99": float("nan"), "p999": float("nan"), "max": float("nan"),
                "errors": errors, "rate": 0.0}
    return {"p50": statistics.median(latencies), "p99": percentile(latencies, 0.99),
            "p999": percentile(latencies, 0.999), "max": max(latencies),
            "errors": errors, "rate": len(latencies) / seconds, "sent": sent}


def sessions(prefix):
    """Fresh sessionIds: every request of a run is a new call."""
    counter = itertools.count()
    return lambda: f"ATVId_{prefix}_{next(counter)}_{time.monotonic_ns()}"

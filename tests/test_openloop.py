"""The bench's open-loop generator shows a server's stall in full: the slowest requests, with when they were due.

A closed-loop generator (wrk) slows down with the server and hides a pause; this one keeps its
schedule, so one 150 ms pause of the server is seen on every request due during it. The server
here is a real HTTP server on 127.0.0.1 that answers at once, except for one pause.
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.openloop import OpenLoop, percentile, summary

PAUSE = 0.15  # seconds the server stops answering, once


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def _serve(pause_at):
    """A local server answering 200 at once; the requests arriving after `pause_at` of them wait for one pause."""
    state = {"count": 0, "until": None}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state["count"] += 1
                if state["count"] == pause_at:
                    state["until"] = time.monotonic() + PAUSE
                until = state["until"]
            if until is not None and time.monotonic() < until:
                time.sleep(until - time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def paused_server():
    server = _serve(pause_at=100)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_pause_of_the_server_shows_on_the_requests_due_during_it(paused_server):
    rate = 200
    result = OpenLoop(paused_server, rate, 1.5, lambda n: ("POST", "/", b"x=1")).run()

    assert result["errors"] == 0
    assert result["sent"] == 300
    slowest = result["slowest"]
    assert len(slowest) == 8
    # The request that met the pause waited it out, and those due just after it waited almost as long.
    assert slowest[0][0] >= PAUSE * 1000 * 0.9
    assert all(latency >= PAUSE * 1000 / 2 for latency, _ in slowest)
    # They were due together, around the 100th request (0.5 s into the run at 200 a second), not spread out.
    dues = [due for _, due in slowest]
    assert max(dues) - min(dues) <= PAUSE * 1000
    assert 400 <= min(dues) <= 700
    # p99.9 catches the pause too; the median does not.
    assert result["p999"] >= PAUSE * 1000 / 2
    assert result["p50"] < PAUSE * 1000 / 3
    # The generator itself kept its schedule: the stall is the server's.
    lag, _ = result["lag"]
    assert lag < PAUSE * 1000 / 2


def test_percentiles_are_by_nearest_rank():
    values = list(range(1, 1001))
    assert percentile(values, 0.5) == 500
    assert percentile(values, 0.99) == 990
    assert percentile(values, 0.999) == 999
    figures = summary([float(v) for v in values], 0, 1000, 2)
    assert (figures["p50"], figures["p99"], figures["p999"], figures["max"]) == (500.5, 990.0, 999.0, 1000.0)
    assert figures["rate"] == 500

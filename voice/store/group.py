"""Group commit without a writer thread: whichever request thread takes its process's turn stores
everything waiting at that moment, in one transaction, then hands the turn on.

SQLite lets one writer work at a time. A transaction per callback held the host's write turn
across several waits for the GIL (every statement and the commit release it), so the turn,
not the CPU, became the limit; a writer thread of its own starved for the GIL instead. Here the
threads of a process queue their writes; one of them, the leader, takes what is queued, runs
it under the host's write turn on the process's write connection with one commit, wakes the
owners with their results, and leads until its own write is stored. Then it hands the lead to
the oldest write still waiting. Nothing runs in the background: every write is made by a
thread that waits for it, so "OK" always means committed.
"""

import logging
import os
import threading
import time

from voice import metrics
from voice.store.db import StoreUnavailable

log = logging.getLogger(__name__)

MAX_BATCH = 64  # requests whose writes go into one transaction
ATTEMPTS = 3  # a batch that lost a race with another host (a deadlock, a conflict) is run again
RETRY_STATES = ("40001", "40P01")  # PostgreSQL: serialization failure, deadlock detected


class _Pending:
    """One request's writes, and what became of them."""

    __slots__ = ("writes", "woken", "done", "lead", "result", "error")

    def __init__(self, writes):
        self.writes = writes
        self.woken = threading.Event()
        self.done = self.lead = False
        self.result = self.error = None


class GroupCommit:
    """Runs store(cursor, writes) for the writes of a process's threads, those waiting together in one transaction."""

    def __init__(self, engine, turn, store, retry=(), measured=True):
        self.engine = engine
        self.measured = measured  # export batches, commit times and waiting writes as metrics
        self.turn = turn  # the host's write turn, a context manager
        self.store = store  # store(cursor, writes) -> a result per write, in the caller's transaction
        self.retry = retry  # what store() raises when the batch should simply run again
        self._errors = engine.dialect.loaded_dbapi.Error
        self._away = engine.dialect.loaded_dbapi.OperationalError
        self._mutex = threading.Lock()
        self._pid = None
        self._queue = []
        self._leading = False
        self._connection = None

    def submit(self, writes, timeout):
        """Store `writes` with the others waiting; their results once committed, or StoreUnavailable."""
        pending = _Pending(writes)
        with self._mutex:
            if self._pid != os.getpid():  # a forked worker starts with nobody leading and no connection
                self._pid, self._queue, self._leading, self._connection = os.getpid(), [], False, None
            self._queue.append(pending)
            lead = pending.lead = not self._leading
            self._leading = True
        if not lead and not pending.woken.wait(timeout):
            with self._mutex:
                if not pending.lead and pending in self._queue:  # nobody took it: give up on it
                    self._queue.remove(pending)
                    raise StoreUnavailable("timed out waiting for this process's turn to write")
            pending.woken.wait()  # taken by a batch (which ends within its own bound), or handed the lead
        if not pending.done:
            self._lead(pending)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _lead(self, mine):
        """Store batches until `mine` is stored, then hand the lead on."""
        try:
            while not mine.done:
                with self._mutex:
                    batch = self._queue[:MAX_BATCH]
                    del self._queue[:MAX_BATCH]
                    waiting = len(self._queue) + len(batch)
                if self.measured:  # this process's share of the gauge: what waits at the start of a batch
                    metrics.STORE_WAITING.set(waiting)
                try:
                    results = self.commit([pending.writes for pending in batch])
                except Exception as exc:  # a bug of ours fails this batch at once, never the requests after it
                    log.exception("storing a batch of %d requests failed", len(batch))
                    results = [StoreUnavailable(f"unexpected error: {exc!r}")] * len(batch)
                self._finish(batch, results)
        finally:
            with self._mutex:
                if self._queue:
                    following = self._queue[0]
                    following.lead = True
                    following.woken.set()
                else:
                    self._leading = False
                    if self.measured:
                        metrics.STORE_WAITING.set(0)

    def commit(self, requests):
        """Store the writes of several requests in one transaction; per request, its results or an exception.

        If the transaction fails for a reason other than the database being away, the requests
        are stored one at a time, so that one bad write cannot sink the others.
        """
        try:
            return self._transaction(requests)
        except StoreUnavailable as exc:
            # The database away, locked past the bound, or the write turn not had in time: one at a
            # time would only wait that long again for each.
            away = exc.__cause__ is None or isinstance(exc.__cause__, self._away)
            if len(requests) == 1 or away:
                return [exc] * len(requests)
        results = []
        for writes in requests:
            try:
                results += self._transaction([writes])
            except StoreUnavailable as exc:
                results.append(exc)
        return results

    def _transaction(self, requests):
        """A result list per request, all committed in one transaction (run again after a lost race)."""
        writes = [write for request in requests for write in request]
        started = time.perf_counter()
        try:
            results = self._attempts(writes)
        except StoreUnavailable:
            if self.measured:
                metrics.child(metrics.STORE_BATCHES, "failed").inc()
            raise
        if self.measured:
            metrics.child(metrics.STORE_BATCHES, "committed").inc()
            metrics.STORE_COMMIT.observe(time.perf_counter() - started)
        per_request, start = [], 0
        for request in requests:
            per_request.append(results[start:start + len(request)])
            start += len(request)
        return per_request

    def _attempts(self, writes):
        """The writes' results, committed; run again after a lost race, up to ATTEMPTS times."""
        for attempt in range(1, ATTEMPTS + 1):
            with self.turn():
                connection = self._connect()
                try:
                    results = self.store(connection.cursor(), writes)
                    connection.commit()
                    break
                except self.retry:
                    connection.rollback()
                    if attempt == ATTEMPTS:
                        raise StoreUnavailable("lost the race for these calls to another writer, again") from None
                except self._errors as exc:
                    self._drop(connection)
                    if getattr(exc, "sqlstate", None) not in RETRY_STATES or attempt == ATTEMPTS:
                        raise StoreUnavailable(str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc
                except BaseException:
                    self._drop(connection)
                    raise
        return results

    def _connect(self):
        """The process's write connection, taken out of the pool for good (only the leader uses it)."""
        if self._connection is None:
            try:
                connection = self.engine.raw_connection()
            except Exception as exc:  # SQLAlchemy's wrapping of a refused or failed connect, or its pool timing out
                raise StoreUnavailable(str(exc).splitlines()[0]) from getattr(exc, "orig", None)
            connection.detach()
            self._connection = connection
        return self._connection

    def _drop(self, connection):
        """Give up a connection after a failure: roll back, close, and connect afresh next time."""
        self._connection = None
        for step in (connection.rollback, connection.close):
            try:
                step()
            except self._errors:
                pass

    @staticmethod
    def _finish(batch, results):
        for pending, result in zip(batch, results):
            if isinstance(result, Exception):
                pending.error = result
            else:
                pending.result = result
            pending.done = True
            pending.woken.set()

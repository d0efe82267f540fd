"""Group commit: one writer thread per process stores the notifications waiting at that moment in one
transaction.

A commit per callback made the database the service's limit (one SQLite writer per host, one
transaction each, and every waiting thread holding a worker thread). Here a request hands its
notification over; the writer takes everything queued, stores it with a few statements for the
whole batch and commits once. While it works, the next batch gathers.

Two ways to hand over:
- `submit(item)` waits until the batch holding the item has committed (or failed): what
  /voice/events and the final notification on /voice/instruct do, so "OK" always means stored.
- `submit(item, wait=False)` returns at once: what an active call's /voice/instruct does, since
  AT is waiting for the next XML while the caller hears silence. The item is stored with the
  next batch, within milliseconds; on a graceful stop the queue is drained first (`drain`). Only
  a crash of the worker (kill -9, OOM) in those milliseconds can lose it; the call's final
  notification, which carries its figures, is always stored before it is acknowledged. While the
  database is away, such items are tried again for up to RETRY_SECONDS.
"""

import atexit
import logging
import os
import queue
import threading
import time

import sqlalchemy as sa

from voice.db import StoreUnavailable, db, write_turn

log = logging.getLogger(__name__)

MAX_BATCH = 64
MAX_BEHIND = 32  # items not yet stored before write-behind callers wait for theirs as well
IDLE_SECONDS = 30  # an idle writer thread ends; the next request starts another
DRAIN_SECONDS = 10  # how long a stopping worker waits for what is still queued
RETRY_SECONDS = 60  # how long an unacknowledged item is tried again while the database is away
RETRY_PAUSE = 0.5  # the writer's pause after the database failed a batch


class _Pending:
    """One request's item, and what became of it."""

    __slots__ = ("item", "done", "result", "error", "since")

    def __init__(self, item, wait):
        self.item = item
        self.done = threading.Event() if wait else None
        self.result = None
        self.error = None
        self.since = time.monotonic()


class GroupWriter:
    """Runs `store(items) -> results` for queued items, a batch per transaction, in one thread per process."""

    def __init__(self, app, store, describe=repr):
        self.app = app
        self.store = store
        self.describe = describe  # names an item in the log when nobody waits to hear of its failure
        self._lock = threading.Lock()
        self._queue = None
        self._thread = None
        self._pid = None
        self._submitted = self._stored = 0  # counts of items handed over and finished, for drain()
        self._progress = threading.Condition(self._lock)

    def submit(self, item, wait=True):
        """Store `item` with whatever else is waiting; with `wait`, its result once committed.

        Without `wait` it returns None at once, unless the writer has fallen MAX_BEHIND items
        behind: then the caller waits like the others, so the queue stays bounded.
        """
        with self._lock:
            if self._pid != os.getpid():  # a forked worker starts with no writer thread
                self._queue, self._thread, self._pid = queue.SimpleQueue(), None, os.getpid()
                self._submitted = self._stored = 0
                atexit.register(self.drain)
            wait = wait or self._submitted - self._stored >= MAX_BEHIND
            pending = _Pending(item, wait)
            self._queue.put(pending)
            self._submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, args=(self._queue,), name="voice-writer",
                                                daemon=True)
                self._thread.start()
        if not wait:
            return None
        # The batch before ours may use its whole bound, then ours: wait for both, and a little more.
        if not pending.done.wait(2 * float(self.app.config["DATABASE_TIMEOUT_SECONDS"]) + 1):
            raise StoreUnavailable("timed out waiting for the database writer")
        if pending.error is not None:
            raise pending.error
        return pending.result

    def drain(self, timeout=DRAIN_SECONDS):
        """Wait until everything handed over so far is stored (or has failed); False if `timeout` ran out.

        Run at exit, and before history is read, so a process reads what it has acknowledged.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._submitted
            while self._stored < target and self._pid == os.getpid():
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error("%d notifications were still waiting to be stored", target - self._stored)
                    return False
                self._progress.wait(left)
        return True

    def _run(self, waiting):
        try:
            self._serve(waiting)
        finally:  # however it ends, the next submit starts a writer again
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _serve(self, waiting):
        with self.app.app_context():
            while True:
                try:
                    batch = [waiting.get(timeout=IDLE_SECONDS)]
                except queue.Empty:
                    with self._lock:
                        if waiting.empty():  # under the lock: a submit now starts a new writer
                            self._thread = None
                            return
                    continue
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(waiting.get_nowait())
                    except queue.Empty:
                        break
                try:
                    again = self._commit(batch)
                except Exception as exc:  # a bug of ours: fail this batch, keep the writer
                    log.exception("the writer failed a batch of %d", len(batch))
                    again = []
                    for pending in batch:
                        pending.error = StoreUnavailable(f"unexpected error: {exc!r}")
                        self._finish(pending)
                for pending in again:
                    waiting.put(pending)
                with self._lock:
                    self._stored += len(batch) - len(again)
                    self._progress.notify_all()
                if again:
                    time.sleep(RETRY_PAUSE)

    def _commit(self, batch):
        """Store a batch; the write-behind items to try again because the database is away."""
        again = []
        try:
            self._store(batch)
        except StoreUnavailable as exc:
            away = exc.__cause__ is None or isinstance(exc.__cause__, sa.exc.OperationalError)
            if not away and len(batch) > 1:
                # Not the database being away: one item may be at fault; keep it from sinking the rest.
                log.warning("a batch of %d notifications failed (%s); storing them one at a time", len(batch), exc)
                for pending in batch:
                    self._commit_one(pending)
            else:
                retry_until = time.monotonic() - RETRY_SECONDS
                again = [p for p in batch if away and p.done is None and p.since > retry_until]
                for pending in batch:
                    pending.error = None if pending in again else exc
        except Exception as exc:  # a bug here must not kill the writer and leave requests waiting
            log.exception("storing a batch of %d notifications failed", len(batch))
            for pending in batch:
                pending.error = StoreUnavailable(f"unexpected error: {exc!r}")
        finally:
            db.session.remove()
            for pending in batch:
                if pending not in again:
                    self._finish(pending)
        return again

    def _commit_one(self, pending):
        try:
            self._store([pending])
        except Exception as exc:
            pending.error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(repr(exc))
        finally:
            db.session.remove()

    def _store(self, batch):
        with write_turn(self.app):
            try:
                results = self.store([pending.item for pending in batch])
                db.session.commit()
            except sa.exc.SQLAlchemyError as exc:
                db.session.rollback()
                raise StoreUnavailable(str(exc).splitlines()[0]) from exc
        for pending, result in zip(batch, results):
            pending.result = result

    def _finish(self, pending):
        if pending.done is not None:
            pending.done.set()
        elif pending.error is not None:  # nobody is waiting to hear it: say it here
            log.error("%s not recorded: %s", self.describe(pending.item), pending.error)

"""Background work on huey, run by the worker process (`flask --app app voice worker`, the Procfile's `worker:`).

The queue's storage follows the database: a SQLite file beside the app's (the instance folder)
by default, the same PostgreSQL as DATABASE_URL when it names one (so workers on several hosts
share one queue), or what VOICE_JOBS_URL names (sqlite:///path, postgresql://..., redis://...).

Campaigns run on three tasks:
- `campaigns.tick`, once a second: start scheduled campaigns, settle ended calls, claim due
  contacts within the pacing, and hand each claimed attempt to `campaigns.place`; it queues itself
  again (and waits out the rest of its second when it runs), and at most one tick runs at a time
  (a lease in the queue's storage);
- `campaigns.place`: dial one attempt (voice.campaigns.dispatch.place), on the worker's threads;
- `campaigns.housekeeping`, every minute: settle what a killed worker or a lost notification
  left, expire and complete campaigns, and queue a tick (a chain of ticks a killed worker stopped
  starts again; when one runs, the second ends at once).
The same tick, in rounds of their own (one failing does not stop the others), hands ended calls to
what follows them (voice/after_calls.py), and queues the webhook deliveries (`webhooks.deliver`)
and the recording downloads (`recordings.fetch`) that are due; housekeeping gives up on what has
failed for too long. On SQLite, its last round copies the database's log (WAL) into the database file
and syncs it, away from the callbacks' write turn (voice.store.db.checkpoint).
The truth is in the tables, never in the queue: a task lost with its worker costs a delay, not
a call, a delivery or a recording.
"""

import logging
import os
import time

import sqlalchemy as sa
from huey import PostgresHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from huey.storage import PostgresStorage

from voice.store.db import checkpoint, db

log = logging.getLogger(__name__)

TICK_SECONDS = 1
LEASE_SECONDS = 30      # a tick held longer than this by a killed worker is taken over
LEASE, LAST = "campaigns.tick.lease", "campaigns.tick.last"


def storage_for(app):
    """The huey instance whose storage VOICE_JOBS_URL, else DATABASE_URL, names."""
    url = app.config.get("VOICE_JOBS_URL") or ""
    if not url:
        with app.app_context():  # the engine's URL, where Flask-SQLAlchemy put a relative SQLite path (instance/)
            database = db.engine.url
        if database.get_backend_name() == "postgresql":
            url = database.set(drivername="postgresql").render_as_string(hide_password=False)
        else:
            path = database.database
            folder = os.path.dirname(path) if path and path != ":memory:" and not path.startswith("file:") \
                else app.instance_path
            url = "sqlite:///" + os.path.join(folder, "jobs.sqlite3")
    if url.startswith("redis://") or url.startswith("rediss://"):
        return RedisHuey("voice", url=url, results=False)
    if url.startswith("postgresql"):
        dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresHuey("voice", dsn=dsn, results=False, storage_class=_PostgresStorage)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return SqliteHuey("voice", filename=path, results=False)
    raise ValueError("VOICE_JOBS_URL must be sqlite:///path, postgresql://... or redis://...")


class _PostgresStorage(PostgresStorage):
    """huey's PostgreSQL storage, whose tables workers starting at once create one at a time (PostgreSQL's
    CREATE TABLE IF NOT EXISTS is not safe against itself: the second fails on the type it creates)."""

    def initialize_schema(self):
        with self.db(commit=True, close=True) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in self.ddl:
                cursor.execute(statement)


SCHEMA_LOCK = 0x766F6963  # any constant of ours: the advisory lock taken while huey's tables are created


class Jobs:
    """The app's huey instance and its tasks."""

    def __init__(self, app):
        self.app = app
        self.huey = huey = storage_for(app)
        # The tick goes before the dials it queued (huey takes higher priorities first), so claims keep their pace.
        self.tick = huey.task(name="campaigns.tick", priority=10)(self._tick)
        self.place = huey.task(name="campaigns.place", priority=5)(self._place)
        self.deliver = huey.task(name="webhooks.deliver")(self._deliver)
        self.fetch = huey.task(name="recordings.fetch")(self._fetch)
        self.housekeeping = huey.periodic_task(crontab(minute="*"), name="campaigns.housekeeping")(
            self._housekeeping)

    def _tick(self):
        """One round of dispatch; whoever held the lease queues the next, which starts a second after this one."""
        from voice.campaigns import dispatch, settling

        last = self.huey.get(LAST, peek=True)
        if last is not None:  # a tick a second: wait out what is left of it (huey's scheduler only sees seconds)
            time.sleep(min(TICK_SECONDS, max(0.0, last + TICK_SECONDS - time.time())))
        now = time.time()
        latest = self.huey.get(LAST, peek=True)
        if latest != last and latest is not None and now - latest < TICK_SECONDS / 2:
            return  # another chain of ticks ran meanwhile: this one ends, so one chain remains
        if not self._lease(now):
            return
        from voice import after_calls
        from voice.recordings import archive
        from voice.webhooks import delivery

        claimed = deliveries = downloads = ()
        try:
            self.huey.put(LAST, now)
            with self.app.app_context():
                try:
                    flow = self.app.extensions["voice_flow"]
                    dispatch.start_scheduled()
                    settling.settle(flow)
                    settling.expire_and_finish()
                    claimed = dispatch.claim()
                except Exception:  # the next tick tries again; a database outage must not end the chain
                    log.exception("campaign tick failed")
                _round("handing ended calls over", after_calls.handle)
                deliveries = _round("claiming webhook deliveries", delivery.due) or ()
                downloads = _round("claiming recording downloads", archive.due) or ()
                _round("copying SQLite's log into the database", checkpoint)
        finally:
            self.huey.delete(LEASE)
            self.tick()
        for attempt_id in claimed:
            self.place(attempt_id)
        for delivery_id in deliveries:
            self.deliver(delivery_id)
        for recording_id in downloads:
            self.fetch(recording_id)

    def _lease(self, now):
        """Hold the tick's lease (one tick at a time across every worker on this queue); False if another holds it."""
        if self.huey.put_if_empty(LEASE, now + LEASE_SECONDS):
            return True
        held = self.huey.get(LEASE, peek=True)
        if held is not None and held < now:  # its holder was killed mid-tick
            self.huey.delete(LEASE)
            return self.huey.put_if_empty(LEASE, now + LEASE_SECONDS)
        return False

    def _place(self, attempt_id):
        from voice.campaigns import dispatch

        with self.app.app_context():
            try:
                dispatch.place(attempt_id)
            except Exception:  # housekeeping settles the attempt: it is `dialling` or still `claimed`
                log.exception("campaign attempt %s could not be placed", attempt_id)

    def _deliver(self, delivery_id):
        from voice.webhooks import delivery

        # A failure leaves the delivery claimed: its claim runs out and a later tick queues it again.
        self._in_app(delivery.deliver, delivery_id, "webhook delivery %s failed")

    def _fetch(self, recording_id):
        from voice.recordings import archive

        # As for deliveries: the recording's claim runs out and a later tick queues it again.
        self._in_app(archive.fetch, recording_id, "recording %s could not be fetched")

    def _in_app(self, work, row_id, failed):
        """Run a task's `work(row_id)` in an app context; a failure is logged (`failed` % row_id), never raised."""
        with self.app.app_context():
            try:
                work(row_id)
            except Exception:
                log.exception(failed, row_id)

    def _housekeeping(self):
        from voice.campaigns import service, settling
        from voice.recordings import archive
        from voice.webhooks import delivery

        with self.app.app_context():
            try:
                settling.settle(self.app.extensions["voice_flow"])  # what ended is settled, never taken for lost
                settling.recover()
                settling.expire_and_finish()
                service.drop_abandoned()
            except Exception:
                log.exception("campaign housekeeping failed")
            _round("webhook housekeeping", delivery.housekeeping)
            _round("recording housekeeping", archive.housekeeping)
        self.tick()  # a chain stopped by a killed worker starts again; a second chain ends at its first tick


def _round(what, work):
    """Run one round of the tick or of housekeeping; a failure is logged and leaves the other rounds to run."""
    try:
        return work()
    except Exception:
        log.exception("%s failed", what)
        return None


def jobs_of(app):
    """The app's Jobs, made when first asked for: only the worker and the CLI use the queue, so the web workers
    never import huey and the storages it brings (redis, psycopg: about 17 MB a worker)."""
    if "voice_jobs" not in app.extensions:
        app.extensions["voice_jobs"] = Jobs(app)
    return app.extensions["voice_jobs"]


def run_worker(app, threads):
    """Run the huey consumer with `threads` worker threads until stopped (SIGINT waits for running tasks)."""
    jobs = jobs_of(app)
    consumer = Consumer(jobs.huey, workers=threads, worker_type="thread", periodic=True, scheduler_interval=1,
                        initial_delay=0.05, max_delay=0.5, check_worker_health=True)
    jobs.huey.delete(LEASE)  # a lease left by a killed worker; a live one's other chain ends at its next tick
    jobs.tick()
    log.info("worker started: %s threads, jobs in %s", threads, type(jobs.huey.storage).__name__)
    consumer.run()

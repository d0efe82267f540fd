"""The database: the SQLAlchemy extension, its engine settings, and failures turned into our own error.

Default: a SQLite file in the instance folder (WAL, pooled connections, a bounded wait for locks).
DATABASE_URL may name PostgreSQL instead; several app hosts can then share it.
"""

import contextlib
import fcntl
import logging
import os
import threading
from datetime import datetime, timezone

import sqlalchemy as sa
from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)



class Base(DeclarativeBase):
    """Declarative base of the service's tables."""


db = SQLAlchemy(model_class=Base)


class StoreUnavailable(Exception):
    """The database could not be reached, or stayed locked past the bound."""


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and read back as an aware UTC datetime, on every backend."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=timezone.utc) if value is not None else None


def utcnow():
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)


def iso(moment):
    """A UTC time as the API shows it (`2026-11-27T08:00:00Z`), or None."""
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def engine_options(url, timeout):
    """Engine settings for `url` that bound every wait on the database by `timeout` seconds."""
    backend = sa.engine.make_url(url).get_backend_name()
    options = {"pool_timeout": timeout}
    if backend == "sqlite":
        options["connect_args"] = {"timeout": timeout}
    elif backend == "postgresql":
        millis = int(timeout * 1000)
        options["connect_args"] = {
            "connect_timeout": max(1, int(timeout)),
            "options": f"-c lock_timeout={millis} -c statement_timeout={millis * 2}",
        }
        options["pool_size"] = 10
        options["pool_pre_ping"] = True  # a server restart or idle cut must not fail the next callback
    return options


# SQLite's WAL is copied into the database file by a checkpoint, which syncs the disk; commits do not
# (synchronous=NORMAL). By default a commit that leaves the WAL at 1,000 pages checkpoints, holding the
# host's write turn through the syncs: on a shared disk a sync now and then took 100-320 ms, and every
# writer of the host stalled behind it. Here the worker checkpoints each second outside the turn
# (checkpoint()), and only once the WAL reaches RESTART_PAGES does it take the turn, for the few pages
# written meanwhile, so that the next writer starts the WAL afresh. A commit checkpoints only past
# AUTOCHECKPOINT_PAGES: when no worker runs, or writes outrun it.
RESTART_PAGES = 16_000      # 64 MB of WAL
AUTOCHECKPOINT_PAGES = 32_000


def _sqlite_pragmas(dbapi_connection, _record):
    """WAL lets readers go on while one writer commits; foreign keys are off by default in SQLite.

    synchronous=NORMAL in WAL mode: a commit is durable once it returns as far as any crash of the
    service goes (kill -9 of a worker or the master included); only a power cut or OS crash can
    lose the last commits, which is what PostgreSQL (DATABASE_URL) is for. Commits never sync the
    disk then; checkpoints do (see AUTOCHECKPOINT_PAGES).
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cursor.close()


def checkpoint():
    """Copy SQLite's WAL into the database file and sync it, mostly outside the write turn (the worker, each second).

    PASSIVE: writers go on meanwhile. Past RESTART_PAGES, a second pass in the turn copies what they
    wrote meanwhile, so the next writer starts the WAL afresh. Nothing to do on PostgreSQL. Returns the
    WAL's pages and those copied (of the last pass) on SQLite, else None.
    """
    if db.engine.dialect.name != "sqlite":
        return None
    with db.engine.connect() as connection:
        _, pages, copied = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
        if pages >= RESTART_PAGES:
            with write_turn():
                _, pages, copied = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
    return pages, copied


def init_app(app):
    """Bind the database and migrations to the app, from DATABASE_URL or the SQLite default."""
    url = app.extensions["voice_settings"].database_url
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(url, float(app.config["DATABASE_TIMEOUT_SECONDS"]))
    db.init_app(app)
    if not app.config["VOICE_SERVE_ONLY"]:
        # Flask-Migrate brings Alembic, about 10 MB a process; workers under gunicorn only serve
        # (migrations run from the flask CLI: the Procfile's release step, make run).
        from flask_migrate import Migrate

        Migrate(app, db, directory=app.config["MIGRATIONS_DIR"])
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
            database = db.engine.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                app.extensions["voice_write_turn"] = WriteTurn(os.path.abspath(database) + ".writer-lock")


class WriteTurn:
    """SQLite's writers taking turns: a lock for the threads of a process, a file lock for the processes of a host.

    SQLite lets one writer work at a time and makes the others poll its lock with growing sleeps
    (its busy handler: 1, 2, 5 ... 100 ms), so under load most waiting writers sleep while the
    lock is free, which is what made latency spike. Here threads queue on the lock, and a
    process looks at the file lock again every 0.2 to 2 ms. The file lock dies with its process
    (kill -9 included).
    """

    def __init__(self, path):
        self.path = path
        self._threads = threading.Lock()
        self._file = None
        self._pid = None

    @contextlib.contextmanager
    def __call__(self, timeout):
        if not self._threads.acquire(timeout=timeout):
            raise StoreUnavailable("timed out waiting for this process's turn to write")
        try:
            descriptor = self._descriptor()
            # One thread per process waits here, in the kernel, without the GIL, and is woken the
            # moment the holder lets go. A holder keeps the lock for one short transaction, bounded
            # by the database timeout, so the wait is bounded too; the others wait on the thread
            # lock above, within their own bound.
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _descriptor(self):
        """This process's own descriptor of the lock file (a forked worker opens its own)."""
        if self._pid != os.getpid():
            try:
                self._file = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:  # the database's folder is missing or not writable
                raise StoreUnavailable(f"cannot open the write turn's lock file: {exc.strerror}") from exc
            self._pid = os.getpid()
        return self._file


@contextlib.contextmanager
def write_turn(app=None):
    """Hold this host's turn to write to SQLite (nothing to wait for on PostgreSQL)."""
    app = app or current_app
    turn = app.extensions.get("voice_write_turn")
    if turn is None:
        yield
        return
    with turn(float(app.config["DATABASE_TIMEOUT_SECONDS"])):
        yield


def insert(table):
    """An INSERT on `table` in the session's dialect, whose ON CONFLICT clauses both SQLite and PostgreSQL take."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


def guarded(work, write=False):
    """Run `work()` in the session and commit; database failures become StoreUnavailable.

    Writes wait for their turn first (see WriteTurn).
    """
    with write_turn() if write else contextlib.nullcontext():
        try:
            result = work()
            db.session.commit()
            return result
        except sa.exc.SQLAlchemyError as exc:
            db.session.rollback()
            raise StoreUnavailable(str(exc).splitlines()[0]) from exc

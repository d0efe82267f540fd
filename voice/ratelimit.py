"""Rate limits, with `limits` (the library under Flask-Limiter): dial-outs per API key and per destination
number, wrong API keys and console sign-ins per address.

Limits must hold across every worker of a deployment, so the counters cannot live in one
process's memory. With RATELIMIT_STORAGE_URI set (Redis for several hosts) `limits` uses it;
unset, the counters live in a SQLite file in the instance folder, shared by all the workers of
one host, through the small `limits` storage below (`limits` ships none that needs no server).
The limits are checked where they apply, never in a hook on every request: AT's callbacks never
touch them.
"""

import fcntl
import logging
import os
import sqlite3
import threading
import time
from urllib.parse import urlparse

from flask import current_app

from voice import settings
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

log = logging.getLogger(__name__)


class SQLiteStorage(Storage):
    """Fixed-window counters in a SQLite file, safe across processes (`sqlite:///abs/path`)."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri, wrap_exceptions=False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = urlparse(uri).path
        self._local = threading.local()

    @property
    def base_exceptions(self):
        return sqlite3.Error

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            # Switching a new file to WAL answers "database is locked" at once, without waiting,
            # when another worker's first connection is doing the same: first connections take turns.
            with open(self.path + ".init-lock", "a") as turn:
                fcntl.flock(turn, fcntl.LOCK_EX)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS counters "
                    "(key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL)")
            self._local.connection = connection
        return connection

    def incr(self, key, expiry, amount=1):
        """Add `amount` to the counter of `key`, starting a new window of `expiry` s if the last one ended."""
        now = time.time()
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "INSERT INTO counters (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET "
                "value = CASE WHEN expires <= ? THEN excluded.value ELSE value + excluded.value END, "
                "expires = CASE WHEN expires <= ? THEN excluded.expires ELSE expires END",
                (key, amount, now + expiry, now, now),
            )
            value = connection.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()[0]
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return value

    def get(self, key):
        """The counter of `key` in its current window, 0 once the window ended."""
        row = self._connection().execute(
            "SELECT value FROM counters WHERE key = ? AND expires > ?", (key, time.time())
        ).fetchone()
        return row[0] if row else 0

    def get_expiry(self, key):
        """When the current window of `key` ends (epoch seconds)."""
        row = self._connection().execute("SELECT expires FROM counters WHERE key = ?", (key,)).fetchone()
        return row[0] if row else time.time()

    def check(self):
        """True while the file can be read."""
        try:
            self._connection().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def reset(self):
        """Drop every counter; return how many there were."""
        return self._connection().execute("DELETE FROM counters").rowcount

    def clear(self, key):
        """Drop the counter of `key`."""
        self._connection().execute("DELETE FROM counters WHERE key = ?", (key,))


def count_dialouts(label, numbers):
    """Count a dial-out to each of `numbers`: one each against each number's limit and, given a key `label`, the key's.

    A browser client's own dial has no key (`label` None): only its destination is counted.
    Every limit is tested before any is counted, so a refused request costs nothing; the
    refusal is a 429 with Retry-After. The counters live in the limits store, shared by every
    worker (and every host, with Redis).
    """
    strategy, prefix = _strategy(), current_app.config["RATELIMIT_KEY_PREFIX"]
    checks = [] if label is None else [
        (item, ("dialout-per-key", label), len(numbers),
         "This key may place at most {item} dial-outs (VOICE_RATE_LIMIT_PER_KEY).")
        for item in settings.current().limits["VOICE_RATE_LIMIT_PER_KEY"]]
    checks += [(item, ("dialout-per-destination", number), 1, "This number may be dialled at most {item} "
                "(VOICE_RATE_LIMIT_PER_DESTINATION).") for number in numbers
                for item in settings.current().limits["VOICE_RATE_LIMIT_PER_DESTINATION"]]
    for item, identifiers, cost, message in checks:
        if not strategy.test(item, prefix, *identifiers, cost=cost):
            raise _used_up(item, identifiers, message.format(item=item))
    for item, identifiers, cost, _ in checks:
        strategy.hit(item, prefix, *identifiers, cost=cost)


def check_key_guesses(address):
    """Raise TooManyDials (a 429) while `address` has sent more wrong API keys than VOICE_BAD_KEY_LIMIT allows.

    Checked before the key is compared, so once over the limit no key from that address is tried,
    a right one included, until the window ends: guessing costs a window per few tries. The limit
    is a second line behind long random keys, so a limits store that fails lets requests through
    (logged) rather than closing the API to every right key.
    """
    try:
        _refuse_over("VOICE_BAD_KEY_LIMIT", ("bad-key", address), "Too many wrong API keys from this address")
    except (StorageError, OSError) as exc:
        log.warning("wrong-key limit not checked (the limits store failed: %s)", exc)


def count_key_guess(address):
    """Count one wrong API key sent from `address` (nothing when the limits store fails)."""
    try:
        _count("VOICE_BAD_KEY_LIMIT", ("bad-key", address))
    except (StorageError, OSError) as exc:
        log.warning("wrong key not counted (the limits store failed: %s)", exc)


class TooManyDials(Exception):
    """A limit is used up (a key's or a destination's dial-outs, an address's wrong keys); `retry_after` in seconds."""

    def __init__(self, retry_after, message):
        super().__init__(message)
        self.retry_after = retry_after


def count_sign_in(address):
    """Count a console sign-in attempt from `address`; TooManyDials (a 429) once VOICE_CONSOLE_SIGNIN_LIMIT is used up.

    Counted and compared in one step of the store (its increment), so attempts sent together cannot
    slip past the limit between a look and a count.
    """
    _refuse_over("VOICE_CONSOLE_SIGNIN_LIMIT", ("console-sign-in", address),
                 "Too many sign-in attempts from this address", counting=True)


def store_answers():
    """True while the limits store answers (for the readiness check)."""
    return _strategy().storage.check()


def _strategy():
    return current_app.extensions["voice_limits"]


def _refuse_over(setting, identifiers, words, counting=False):
    """Raise TooManyDials when any limit of `setting` is used up for `identifiers` (counting this one, if asked)."""
    strategy, prefix = _strategy(), current_app.config["RATELIMIT_KEY_PREFIX"]
    look = strategy.hit if counting else strategy.test
    for item in settings.current().limits[setting]:
        if not look(item, prefix, *identifiers):
            raise _used_up(item, identifiers, f"{words}: at most {item} ({setting}).")


def _used_up(item, identifiers, message):
    """The TooManyDials of a limit used up, with the seconds until its window ends."""
    prefix = current_app.config["RATELIMIT_KEY_PREFIX"]
    reset = _strategy().get_window_stats(item, prefix, *identifiers).reset_time
    return TooManyDials(max(1, int(reset - time.time()) + 1), message)


def _count(setting, identifiers):
    strategy, prefix = _strategy(), current_app.config["RATELIMIT_KEY_PREFIX"]
    for item in settings.current().limits[setting]:
        strategy.hit(item, prefix, *identifiers)


def init_app(app):
    """Open the configured limits store (the shared SQLite file by default); the limits are read in settings."""
    uri = app.config.get("RATELIMIT_STORAGE_URI") or "sqlite:///" + os.path.join(app.instance_path, "ratelimits.sqlite3")
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "voice")
    # Fail closed: a storage error becomes limits' StorageError, answered 503, never a free pass.
    app.extensions["voice_limits"] = FixedWindowRateLimiter(storage_from_string(uri, wrap_exceptions=True))

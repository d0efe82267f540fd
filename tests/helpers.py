"""What several test modules share: the test app's secrets, the webhook URLs and key headers, small helpers."""

import os
import sqlite3
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from voice.at.simulator import SimulatedCall

API_KEY = "test-key-0123456789"
WEBHOOK_TOKEN = "test-token-abcdef"
AT_KEY = "at-secret-key"

KEY = {"X-API-Key": API_KEY}
BEARER = {"Authorization": f"Bearer {API_KEY}"}
INSTRUCT = f"/voice/instruct?token={WEBHOOK_TOKEN}"
EVENTS = f"/voice/events?token={WEBHOOK_TOKEN}"


def server_url(variable, server, tests):
    """The URL of a server CI provides (.ci/run starts it) from `variable`; skip without it here, fail in CI."""
    url = os.environ.get(variable)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{variable} is not set: CI must run the {tests} against {server}")
        pytest.skip(f"no {server}: set {variable} (as .ci/run does) to run this against it")
    return url


def postgres_url():
    """The PostgreSQL database the store tests may use, emptied; skip or fail without it."""
    url = server_url("TEST_DATABASE_URL", "PostgreSQL", "store tests")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@contextmanager
def database_locked(database_url):
    """Hold the whole store locked from another connection, as a stuck writer would."""
    if database_url.startswith("sqlite"):
        locker = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    else:
        engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as connection:
            connection.execute(sa.text("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE"))
            yield
            connection.rollback()
        engine.dispose()


def sent(simulated_at, path):
    """The forms the simulated AT received on `path`."""
    return [request["form"] for request in simulated_at.requests if request["path"] == path]


def live_call(client, session="ATVId_live1", caller="+254712345678"):
    """A call in progress, as AT's first notification records it."""
    form = {"sessionId": session, "isActive": "1", "direction": "Inbound", "callerNumber": caller,
            "destinationNumber": "+254711000000", "callSessionState": "Answered"}
    assert client.post(EVENTS, data=form).data == b"OK"
    return session


def make_live(simulated_at, session):
    """Have the simulated AT hold `session` as a connected call, as it does while a call is bridged."""
    simulated_at.live[session] = SimulatedCall("http://127.0.0.1:9", session_id=session, say=lambda line: None)

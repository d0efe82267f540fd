"""Shared fixtures: a simulated AT on 127.0.0.1, the app configured against it, its test client."""

import os

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app
from tests import contract
from voice.store.db import db
from voice.at.fake import FakeAT

API_KEY = "test-key-0123456789"
WEBHOOK_TOKEN = "test-token-abcdef"
AT_KEY = "at-secret-key"


@pytest.fixture
def fake_at():
    """A simulated AT voice API over real HTTP on 127.0.0.1, checking our AT key."""
    server = FakeAT(api_key=AT_KEY).start()
    yield server
    server.stop()


def postgres_url():
    """The PostgreSQL database the store tests may use (.ci/run provides one), or skip/fail without it."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("TEST_DATABASE_URL is not set: CI must run the store tests against PostgreSQL")
        pytest.skip("no PostgreSQL: set TEST_DATABASE_URL (as .ci/run does) to run this against it")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def database_url(tmp_path):
    """A fresh SQLite file per test; store tests override this to run on PostgreSQL too."""
    return f"sqlite:///{tmp_path / 'voice.sqlite3'}"


@pytest.fixture
def config(fake_at, tmp_path, database_url):
    """Settings for a test app talking to the fake AT; never the real environment."""
    return {
        "TESTING": True,
        "AT_USERNAME": "testapp",
        "AT_API_KEY": AT_KEY,
        "AT_VOICE_NUMBER": "+254711000000",
        "AT_VOICE_API_URL": fake_at.url,
        "AT_WEBRTC_API_URL": fake_at.url,
        "AT_TIMEOUT_SECONDS": 1.0,
        "VOICE_API_KEY": API_KEY,
        "VOICE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "DATABASE_URL": database_url,
        "RATELIMIT_STORAGE_URI": f"sqlite:///{tmp_path / 'ratelimits.sqlite3'}",
    }


@pytest.fixture(scope="module")
def module_app(tmp_path_factory):
    """One migrated app for a whole module of generated requests, its AT simulated, limits out of the way."""
    fake = FakeAT(api_key=AT_KEY, hang_seconds=2).start()
    folder = tmp_path_factory.mktemp("module")
    app = create_app({
        "TESTING": True, "AT_USERNAME": "testapp", "AT_API_KEY": AT_KEY, "AT_VOICE_NUMBER": "+254711000000",
        "AT_VOICE_API_URL": fake.url, "AT_WEBRTC_API_URL": fake.url, "AT_TIMEOUT_SECONDS": 0.5, "VOICE_API_KEY": API_KEY,
        "VOICE_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "DATABASE_URL": f"sqlite:///{folder / 'voice.sqlite3'}",
        "RATELIMIT_STORAGE_URI": f"sqlite:///{folder / 'limits.sqlite3'}",
        "VOICE_RATE_LIMIT_PER_KEY": "1000000 per minute", "VOICE_RATE_LIMIT_PER_DESTINATION": "1000000 per hour",
    })
    with app.app_context():
        upgrade()
    yield app
    fake.stop()


@pytest.fixture
def make_app(config):
    """Build apps from the test settings with some changed, each database migrated to the latest schema."""
    made = []

    def make(**changes):
        app = create_app(dict(config, **changes))
        with app.app_context():
            upgrade()
        contract.watch(app)
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()
    violations = [v for app in made for v in app.extensions["contract_violations"]]
    assert not violations, "responses that break voice/openapi.json:\n" + "\n".join(violations)


@pytest.fixture
def app(make_app):
    """The app under test."""
    return make_app()


@pytest.fixture
def client(app):
    """Flask's test client for the app."""
    return app.test_client()


@pytest.fixture
def auth():
    """Headers that carry the valid API key."""
    return {"X-API-Key": API_KEY}

"""Shared fixtures: a simulated AT on 127.0.0.1, the app configured against it, its test client."""

import threading

import pytest
from flask_migrate import upgrade
from werkzeug.serving import make_server

from app import create_app
from tests import contract
from tests.helpers import API_KEY, AT_KEY, KEY, WEBHOOK_TOKEN, postgres_url
from voice.at.client import VoiceClient
from voice.at.simulated import SimulatedAT
from voice.store.db import db


def pytest_configure(config):
    """Name the marker for the store tests."""
    config.addinivalue_line("markers", "both_databases: run each test that uses the database on SQLite and on "
                                       "PostgreSQL (TEST_DATABASE_URL)")


def pytest_generate_tests(metafunc):
    """A test marked both_databases that reaches the database runs once per database."""
    if metafunc.definition.get_closest_marker("both_databases") and "database_url" in metafunc.fixturenames:
        metafunc.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def simulated_at():
    """A simulated AT voice API over real HTTP on 127.0.0.1, checking our AT key."""
    server = SimulatedAT(api_key=AT_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def simulated_at_url():
    """The URL of a simulated AT for the service run in another process; a hanging dial-out hangs 10 s."""
    server = SimulatedAT(api_key=AT_KEY, hang_seconds=10).start()
    yield server.url
    server.stop()


@pytest.fixture
def voice(simulated_at):
    """Our AT client, talking to the simulated AT."""
    return VoiceClient("testapp", AT_KEY, "+254711000000", base_url=simulated_at.url, timeout=1.0)


@pytest.fixture
def database_url(request, tmp_path):
    """A fresh SQLite file per test, or PostgreSQL's database emptied for a test marked both_databases."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{tmp_path / 'voice.sqlite3'}"
    return postgres_url()


@pytest.fixture
def config(simulated_at, tmp_path, database_url):
    """Settings for a test app talking to the simulated AT; never the real environment."""
    return {
        "TESTING": True,
        "AT_USERNAME": "testapp",
        "AT_API_KEY": AT_KEY,
        "AT_VOICE_NUMBER": "+254711000000",
        "AT_VOICE_API_URL": simulated_at.url,
        "AT_WEBRTC_API_URL": simulated_at.url,
        "AT_TIMEOUT_SECONDS": 1.0,
        "VOICE_API_KEY": API_KEY,
        "VOICE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "DATABASE_URL": database_url,
        "RATELIMIT_STORAGE_URI": f"sqlite:///{tmp_path / 'ratelimits.sqlite3'}",
    }


@pytest.fixture(scope="module")
def module_app(tmp_path_factory):
    """One migrated app for a whole module of generated requests, its AT simulated, limits out of the way."""
    fake = SimulatedAT(api_key=AT_KEY, hang_seconds=2).start()
    folder = tmp_path_factory.mktemp("module")
    app = create_app({
        "TESTING": True, "AT_USERNAME": "testapp", "AT_API_KEY": AT_KEY, "AT_VOICE_NUMBER": "+254711000000",
        "AT_VOICE_API_URL": fake.url, "AT_WEBRTC_API_URL": fake.url, "AT_TIMEOUT_SECONDS": 0.5, "VOICE_API_KEY": API_KEY,
        "VOICE_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "DATABASE_URL": f"sqlite:///{folder / 'voice.sqlite3'}",
        "RATELIMIT_STORAGE_URI": f"sqlite:///{folder / 'limits.sqlite3'}",
        "VOICE_RATE_LIMIT_PER_KEY": "1000000 per minute", "VOICE_RATE_LIMIT_PER_DESTINATION": "1000000 per hour",
        # Generated requests send wrong keys often; past the default limit none would reach a view.
        "VOICE_BAD_KEY_LIMIT": "1000000 per minute",
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
def live_app(app):
    """The test app served over real HTTP on 127.0.0.1 from this process; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def auth():
    """Headers that carry the valid API key."""
    return dict(KEY)

"""Shared fixtures: a simulated AT on 127.0.0.1, the app configured against it, its test client."""

import pytest

from app import create_app
from voice.fake_at import FakeAT

API_KEY = "test-key-0123456789"
WEBHOOK_TOKEN = "test-token-abcdef"
AT_KEY = "at-secret-key"


@pytest.fixture
def fake_at():
    """A simulated AT voice API over real HTTP on 127.0.0.1, checking our AT key."""
    server = FakeAT(api_key=AT_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def config(fake_at, tmp_path):
    """Settings for a test app talking to the fake AT; never the real environment."""
    return {
        "TESTING": True,
        "AT_USERNAME": "testapp",
        "AT_API_KEY": AT_KEY,
        "AT_VOICE_NUMBER": "+254711000000",
        "AT_VOICE_API_URL": fake_at.url,
        "AT_TIMEOUT_SECONDS": 1.0,
        "VOICE_API_KEY": API_KEY,
        "VOICE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    }


@pytest.fixture
def app(config):
    """The app under test."""
    return create_app(config)


@pytest.fixture
def client(app):
    """Flask's test client for the app."""
    return app.test_client()


@pytest.fixture
def auth():
    """Headers that carry the valid API key."""
    return {"X-API-Key": API_KEY}

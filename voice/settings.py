"""The service's settings: their names, defaults and how an environment string becomes a value."""

DEFAULTS = {
    "AT_USERNAME": "",
    "AT_API_KEY": "",
    "AT_VOICE_NUMBER": "",
    "AT_VOICE_NUMBERS": "",
    "AT_VOICE_API_URL": "",
    "AT_WEBRTC_API_URL": "",
    "VOICE_CLIENT_NAMES": "",
    "VOICE_DEFAULT_COUNTRY_CODE": "",
    "AT_TIMEOUT_SECONDS": 8.0,
    "VOICE_MAX_DIALOUTS_IN_FLIGHT": 4,
    "VOICE_API_KEY": "",
    "VOICE_API_KEYS": "",
    "VOICE_ALLOWED_COUNTRY_CODES": "",
    "VOICE_RATE_LIMIT_PER_KEY": "10 per minute",
    "VOICE_RATE_LIMIT_PER_DESTINATION": "3 per hour",
    "VOICE_BAD_KEY_LIMIT": "20 per minute",
    "RATELIMIT_STORAGE_URI": "",
    "VOICE_WEBHOOK_TOKEN": "",
    "VOICE_WEBHOOK_ALLOWED_IPS": "",
    "VOICE_TRUSTED_PROXIES": 0,
    "VOICE_VERIFY_SESSIONS": False,
    "VOICE_SIMULATE": "0",
    "VOICE_SIMULATED_AT_PORT": 8001,
    "VOICE_SIMULATED_AT_DIGITS": "1",
    "VOICE_SIMULATED_AT_ANSWER_SECONDS": 2.0,
    "VOICE_FLOW_FILE": "",
    "VOICE_PUBLIC_URL": "",
    "VOICE_AGENT_NUMBERS": "",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "text",
    "VOICE_METRICS": True,
    "VOICE_METRICS_ALLOWED_IPS": "",
    "VOICE_RETENTION_DAYS": 0,
    "SECRET_KEY": "",
    "VOICE_CONSOLE_SESSION_HOURS": 8.0,
    "VOICE_CONSOLE_SIGNIN_LIMIT": "5 per minute",
    # Set by gunicorn.conf.py in its workers, not by operators: an app that only serves leaves out
    # the migration commands (and Alembic with them).
    "VOICE_SERVE_ONLY": False,
    "PORT": 8000,
    "DATABASE_URL": "",
    "DATABASE_TIMEOUT_SECONDS": 2.0,
    "MAX_CONTENT_LENGTH": 64 * 1024,
}


def _flag(text):
    """A yes/no setting: 1/true/yes/on or 0/false/no/off."""
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_flag.__name__ = "yes/no value"

_CONVERTERS = {
    "VOICE_TRUSTED_PROXIES": int,
    "VOICE_SIMULATED_AT_PORT": int,
    "VOICE_SIMULATED_AT_ANSWER_SECONDS": float,
    "PORT": int,
    "VOICE_VERIFY_SESSIONS": _flag,
    "AT_TIMEOUT_SECONDS": float,
    "VOICE_MAX_DIALOUTS_IN_FLIGHT": int,
    "DATABASE_TIMEOUT_SECONDS": float,
    "MAX_CONTENT_LENGTH": int,
    "VOICE_METRICS": _flag,
    "VOICE_RETENTION_DAYS": int,
    "VOICE_CONSOLE_SESSION_HOURS": float,
    "VOICE_SERVE_ONLY": _flag,
}


AT_CREDENTIALS = ("AT_USERNAME", "AT_API_KEY", "AT_VOICE_NUMBER")
SIMULATED_NUMBER = "+254711000000"


def simulated(settings):
    """True when dial-outs go to the simulated AT: VOICE_SIMULATE=1, or =auto with AT credentials missing."""
    mode = str(settings.get("VOICE_SIMULATE", "0")).strip().lower()
    if mode in ("1", "true", "yes", "on"):
        return True
    return mode == "auto" and not all(settings.get(name) for name in AT_CREDENTIALS)


def simulated_at_settings(settings):
    """The AT settings that send dial-outs to the simulated AT started beside the app."""
    return {
        "AT_USERNAME": "simulated",
        "AT_API_KEY": "simulated",
        "AT_VOICE_NUMBER": settings.get("AT_VOICE_NUMBER") or SIMULATED_NUMBER,
        "AT_VOICE_API_URL": f"http://127.0.0.1:{int(settings.get('VOICE_SIMULATED_AT_PORT') or 8001)}",
        "AT_WEBRTC_API_URL": f"http://127.0.0.1:{int(settings.get('VOICE_SIMULATED_AT_PORT') or 8001)}",
    }


# Renamed settings: the old name still works when the new one is not set.
RENAMED = {
    "VOICE_SIMULATED_AT_PORT": "VOICE_FAKE_AT_PORT",
    "VOICE_SIMULATED_AT_DIGITS": "VOICE_FAKE_AT_DIGITS",
    "VOICE_SIMULATED_AT_ANSWER_SECONDS": "VOICE_FAKE_AT_ANSWER_SECONDS",
}


def from_environ(environ):
    """Pick the known settings out of an environment mapping (a renamed one under its new or old name), typed."""
    settings = {}
    for name in DEFAULTS:
        raw = environ.get(name)
        if (raw is None or not raw.strip()) and name in RENAMED:
            raw = environ.get(RENAMED[name])
        if raw is None or raw.strip() == "":
            continue
        convert = _CONVERTERS.get(name, str)
        try:
            settings[name] = convert(raw.strip())
        except ValueError:
            raise ValueError(f"setting {name}={raw!r} is not a valid {convert.__name__}") from None
    return settings

"""The service's settings: their names, defaults and how an environment string becomes a value."""

DEFAULTS = {
    "AT_USERNAME": "",
    "AT_API_KEY": "",
    "AT_VOICE_NUMBER": "",
    "AT_VOICE_API_URL": "",
    "AT_TIMEOUT_SECONDS": 8.0,
    "VOICE_MAX_DIALOUTS_IN_FLIGHT": 4,
    "VOICE_API_KEY": "",
    "VOICE_API_KEYS": "",
    "VOICE_ALLOWED_COUNTRY_CODES": "",
    "VOICE_RATE_LIMIT_PER_KEY": "10 per minute",
    "VOICE_RATE_LIMIT_PER_DESTINATION": "3 per hour",
    "RATELIMIT_STORAGE_URI": "",
    "VOICE_WEBHOOK_TOKEN": "",
    "VOICE_WEBHOOK_ALLOWED_IPS": "",
    "VOICE_TRUSTED_PROXIES": 0,
    "VOICE_VERIFY_SESSIONS": False,
    "VOICE_FLOW_FILE": "",
    "VOICE_PUBLIC_URL": "",
    "VOICE_AGENT_NUMBERS": "",
    "LOG_LEVEL": "INFO",
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
    "VOICE_VERIFY_SESSIONS": _flag,
    "AT_TIMEOUT_SECONDS": float,
    "VOICE_MAX_DIALOUTS_IN_FLIGHT": int,
    "DATABASE_TIMEOUT_SECONDS": float,
    "MAX_CONTENT_LENGTH": int,
}


def from_environ(environ):
    """Pick the known settings out of an environment mapping, converted to their types."""
    settings = {}
    for name, default in DEFAULTS.items():
        raw = environ.get(name)
        if raw is None or raw.strip() == "":
            continue
        convert = _CONVERTERS.get(name, str)
        try:
            settings[name] = convert(raw.strip())
        except ValueError:
            raise ValueError(f"setting {name}={raw!r} is not a valid {convert.__name__}") from None
    return settings

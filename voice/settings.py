"""The service's settings: their names, defaults, how an environment string becomes a value, and what they mean.

create_app reads the environment (or a test's mapping) once into app.config, then `build` reads the
settings that need parsing (keys, address ranges, country codes, client names, our numbers: their readers
are in voice/setting_lists.py) once into a frozen Settings kept in app.extensions; code asks `current()`
for them.
"""

from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType

from flask import current_app
from limits import parse_many

from voice.phone import country_code_of
from voice.recordings.sources import parse_hosts
from voice.setting_lists import our_numbers, parse_api_keys, parse_client_names, parse_country_codes, parse_networks

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
    # Campaigns (docs/campaigns.md) and the worker that runs them.
    "VOICE_CAMPAIGN_MAX_CONCURRENT": 20,
    "VOICE_CAMPAIGN_PER_MINUTE": 600,
    "VOICE_CAMPAIGN_OUTCOME_MINUTES": 60.0,
    "VOICE_CAMPAIGN_UPLOAD_MB": 32,
    "VOICE_JOBS_URL": "",
    "VOICE_WORKER_THREADS": 4,
    # What happens after a call: webhooks (docs/webhooks.md) and recordings (docs/recordings.md).
    "VOICE_ALLOW_PRIVATE_TARGETS": False,
    "VOICE_WEBHOOK_TIMEOUT_SECONDS": 5.0,
    "VOICE_WEBHOOK_DISABLE_DAYS": 3.0,
    "VOICE_RECORDING_HOSTS": "",
    "VOICE_RECORDING_MAX_MB": 50,
    "VOICE_RECORDING_RETRY_MINUTES": 30.0,
    "VOICE_RECORDINGS_DIR": "",
    "VOICE_RECORDINGS_S3_BUCKET": "",
    "VOICE_RECORDINGS_S3_ENDPOINT_URL": "",
    "VOICE_RECORDINGS_S3_REGION": "",
    "VOICE_RECORDINGS_S3_ACCESS_KEY_ID": "",
    "VOICE_RECORDINGS_S3_SECRET_ACCESS_KEY": "",
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
    "VOICE_CAMPAIGN_MAX_CONCURRENT": int,
    "VOICE_CAMPAIGN_PER_MINUTE": int,
    "VOICE_CAMPAIGN_OUTCOME_MINUTES": float,
    "VOICE_CAMPAIGN_UPLOAD_MB": int,
    "VOICE_WORKER_THREADS": int,
    "VOICE_ALLOW_PRIVATE_TARGETS": _flag,
    "VOICE_WEBHOOK_TIMEOUT_SECONDS": float,
    "VOICE_WEBHOOK_DISABLE_DAYS": float,
    "VOICE_RECORDING_MAX_MB": int,
    "VOICE_RECORDING_RETRY_MINUTES": float,
}


# Numeric settings whose range matters: (name, lowest, highest).
POSITIVE = (
    ("VOICE_CAMPAIGN_MAX_CONCURRENT", 1, 100_000),
    ("VOICE_CAMPAIGN_PER_MINUTE", 1, 1_000_000),
    ("VOICE_CAMPAIGN_OUTCOME_MINUTES", 0.01, 7 * 24 * 60),
    ("VOICE_CAMPAIGN_UPLOAD_MB", 1, 1024),
    ("VOICE_WORKER_THREADS", 1, 64),
    ("VOICE_WEBHOOK_TIMEOUT_SECONDS", 0.5, 30),
    ("VOICE_WEBHOOK_DISABLE_DAYS", 0.01, 365),
    ("VOICE_RECORDING_MAX_MB", 1, 2048),
    ("VOICE_RECORDING_RETRY_MINUTES", 1, 7 * 24 * 60),
)
AT_CREDENTIALS = ("AT_USERNAME", "AT_API_KEY", "AT_VOICE_NUMBER")  # what a live service needs of AT
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


@dataclass(frozen=True)
class Settings:
    """The settings that need reading, read and checked once at start-up."""

    mode: str                       # "simulated" (VOICE_SIMULATE) or "live"
    api_keys: tuple                 # (label, key, role) of every API key
    webhook_networks: tuple         # VOICE_WEBHOOK_ALLOWED_IPS as ip_network objects (empty: any address)
    metrics_networks: tuple         # VOICE_METRICS_ALLOWED_IPS likewise
    allowed_country_codes: tuple    # VOICE_ALLOWED_COUNTRY_CODES as digit strings (empty: any country)
    client_name_rules: tuple        # VOICE_CLIENT_NAMES as (key label or None, glob) pairs (empty: any name)
    at_numbers: tuple               # AT_VOICE_NUMBER, then AT_VOICE_NUMBERS, in E.164
    default_country_code: str       # where a local number (0...) an agent dials is read
    limits: MappingProxyType        # each rate-limit setting (LIMITS) as `limits` items, read-only
    log_format: str                 # "text" or "json"
    log_level: str                  # the service's log level, upper case
    database_url: str               # DATABASE_URL (or the SQLite default) as SQLAlchemy names its driver
    console_session: timedelta      # how long a console session lasts
    recording_hosts: tuple          # VOICE_RECORDING_HOSTS as (host or *.domain, port or None) (empty: any host)


def build(config, mode):
    """The Settings of `config` (app.config once the environment is read) in `mode`; ValueError naming a bad one."""
    at_numbers = tuple(our_numbers(config))
    code = str(config["VOICE_DEFAULT_COUNTRY_CODE"]).strip().lstrip("+")
    if code and not (code.isdigit() and 1 <= len(code) <= 3):
        raise ValueError("VOICE_DEFAULT_COUNTRY_CODE must be a calling code such as 254")
    for name, low, high in POSITIVE:
        if not low <= float(config[name]) <= high:
            raise ValueError(f"{name} must be from {low:g} to {high:g}, not {config[name]}")
    return Settings(
        mode=mode,
        api_keys=tuple(parse_api_keys(config["VOICE_API_KEYS"], config["VOICE_API_KEY"])),
        webhook_networks=tuple(parse_networks(config["VOICE_WEBHOOK_ALLOWED_IPS"])),
        metrics_networks=tuple(parse_networks(config["VOICE_METRICS_ALLOWED_IPS"], "VOICE_METRICS_ALLOWED_IPS")),
        allowed_country_codes=parse_country_codes(config["VOICE_ALLOWED_COUNTRY_CODES"]),
        client_name_rules=tuple(parse_client_names(config["VOICE_CLIENT_NAMES"])),
        at_numbers=at_numbers,
        # By default our own number's country.
        default_country_code=code or (country_code_of(at_numbers[0]) if at_numbers else ""),
        limits=MappingProxyType({name: tuple(_limit(name, config[name])) for name in LIMITS}),
        log_format=_log_format(config.get("LOG_FORMAT")),
        log_level=str(config["LOG_LEVEL"]).upper(),
        database_url=database_url(config.get("DATABASE_URL")),
        console_session=timedelta(hours=float(config["VOICE_CONSOLE_SESSION_HOURS"])),
        recording_hosts=parse_hosts(config["VOICE_RECORDING_HOSTS"]),
    )


LIMITS = ("VOICE_RATE_LIMIT_PER_KEY", "VOICE_RATE_LIMIT_PER_DESTINATION", "VOICE_BAD_KEY_LIMIT",
          "VOICE_CONSOLE_SIGNIN_LIMIT")
DEFAULT_DATABASE_URL = "sqlite:///voice.sqlite3"


def _limit(name, value):
    try:
        return parse_many(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a limit such as '10 per minute'") from None


def _log_format(value):
    kind = str(value or "text").lower()
    if kind not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT={kind!r} is neither 'text' nor 'json'")
    return kind


def database_url(url):
    """DATABASE_URL (or the SQLite default) with the driver SQLAlchemy should use named."""
    url = url or DEFAULT_DATABASE_URL
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]  # the scheme Heroku-style hosts hand out
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def current():
    """The current app's Settings."""
    return current_app.extensions["voice_settings"]

"""The protections an operator sets: parsed once at start-up, applied to every request, warned about when off."""

import fnmatch
import logging
import re

from werkzeug.middleware.proxy_fix import ProxyFix

from voice.auth import parse_api_keys, parse_networks

log = logging.getLogger(__name__)


def parse_country_codes(setting):
    """VOICE_ALLOWED_COUNTRY_CODES (`254,255,256`, `+` optional) as a tuple of digit strings."""
    codes = tuple(filter(None, (part.strip().lstrip("+") for part in setting.split(","))))
    for code in codes:
        if not code.isdigit() or not 1 <= len(code) <= 3:
            raise ValueError(f"VOICE_ALLOWED_COUNTRY_CODES entry {code!r} is not a 1-3 digit country code")
    return codes


CLIENT_PATTERN = re.compile(r"[A-Za-z0-9_*?]{1,64}")


def parse_client_names(setting):
    """VOICE_CLIENT_NAMES (`jonah,agent_*,ops:night_*`) as (key label or None, glob) pairs; empty: any name."""
    rules = []
    for item in filter(None, (part.strip() for part in setting.split(","))):
        label, sep, pattern = item.rpartition(":")
        if not CLIENT_PATTERN.fullmatch(pattern) or (sep and not label.strip()):
            raise ValueError(f"VOICE_CLIENT_NAMES entry {item!r} is not a name or pattern (letters, digits, _, * and ?), "
                             "optionally after 'label:'")
        rules.append((label.strip() or None, pattern))
    return rules


def client_name_allowed(rules, label, name):
    """True when the key labelled `label` may mint tokens for the client `name` under `rules`."""
    return not rules or any(fnmatch.fnmatchcase(name, pattern) for who, pattern in rules if who in (None, label))


def init_app(app):
    """Parse the protection settings into app.config and wire the proxy fix and response headers."""
    app.config["API_KEYS"] = parse_api_keys(app.config["VOICE_API_KEYS"], app.config["VOICE_API_KEY"])
    app.config["WEBHOOK_NETWORKS"] = parse_networks(app.config["VOICE_WEBHOOK_ALLOWED_IPS"])
    app.config["METRICS_NETWORKS"] = parse_networks(app.config["VOICE_METRICS_ALLOWED_IPS"],
                                                    "VOICE_METRICS_ALLOWED_IPS")
    app.config["ALLOWED_COUNTRY_CODES"] = parse_country_codes(app.config["VOICE_ALLOWED_COUNTRY_CODES"])
    app.config["CLIENT_NAME_RULES"] = parse_client_names(app.config["VOICE_CLIENT_NAMES"])
    hops = int(app.config["VOICE_TRUSTED_PROXIES"])
    if hops > 0:
        # Only as many X-Forwarded-* hops as there are proxies of ours: the rest is forgeable.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    app.after_request(_security_headers)
    if not (app.debug or app.testing):
        _warn_about_open_doors(app)


def _security_headers(response):
    """No content sniffing anywhere; no caching of JSON, which carries call data."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype == "application/json":
        response.headers["Cache-Control"] = "no-store"
    return response


def _warn_about_open_doors(app):
    """One start-up warning per protection left off, naming its setting."""
    if not app.config["VOICE_WEBHOOK_TOKEN"]:
        log.warning("VOICE_WEBHOOK_TOKEN is not set: anyone who finds /voice/instruct and /voice/events can post to them")
    if not app.config["ALLOWED_COUNTRY_CODES"]:
        log.warning("VOICE_ALLOWED_COUNTRY_CODES is not set: /voice/invoke-call may dial any country")
    if not app.config["API_KEYS"]:
        log.warning("neither VOICE_API_KEY nor VOICE_API_KEYS is set: dial-out and call history are disabled")

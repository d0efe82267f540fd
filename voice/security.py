"""The protections an operator sets: parsed once at start-up, applied to every request, warned about when off."""

import fnmatch
import logging
import re

from werkzeug.middleware.proxy_fix import ProxyFix

from voice import logs

log = logging.getLogger(__name__)


def client_name_allowed(rules, label, name):
    """True when the key labelled `label` may mint tokens for the client `name` under `rules`."""
    return not rules or any(fnmatch.fnmatchcase(name, pattern) for who, pattern in rules if who in (None, label))


def init_app(app):
    """Wire the proxy fix, the Host check and response headers, and warn of each protection left off."""
    configured = app.extensions["voice_settings"]
    # A simulated AT's key is the word `simulated`, no secret: masking it would mask that word in every line.
    secret_names = ("VOICE_WEBHOOK_TOKEN", "SECRET_KEY") + (("AT_API_KEY",) if configured.mode == "live" else ())
    logs.remember_secrets([key for _, key, _ in configured.api_keys]
                          + [str(app.config.get(name) or "") for name in secret_names])
    hops = int(app.config["VOICE_TRUSTED_PROXIES"])
    app.wsgi_app = HostCheck(app.wsgi_app)
    if hops > 0:
        # Only as many X-Forwarded-* hops as there are proxies of ours: the rest is forgeable.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    app.after_request(_security_headers)
    if not (app.debug or app.testing):
        _warn_about_open_doors(app)


# What may carry call data or the webhook token (JSON, the call-flow XML served as text/plain): never cached.
_NOT_CACHED = ("application/json", "text/plain")


def _security_headers(response):
    """No content sniffing anywhere; no caching of JSON or call-flow XML, which carry call data and the token."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype in _NOT_CACHED:
        response.headers["Cache-Control"] = "no-store"
    return response


# A host name (`_` too, as container names have it) or an IPv4 or bracketed IPv6 address, with an optional port: what a Host header may hold.
_HOST = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}"
                   r"[A-Za-z0-9_])?)*\.?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
_BAD_HOST = (b'{"error":"bad_host","message":"The Host header is not a valid host name (with an optional port)."}\n')


class HostCheck:
    """Refuse a request whose Host is not a host name: without VOICE_PUBLIC_URL it becomes every callback URL.

    A WSGI wrapper rather than a Flask hook: one regular expression per request, before anything else.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        host = environ.get("HTTP_HOST")
        if host is not None and (len(host) > 260 or not _HOST.fullmatch(host)):
            start_response("400 Bad Request", [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                                               ("Content-Length", str(len(_BAD_HOST)))])
            return [_BAD_HOST]
        return self.wsgi_app(environ, start_response)


def _warn_about_open_doors(app):
    """One start-up warning per protection left off, naming its setting."""
    if not app.config["VOICE_WEBHOOK_TOKEN"]:
        log.warning("VOICE_WEBHOOK_TOKEN is not set: anyone who finds /voice/instruct and /voice/events can post to them")
    configured = app.extensions["voice_settings"]
    if not configured.allowed_country_codes:
        log.warning("VOICE_ALLOWED_COUNTRY_CODES is not set: /voice/invoke-call may dial any country")
    if configured.mode == "live" and not app.config["VOICE_PUBLIC_URL"]:
        log.warning("VOICE_PUBLIC_URL is not set: the callback URLs in the call-flow XML (with the webhook token) "
                    "are built from each request's Host header; set it to the public https URL AT reaches")
    if not configured.api_keys:
        log.warning("neither VOICE_API_KEY nor VOICE_API_KEYS is set: dial-out and call history are disabled")

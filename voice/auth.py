"""Who may use what: the API key for dial-out, the webhook token for AT's callbacks."""

import functools
import hmac
import logging

from flask import current_app, g, request

from voice.errors import APIError

log = logging.getLogger(__name__)


def _same(given, expected):
    """Compare two secrets in constant time."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def presented_key():
    """The key the client sent as `X-API-Key` or `Authorization: Bearer`, or None."""
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def require_api_key(view):
    """Refuse the view with 401 unless the request carries the configured API key."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        expected = current_app.config.get("VOICE_API_KEY")
        if not expected:
            raise APIError(503, "not_configured", "VOICE_API_KEY is not set on the server, so this route is disabled.")
        given = presented_key()
        if given is None:
            raise APIError(401, "unauthorized", "Send your API key as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'.",
                           headers={"WWW-Authenticate": "Bearer"})
        if not _same(given, expected):
            raise APIError(401, "unauthorized", "The API key is not valid.", headers={"WWW-Authenticate": "Bearer"})
        g.api_key_label = "default"
        return view(*args, **kwargs)

    return wrapped


def require_webhook_token(view):
    """Refuse the view with 403 unless the query string carries the configured webhook token."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        expected = current_app.config.get("VOICE_WEBHOOK_TOKEN")
        if expected and not _same(request.args.get("token", ""), expected):
            log.warning("webhook %s refused: missing or wrong token (from %s)", request.path, request.remote_addr)
            raise APIError(403, "forbidden", "Missing or wrong webhook token: add ?token=<VOICE_WEBHOOK_TOKEN> to the callback URL.")
        return view(*args, **kwargs)

    return wrapped

"""Who may use what: labelled API keys for dial-out and history, the webhook checks for AT's callbacks."""

import functools
import hmac
import ipaddress
import logging

from flask import current_app, g, request

from voice import metrics, settings
from voice.errors import APIError
from voice.ratelimit import check_key_guesses, count_key_guess

log = logging.getLogger(__name__)


# What each role may do, as the routes check it (the README's table lists route x role).
DIAL = ("admin", "dialer")          # place paid legs: dial-outs, transfers
READ = ("admin", "dialer", "viewer")  # read calls (a dialer only those it placed)
WATCH = ("admin", "viewer")         # read what concerns the whole account: metrics, queues
ADMIN = ("admin",)                  # change the account: media, client tokens


def _same(given, expected):
    """Compare two secrets in constant time."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def key_entry(given):
    """The (label, role) of the configured key equal to `given`, or None; every key is compared, in constant time."""
    found = None
    for label, key, role in settings.current().api_keys:
        if _same(given, key) and found is None:
            found = (label, role)
    return found


def labelled(label):
    """(key, role) of the key labelled `label` now, or None when no key has that label any more."""
    return next(((key, role) for name, key, role in settings.current().api_keys if name == label), None)


def presented_key():
    """The key the client sent as `X-API-Key` or `Authorization: Bearer`, or None."""
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def require_role(*roles):
    """Refuse the view with 401 without a configured API key, and 403 unless its role is one of `roles`.

    The key's label and role are noted in g (api_key_label, api_role) for the view.
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not settings.current().api_keys:
                raise APIError(503, "not_configured", "No API key is set on the server (VOICE_API_KEY or "
                               "VOICE_API_KEYS), so this route is disabled.")
            g.api_key_label, g.api_role = authenticate()
            check_role(g.api_role, roles)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def check_role(role, roles, what="This"):
    """Raise 403 `forbidden` naming the roles `what` needs (counted, logged) unless `role` is one of `roles`."""
    if role not in roles:
        metrics.refused("role")
        log.warning("%s %s refused: a %s key may not use it", request.method, request.path, role)
        raise APIError(403, "forbidden", f"{what} needs a key with the {' or '.join(roles)} role; this key is a {role}.")


def scoped_label():
    """The label whose calls the current key may read: its own for a dialer, None (every call) otherwise."""
    return g.api_key_label if g.get("api_role") == "dialer" else None


def authenticate(hint=""):
    """(label, role) of the API key the request carries; 401 (counted, and logged when wrong) without a valid one."""
    given = presented_key()
    if given is None:
        metrics.refused("bad_key")
        raise APIError(401, "unauthorized", "Send your API key as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"
                       + (hint or "."), headers={"WWW-Authenticate": "Bearer"})
    address = request.remote_addr or "-"
    check_key_guesses(address)
    entry = key_entry(given)
    if entry is None:
        count_key_guess(address)
        metrics.refused("bad_key")
        log.warning("%s %s refused: wrong API key (from %s)", request.method, request.path, request.remote_addr)
        raise APIError(401, "unauthorized", "The API key is not valid" + (hint or "."),
                       headers={"WWW-Authenticate": "Bearer"})
    return entry


def require_webhook_auth(view):
    """Refuse the view with 403 unless the request comes from an allowed address with the webhook token."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        config, req = current_app.config, request._get_current_object()
        networks = settings.current().webhook_networks
        if networks and not address_in(req.remote_addr, networks):
            metrics.refused("ip")
            log.warning("webhook %s refused: source %s is not in VOICE_WEBHOOK_ALLOWED_IPS", req.path, req.remote_addr)
            raise APIError(403, "forbidden", "This address may not call the webhooks.")
        expected = config.get("VOICE_WEBHOOK_TOKEN")
        if expected and not _same(req.args.get("token", ""), expected):
            metrics.refused("bad_token")
            log.warning("webhook %s refused: missing or wrong token (from %s)", req.path, req.remote_addr)
            raise APIError(403, "forbidden", "Missing or wrong webhook token: add ?token=<VOICE_WEBHOOK_TOKEN> to the callback URL.")
        return view(*args, **kwargs)

    return wrapped


def address_in(address, networks):
    """True when `address` is in one of `networks`."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)

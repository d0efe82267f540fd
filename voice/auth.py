"""Who may use what: labelled API keys for dial-out and history, the webhook checks for AT's callbacks."""

import functools
import hmac
import ipaddress
import logging

from flask import current_app, g, request

from voice import metrics
from voice.errors import APIError

log = logging.getLogger(__name__)


def parse_api_keys(keys_setting, single_key):
    """`label:key,label:key` (VOICE_API_KEYS) plus VOICE_API_KEY as label `default`, as (label, key) pairs."""
    pairs = []
    for number, item in enumerate(filter(None, (part.strip() for part in keys_setting.split(","))), start=1):
        label, sep, key = item.partition(":")
        if not sep or not label.strip() or not key.strip():
            # Never echo the item: it holds a key.
            raise ValueError(f"VOICE_API_KEYS entry {number} is not 'label:key'")
        pairs.append((label.strip(), key.strip()))
    if single_key:
        pairs.append(("default", single_key))
    labels = [label for label, _ in pairs]
    if len(set(labels)) != len(labels):
        raise ValueError("VOICE_API_KEYS labels must be unique (and 'default' is VOICE_API_KEY's)")
    return pairs


def parse_networks(setting, name="VOICE_WEBHOOK_ALLOWED_IPS"):
    """An allow-list setting (addresses and CIDR ranges, comma-separated) as ip_network objects."""
    networks = []
    for item in filter(None, (part.strip() for part in setting.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{name} entry {item!r} is not an address or CIDR range") from None
    return networks


def _same(given, expected):
    """Compare two secrets in constant time."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def key_label(given):
    """The label of the configured key equal to `given`, or None; every key is compared, in constant time."""
    found = None
    for label, key in current_app.config["API_KEYS"]:
        if _same(given, key) and found is None:
            found = label
    return found


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
    """Refuse the view with 401 unless the request carries a configured API key; note its label."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not current_app.config["API_KEYS"]:
            raise APIError(503, "not_configured",
                           "No API key is set on the server (VOICE_API_KEY or VOICE_API_KEYS), so this route is disabled.")
        g.api_key_label = authenticate()
        return view(*args, **kwargs)

    return wrapped


def authenticate(hint=""):
    """The label of the API key the request carries; 401 (counted, and logged when wrong) without a valid one."""
    given = presented_key()
    if given is None:
        metrics.refused("bad_key")
        raise APIError(401, "unauthorized", "Send your API key as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"
                       + (hint or "."), headers={"WWW-Authenticate": "Bearer"})
    label = key_label(given)
    if label is None:
        metrics.refused("bad_key")
        log.warning("%s %s refused: wrong API key (from %s)", request.method, request.path, request.remote_addr)
        raise APIError(401, "unauthorized", "The API key is not valid" + (hint or "."),
                       headers={"WWW-Authenticate": "Bearer"})
    return label


def require_webhook_auth(view):
    """Refuse the view with 403 unless the request comes from an allowed address with the webhook token."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        config, req = current_app.config, request._get_current_object()
        networks = config["WEBHOOK_NETWORKS"]
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

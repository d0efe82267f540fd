"""The settings that are lists, each read from its comma-separated text: API keys with their labels and roles,
address ranges, country codes, client names, our AT numbers. voice.settings.build reads them once.
"""

import ipaddress

from voice.phone import InvalidPhone, normalise
from voice.shapes import CLIENT_GLOB

ROLES = ("admin", "dialer", "viewer")


def parse_api_keys(keys_setting, single_key):
    """`label:key[:role]` (VOICE_API_KEYS) plus VOICE_API_KEY as label `default`, as (label, key, role) triples.

    An entry without a role, and VOICE_API_KEY, are `admin`, as every key was before roles.
    """
    entries = []
    for number, item in enumerate(filter(None, (part.strip() for part in keys_setting.split(","))), start=1):
        label, sep, rest = item.partition(":")
        key, colon, role = rest.rpartition(":")
        if not colon or role.strip() not in ROLES:
            key, role = rest, "admin"
        if not sep or not label.strip() or not key.strip():
            # Never echo the item: it holds a key.
            raise ValueError(f"VOICE_API_KEYS entry {number} is not 'label:key' or 'label:key:role' "
                             f"(roles: {', '.join(ROLES)})")
        entries.append((label.strip(), key.strip(), role.strip()))
    if single_key:
        entries.append(("default", single_key, "admin"))
    labels = [label for label, _, _ in entries]
    if len(set(labels)) != len(labels):
        raise ValueError("VOICE_API_KEYS labels must be unique (and 'default' is VOICE_API_KEY's)")
    return entries


def parse_networks(setting, name="VOICE_WEBHOOK_ALLOWED_IPS"):
    """An allow-list setting (addresses and CIDR ranges, comma-separated) as ip_network objects."""
    networks = []
    for item in filter(None, (part.strip() for part in setting.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{name} entry {item!r} is not an address or CIDR range") from None
    return networks


def parse_country_codes(setting):
    """VOICE_ALLOWED_COUNTRY_CODES (`254,255,256`, `+` optional) as a tuple of digit strings."""
    codes = tuple(filter(None, (part.strip().lstrip("+") for part in setting.split(","))))
    for code in codes:
        if not code.isdigit() or not 1 <= len(code) <= 3:
            raise ValueError(f"VOICE_ALLOWED_COUNTRY_CODES entry {code!r} is not a 1-3 digit country code")
    return codes


def parse_client_names(setting):
    """VOICE_CLIENT_NAMES (`jonah,agent_*,ops:night_*`) as (key label or None, glob) pairs; empty: any name."""
    rules = []
    for item in filter(None, (part.strip() for part in setting.split(","))):
        label, sep, pattern = item.rpartition(":")
        if not CLIENT_GLOB.fullmatch(pattern) or (sep and not label.strip()):
            raise ValueError(f"VOICE_CLIENT_NAMES entry {item!r} is not a name or pattern (letters, digits, _, * and ?), "
                             "optionally after 'label:'")
        rules.append((label.strip() or None, pattern))
    return rules


def our_numbers(config):
    """This service's AT numbers: AT_VOICE_NUMBER, then AT_VOICE_NUMBERS (comma-separated), each in E.164."""
    numbers = []
    for number, raw in enumerate([config.get("AT_VOICE_NUMBER") or ""] + config["AT_VOICE_NUMBERS"].split(",")):
        if raw.strip():
            try:
                numbers.append(normalise(raw))
            except InvalidPhone as exc:
                name = "AT_VOICE_NUMBER" if number == 0 else f"AT_VOICE_NUMBERS entry {number}"
                raise ValueError(f"{name} is not a phone number: {exc}") from None
    return list(dict.fromkeys(numbers))

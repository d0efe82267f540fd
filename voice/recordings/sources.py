"""Where recordings may be downloaded from: VOICE_RECORDING_HOSTS read once, and a URL checked against it.

Each entry is a host (a name or a bare IP address), optionally with `:port`; `*.example.com` takes
any name under example.com (not example.com itself). Without a port an entry takes any port. An
empty setting takes any host: the address check (public addresses only) is egress.py's.
"""

import ipaddress
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_hosts(text):
    """VOICE_RECORDING_HOSTS as a tuple of (host, port or None); ValueError naming a bad entry."""
    hosts = []
    for entry in (part.strip().lower() for part in str(text or "").split(",")):
        if not entry:
            continue
        host, port = _split(entry)
        name = host[2:] if host.startswith("*.") else host
        if not name or "*" in name or "/" in name or (port is not None and not 0 < port < 65536):
            raise ValueError(f"VOICE_RECORDING_HOSTS: {entry!r} is not a host, *.domain or host:port")
        hosts.append((host, port))
    return tuple(hosts)


def _split(entry):
    """(host, port or None) of `host`, `host:port`, `[v6]` or `[v6]:port`; ValueError for a bad port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, None  # a name, or a bare IPv6 address
    if port is not None and not port.isdigit():
        raise ValueError(f"VOICE_RECORDING_HOSTS: {entry!r} has a port that is not a number")
    return host, int(port) if port is not None else None


def origin(url):
    """(scheme, host, port) of an http(s) URL, the port filled in from the scheme; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def allowed(url, hosts):
    """True when `url`'s host (and port) is one of `hosts` (parse_hosts), or `hosts` is empty."""
    found = origin(url)
    if found is None:
        return False
    if not hosts:
        return True
    _, host, port = found
    return any(_matches(host, pattern) and wanted in (None, port) for pattern, wanted in hosts)


def _matches(host, pattern):
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and not _is_ip(host)
    return host == pattern or (_is_ip(host) and _is_ip(pattern) and ipaddress.ip_address(host) == ipaddress.ip_address(pattern))


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False

"""Requests the service makes to addresses it was given (webhook endpoints, AT's recording links): the one door.

A webhook URL comes from a client and a recording URL from an unauthenticated callback, so both are
untrusted: with requests-hardened, the name is resolved once and the connection goes to the address
that was checked (a DNS name cannot lead to a private, loopback or link-local address between check
and connect), redirects are never followed, and no proxy from the environment is used; what is read of an
answer is the caller's to cap (read_some here, voice/recordings/download.py for recordings). `VOICE_ALLOW_PRIVATE_TARGETS=1` lets private and loopback addresses through, for
tests and local development.

Every failure is an EgressError with a short reason (`refused_address`, `timeout`, `connection`,
`request`, `bad_url`), so callers never see a `requests` exception.
"""

import re
import time

import requests
import urllib3
from flask import current_app
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import InvalidIPAddress

USER_AGENT = "voice-service"


class EgressError(Exception):
    """A request to an outside address failed; `reason` is a stable word, `status` the answer's code if any."""

    def __init__(self, reason, message, status=None):
        super().__init__(message)
        self.reason, self.status = reason, status


def session(timeout, allow_private=False):
    """A requests session that connects only to checked addresses and never follows a redirect.

    `allow_private` lets private and loopback addresses through for this session only (the simulated AT's
    own recordings, voice/recordings/download.py); VOICE_ALLOW_PRIVATE_TARGETS does so for every one.
    """
    allow_private = allow_private or bool(current_app.config.get("VOICE_ALLOW_PRIVATE_TARGETS"))
    http = HTTPSession(Config(ip_filter_enable=not allow_private, ip_filter_allow_loopback_ips=False,
                              never_redirect=True, default_timeout=(timeout, timeout),
                              user_agent_override=USER_AGENT))
    http.trust_env = False  # an HTTP_PROXY in the environment would connect on our behalf, unchecked
    return http


def stream(method, url, *, timeout, allow_private=False, **kwargs):
    """A checked, redirect-free streamed response (the caller closes it and caps what it reads); EgressError."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise EgressError("bad_url", "only http and https URLs are fetched")
    try:
        http = session(timeout, allow_private)
        response = http.request(method, url, stream=True, timeout=(timeout, timeout), **kwargs)
        response.egress_session = http  # closed with the response by close()
        return response
    except InvalidIPAddress:
        raise EgressError("refused_address", "the address is private, loopback or link-local") from None
    except requests.Timeout:
        raise EgressError("timeout", f"no answer within {timeout:g} s") from None
    except requests.ConnectionError as error:
        raise EgressError("connection", _short(error)) from None
    except requests.RequestException as error:
        raise EgressError("request", _short(error)) from None


def read_some(response, max_bytes, seconds):
    """Up to `max_bytes` of a streamed response's body, read for about `seconds`; what came, never an error (a
    receiver's answer, kept only to show what it said).

    Each read returns whatever bytes have arrived (urllib3's `read1`), waiting at most the session's read timeout
    for one, and the clock is looked at after each: a receiver dripping its body a byte at a time is left once
    `seconds` have passed, after one more read timeout at most, instead of holding the thread until it is done.
    """
    body = bytearray()
    deadline = time.monotonic() + seconds
    try:
        while len(body) < max_bytes and time.monotonic() < deadline:
            chunk = response.raw.read1(max_bytes - len(body))
            if not chunk:
                break
            body += chunk
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError):
        pass
    return bytes(body[:max_bytes])


def close(response):
    """Close a response from stream() and its session."""
    response.close()
    getattr(response, "egress_session", response).close()


def _short(error):
    """A failure in a few words, without the URL (its query may hold a token): the system's reason if known."""
    found = re.search(r"\[Errno -?\d+\] [^'\")]*", str(error))
    return found.group(0)[:120] if found else type(error).__name__

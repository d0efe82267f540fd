"""Requests the service makes to addresses it was given (webhook endpoints, AT's recording links): the one door.

A webhook URL comes from a client and a recording URL from an unauthenticated callback, so both are
untrusted: with requests-hardened, the name is resolved once and the connection goes to the address
that was checked (a DNS name cannot lead to a private, loopback or link-local address between check
and connect), redirects are never followed, no proxy from the environment is used, and an answer is
read up to a cap. `VOICE_ALLOW_PRIVATE_TARGETS=1` lets private and loopback addresses through, for
tests and local development.

Every failure is an EgressError with a short reason (`refused_address`, `timeout`, `connection`,
`too_large`, `redirect`...), so callers never see a `requests` exception.
"""

import re
import time

import requests
from flask import current_app
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import InvalidIPAddress

USER_AGENT = "voice-service"
CHUNK = 64 * 1024


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


def request(method, url, *, timeout, max_bytes, **kwargs):
    """Send a request through a checked session; (response, body read up to `max_bytes`).

    Raises EgressError for a refused address, a timeout, a failed connection, an answer longer than
    `max_bytes`, or a URL that is not http(s). A redirect is returned as it is (3xx), never followed.
    """
    response = stream(method, url, timeout=timeout, **kwargs)
    try:
        return response, read_capped(response, max_bytes)
    finally:
        close(response)


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


def read_capped(response, max_bytes, timeout=None):
    """The body of a streamed response, at most `max_bytes` (EgressError `too_large` past it, `timeout`...)."""
    return b"".join(iter_capped(response, max_bytes))


def iter_capped(response, max_bytes):
    """The body of a streamed response in chunks, at most `max_bytes` in all (EgressError `too_large` past it)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise EgressError("too_large", f"the answer is {declared} bytes, over {max_bytes}", response.status_code)
    read = 0
    try:
        for chunk in response.iter_content(CHUNK):
            read += len(chunk)
            if read > max_bytes:
                raise EgressError("too_large", f"the answer is over {max_bytes} bytes", response.status_code)
            yield chunk
    except requests.Timeout:
        raise EgressError("timeout", "the answer stopped") from None
    except requests.RequestException as error:
        raise EgressError("connection", _short(error)) from None


def read_some(response, max_bytes, seconds):
    """Up to `max_bytes` of a streamed response's body, read for at most `seconds`; what came, never an error (a
    receiver's answer, kept only to show what it said)."""
    body = bytearray()
    deadline = time.monotonic() + seconds
    try:
        for chunk in response.iter_content(min(CHUNK, max_bytes)):
            body += chunk
            if len(body) >= max_bytes or time.monotonic() > deadline:
                break
    except requests.RequestException:
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

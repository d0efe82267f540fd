"""Downloading one recording link, guarded: through voice/egress.py, within the size cap, audio only.

The link came in an unauthenticated callback. egress.py connects only to public addresses (unless
VOICE_ALLOW_PRIVATE_TARGETS) and never follows a redirect; here a redirect is followed to the same
host and port only, a few hops at most, each hop through egress again; the host must be one of
VOICE_RECORDING_HOSTS when it is set; the answer must be within VOICE_RECORDING_MAX_MB and of an audio
type (a `type/subtype` of at most 100 characters, as the row keeps it), or of a type that says nothing
(application/octet-stream, binary/octet-stream, none) with bytes that mutagen reads as an audio format,
whose type is then the one kept. The body is read as it arrives (urllib3's read1), so the deadline for the
whole download holds against a source that sends a byte now and then.
A failure that may pass (404 while the file is not ready, 5xx, a timeout, a lost connection) is
NotYet; any other is Refused, for good.
"""

import hashlib
import mimetypes
import os
import re
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import mutagen
import urllib3
from flask import current_app

from voice import egress, settings
from voice.recordings import sources

TIMEOUT = 10.0          # seconds to connect, and between two pieces of the answer
DEADLINE = 300.0        # seconds for a whole download (the worker's claim lasts longer)
CHUNK = 64 * 1024       # the most read at once (less when less has arrived)
HOPS = 3                # redirects followed, to the same host and port only
PASSING = {404, 408, 425, 429}  # answers that may change: not ready yet, too busy
# The audio types we name files for, the preferred first: a format mutagen reads takes the first of its types here.
EXTENSIONS = {"audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/wav": ".wav", "audio/x-wav": ".wav",
              "audio/wave": ".wav", "audio/ogg": ".ogg", "audio/vorbis": ".ogg", "audio/flac": ".flac",
              "audio/webm": ".webm", "audio/mp4": ".m4a", "audio/aac": ".aac", "audio/x-aac": ".aac"}
UNTYPED = {"application/octet-stream", "binary/octet-stream", ""}  # types that say nothing: the bytes must be audio
TYPE_LENGTH = 100       # the longest type kept (the row's content_type column)
MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+")  # type/subtype, HTTP's tokens


class Failure(Exception):
    """A download that failed; `reason` is a stable word, the message says more."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason

    def __str__(self):
        return f"{self.reason}: {self.args[0]}"


class NotYet(Failure):
    """A failure that may pass: try again later."""


class Refused(Failure):
    """A failure that will not pass: the link is not fetched."""


@dataclass
class Downloaded:
    """A recording downloaded into a temporary file."""

    path: str
    size: int
    sha256: str
    content_type: str
    extension: str
    duration_seconds: float | None


def download(url, folder, *, max_bytes=None, deadline=DEADLINE):
    """Download the recording at `url` into a new file in `folder`; Downloaded, or NotYet / Refused."""
    config = current_app.config
    max_bytes = max_bytes or int(config["VOICE_RECORDING_MAX_MB"]) * 1024 * 1024
    ends = time.monotonic() + deadline
    first = sources.origin(url)
    if first is None:
        raise Refused("bad_url", "not an http(s) URL")
    private = _simulated_origin(first)
    if not private and not sources.allowed(url, settings.current().recording_hosts):
        raise Refused("host_not_allowed", f"{first[1]} is not in VOICE_RECORDING_HOSTS")
    for _ in range(HOPS + 1):
        response = _get(url, private)
        try:
            if response.is_redirect or 300 <= response.status_code < 400:
                target = urljoin(url, response.headers.get("Location", ""))
                there = sources.origin(target)
                if there is None or there[1:] != first[1:]:
                    raise Refused("redirect", "redirected to another host")
                url = target
                continue
            _check_answer(response)
            return _save(response, folder, max_bytes, deadline, ends)
        finally:
            egress.close(response)
    raise Refused("redirect", f"more than {HOPS} redirects")


def _simulated_origin(origin):
    """True for a link of the simulated AT the service runs beside (simulated mode only): loopback, yet fetched."""
    if settings.current().mode != "simulated":
        return False
    return sources.origin(current_app.config.get("AT_VOICE_API_URL") or "") == origin


def _get(url, private):
    try:
        return egress.stream("GET", url, timeout=TIMEOUT, allow_private=private)
    except egress.EgressError as error:
        if error.reason in ("timeout", "connection", "request"):
            raise NotYet(error.reason, str(error)) from None
        raise Refused(error.reason, str(error)) from None


def _check_answer(response):
    """Refuse or postpone an answer that is not a 2xx of an audio type, or untyped (its bytes are read later)."""
    status = response.status_code
    if status in PASSING or status >= 500:
        raise NotYet(f"http_{status}", f"the source answered {status}")
    if not 200 <= status < 300:
        raise Refused(f"http_{status}", f"the source answered {status}")
    kind = _media_type(response)
    if kind not in UNTYPED and (len(kind) > TYPE_LENGTH or not MEDIA_TYPE.fullmatch(kind)):
        shown = kind if len(kind) <= 40 else kind[:40] + "..."
        raise Refused("bad_content_type", f"the answer's Content-Type {shown!r} is not a type/subtype of at most "
                      f"{TYPE_LENGTH} characters")
    if not kind.startswith("audio/") and kind not in UNTYPED:
        raise Refused("not_audio", f"the answer is {kind}, not audio")


def _media_type(response):
    return (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def _save(response, folder, max_bytes, deadline, ends):
    """Write the answer to a temporary file as it arrives, hashing it, until the clock passes `ends` (the download's
    `deadline` seconds); its format and duration read by mutagen (an untyped answer that is no audio format is
    refused, and its file removed)."""
    kind = _media_type(response)
    digest, size = hashlib.sha256(), 0
    handle, path = tempfile.mkstemp(dir=folder, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            for chunk in _arriving(response, max_bytes):
                file.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if time.monotonic() > ends:
                    raise NotYet("timeout", f"the download took over {deadline:g} s")
        if size == 0:
            raise NotYet("empty", "the source answered with no audio")
        found, duration = _identify(path)
        if kind in UNTYPED:
            if found is None:
                raise Refused("not_audio", f"the answer is {kind or 'untyped'} and no audio format is read in it")
            kind = found
        return Downloaded(path, size, digest.hexdigest(), kind, EXTENSIONS.get(kind) or
                          mimetypes.guess_extension(kind) or ".audio", duration)
    except egress.EgressError as error:
        os.remove(path)
        if error.reason == "too_large":
            raise Refused("too_large", f"over VOICE_RECORDING_MAX_MB ({max_bytes} bytes)") from None
        raise NotYet(error.reason, str(error)) from None
    except BaseException:
        os.remove(path)
        raise


def _arriving(response, max_bytes):
    """The body in pieces as they arrive (read1: what has come, up to CHUNK, without waiting for a whole CHUNK),
    `max_bytes` in all at most; EgressError `too_large`, `timeout` (nothing for TIMEOUT s), `connection`."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise egress.EgressError("too_large", f"the answer is {declared} bytes, over {max_bytes}")
    read = 0
    try:
        while chunk := response.raw.read1(CHUNK, decode_content=True):
            read += len(chunk)
            if read > max_bytes:
                raise egress.EgressError("too_large", f"the answer is over {max_bytes} bytes")
            yield chunk
    except urllib3.exceptions.ReadTimeoutError:
        raise egress.EgressError("timeout", f"nothing came for {TIMEOUT:g} s") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise egress.EgressError("connection", type(error).__name__) from None


def _identify(path):
    """(the audio type of the file's format, its length in seconds) as mutagen reads them; None for either it
    cannot tell (not a format it knows, one that is not audio, or bytes that break mutagen's reading)."""
    try:
        found = mutagen.File(path)
    except Exception:  # mutagen raises more than its own errors on a corrupt file (IndexError, struct.error...)
        return None, None
    if found is None:
        return None, None
    types = [kind.split(";")[0].strip().lower() for kind in found.mime]
    kind = next((known for known in EXTENSIONS if known in types), None) or \
        next((other for other in types if other.startswith("audio/")), None)
    length = getattr(found.info, "length", None)
    return kind, float(length) if length else None

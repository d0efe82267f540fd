"""The one place that talks to Africa's Talking: a thin wrapper around the official SDK.

Views never see an SDK or `requests` exception: every failure becomes an `ATError`
whose `code` is stable and whose `message` carries what AT said.
"""

import json
import logging
import threading
import time

import africastalking
import requests
from africastalking.Service import AfricasTalkingException
from flask import current_app

from voice import metrics
from voice.phone import mask

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.05
REQUIRED_SETTINGS = ("AT_USERNAME", "AT_API_KEY", "AT_VOICE_NUMBER")


class ATError(Exception):
    """A dial-out that AT did not accept, or could not be asked."""

    def __init__(self, code, message, at_status=None, response=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.at_status = at_status
        self.response = response


class Busy(Exception):
    """Too many dial-outs are already waiting on AT in this worker."""


class NotConfigured(Exception):
    """Dial-out is off because settings are missing; `missing` names them."""

    def __init__(self, missing):
        super().__init__("missing settings: " + ", ".join(missing))
        self.missing = missing


class VoiceClient:
    """Places calls through the SDK's VoiceService, with our timeout and base URL."""

    def __init__(self, username, api_key, voice_number, base_url="", timeout=8.0, max_in_flight=4):
        # Our own VoiceService instance rather than africastalking.initialize(), which
        # replaces module globals shared by every app in the process.
        self._service = africastalking.VoiceService(username, api_key)
        if base_url:
            # The SDK has no public option for its host; _baseUrl is what it joins paths to.
            self._service._baseUrl = base_url.rstrip("/")
        self.voice_number = voice_number
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self._slots = threading.BoundedSemaphore(max_in_flight)

    def call(self, phone):
        """Ask AT to call `phone` (E.164 with `+`) from our number; return AT's answer as a dict.

        Raises Busy at once, rather than queueing, when this worker already has its cap of
        dial-outs waiting on AT, so a stalled AT cannot tie up the threads callbacks need.
        """
        if not self._slots.acquire(blocking=False):
            raise Busy()
        try:
            return self._call(phone)
        finally:
            self._slots.release()

    def _call(self, phone):
        outcome = "at_error"
        started = time.perf_counter()
        try:
            answer = self._ask_at(phone)
            outcome = "ok"
            return answer
        except ATError as exc:
            outcome = exc.code
            raise
        finally:
            metrics.child(metrics.AT_REQUESTS, "call", outcome).inc()
            metrics.child(metrics.AT_LATENCY, "call").observe(time.perf_counter() - started)

    def _ask_at(self, phone):
        try:
            # The SDK wants a list: a str is iterated character by character.
            answer = self._service.call(callFrom=self.voice_number, callTo=[phone], timeout=self.timeout)
        except AfricasTalkingException as exc:
            raise ATError("at_rejected", f"Africa's Talking refused the request: {_short(str(exc))}") from None
        except requests.exceptions.JSONDecodeError:
            # The SDK parsed a body labelled application/json that was not JSON.
            raise ATError("at_bad_response", "Africa's Talking answered with a body that is not JSON") from None
        except requests.Timeout:
            raise ATError("at_timeout", f"Africa's Talking did not answer within {self.timeout[1]:g} s") from None
        except requests.RequestException as exc:
            raise ATError("at_unreachable", f"Africa's Talking could not be reached ({type(exc).__name__})") from None
        answer = _as_object(answer)
        _check_entries(answer)
        log.info("AT queued call to %s", mask(phone))
        return answer


def _as_object(answer):
    """Return AT's answer as a dict: the SDK hands back a str when the content type has parameters."""
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            raise ATError("at_bad_response", f"Africa's Talking answered with a body that is not JSON: {_short(answer)}") from None
    if not isinstance(answer, dict):
        raise ATError("at_bad_response", "Africa's Talking answered with JSON that is not an object")
    return answer


def _check_entries(answer):
    """Raise ATError unless AT queued every number: per-number failures come inside a 2xx."""
    error_message = answer.get("errorMessage")
    entries = answer.get("entries")
    if error_message not in (None, "None", "") and not entries:
        raise ATError("at_rejected", f"Africa's Talking refused the call: {_short(str(error_message))}", response=answer)
    if not isinstance(entries, list) or not entries:
        raise ATError("at_bad_response", "Africa's Talking answered without any call entry", response=answer)
    for entry in entries:
        status = entry.get("status") if isinstance(entry, dict) else None
        if status != "Queued":
            raise ATError(
                "at_call_failed",
                f"Africa's Talking did not queue the call: {status or 'no status'}",
                at_status=status,
                response=answer,
            )


def _short(text, limit=300):
    """Trim a foreign message to a size fit for a JSON error body."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def init_app(app):
    """Build the dial-out client from the app's settings, or record which settings are missing."""
    missing = [name for name in REQUIRED_SETTINGS if not app.config.get(name)]
    client = None
    if not missing:
        client = VoiceClient(
            app.config["AT_USERNAME"],
            app.config["AT_API_KEY"],
            app.config["AT_VOICE_NUMBER"],
            base_url=app.config.get("AT_VOICE_API_URL", ""),
            timeout=float(app.config["AT_TIMEOUT_SECONDS"]),
            max_in_flight=int(app.config["VOICE_MAX_DIALOUTS_IN_FLIGHT"]),
        )
    app.extensions["voice_client"] = client
    app.extensions["voice_client_missing"] = missing


def get_client():
    """The app's VoiceClient, or NotConfigured naming the missing settings."""
    client = current_app.extensions.get("voice_client")
    if client is None:
        raise NotConfigured(current_app.extensions.get("voice_client_missing") or list(REQUIRED_SETTINGS))
    return client

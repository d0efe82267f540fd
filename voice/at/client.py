"""The one place that talks to Africa's Talking: a thin wrapper around the official SDK.

Views never see an SDK or `requests` exception: every failure becomes an `ATError`
whose `code` is stable and whose `message` carries what AT said. The SDK is used as it is,
through its public methods only; what it cannot do is posted by the wrapper's one helper.
"""

import logging
import threading
import time

import africastalking
import requests
from africastalking.Service import AfricasTalkingException
from flask import current_app

from voice import metrics
from voice.at.answers import ATError, Busy, NotConfigured, as_object, check_entries, short
from voice.phone import mask
from voice.settings import AT_CREDENTIALS
from voice.shapes import absent

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.05
# AT's hosts, as the SDK picks them: the sandbox for the username `sandbox`, else the live one.
VOICE_URL, SANDBOX_VOICE_URL = "https://voice.africastalking.com", "https://voice.sandbox.africastalking.com"
WEBRTC_URL = "https://webrtc.africastalking.com"
USER_AGENT = "voice-service (africastalking-python)"


class VoiceClient:
    """AT's voice API through the SDK's VoiceService, with our timeout, error mapping and in-flight cap.

    What the SDK lacks (`/callTransfer`, `clientRequestId` on `/call`, the WebRTC token) or hides (the
    HTTP status `/mediaUpload` answers with) is posted by `_post` with the same credentials. The SDK
    cannot be told another host, so with `base_url` (AT_VOICE_API_URL: the simulated AT, a proxy of
    yours) every request is posted by `_post`, in the forms the SDK sends.
    """

    def __init__(self, username, api_key, voice_number, base_url="", timeout=8.0, max_in_flight=4, webrtc_url=""):
        # Our own VoiceService instance rather than africastalking.initialize(), which
        # replaces module globals shared by every app in the process.
        self._sdk = None if base_url else africastalking.VoiceService(username, api_key)
        self.base_url = (base_url or (SANDBOX_VOICE_URL if username == "sandbox" else VOICE_URL)).rstrip("/")
        self.webrtc_url = (webrtc_url or WEBRTC_URL).rstrip("/")
        self._username = username
        self._headers = {"Accept": "application/json", "apiKey": api_key, "User-Agent": USER_AGENT}
        self.voice_number = voice_number
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self._slots = threading.BoundedSemaphore(max_in_flight)

    def call(self, phones, client_request_id=None):
        """Ask AT to call `phones` (E.164 with `+`; one str, or a list) from our number; AT's answer as a dict.

        One number must be queued or it raises ATError; with a list, it raises only when AT
        queued none of them, and the answer's entries say how each one went.
        Raises Busy at once, rather than queueing, when this worker already has its cap of
        requests waiting on AT, so a stalled AT cannot tie up the threads callbacks need.
        """
        numbers = [phones] if isinstance(phones, str) else list(phones)

        def ask():
            if self._sdk is not None and client_request_id is None:
                # The SDK wants a list: a str is iterated character by character.
                answer = self._sdk.call(callFrom=self.voice_number, callTo=numbers, timeout=self.timeout)
            else:
                answer = self._voice("/call", {"from": self.voice_number, "to": ",".join(numbers),
                                              "clientRequestId": client_request_id})
            answer = as_object(answer)
            check_entries(answer, every=isinstance(phones, str))
            return answer

        answer = self._ask("call", ask)
        for entry in answer["entries"]:
            if isinstance(entry, dict) and entry.get("status") == "Queued":
                log.info("AT queued call to %s", mask(entry.get("phoneNumber")))
        return answer

    def queue_status(self, numbers):
        """How many callers wait in the queues of each of our `numbers`: AT's entries, through the SDK."""

        def ask():
            entries = []
            for number in numbers:
                if self._sdk is not None:
                    answer = as_object(self._sdk.fetch_queued_calls(number, timeout=self.timeout))
                else:
                    answer = as_object(self._voice("/queueStatus", {"phoneNumbers": number}))
                if answer.get("status") != "Success":
                    reason = answer.get("errorMessage")
                    reason = reason if not absent(reason) else answer.get("status") or "no status"
                    raise ATError("at_rejected", f"Africa's Talking refused the queue status: {short(str(reason))}",
                                  at_status=short(str(answer.get("status")), 64), response=answer)
                found = answer.get("entries")
                if not isinstance(found, list) or not all(isinstance(entry, dict) for entry in found):
                    raise ATError("at_bad_response", "Africa's Talking answered the queue status without its entries",
                                  response=answer)
                entries.extend(found)
            return entries

        return self._ask("queue", ask)

    def upload_media(self, url, phone=None):
        """Ask AT to fetch and cache the audio at `url` for our number `phone`; AT's answer.

        AT says it took the file with HTTP 201 and nothing else, a status the SDK's media_upload
        does not let us see, so the wrapper posts the SDK's form itself.
        """
        form = {"phoneNumber": phone or self.voice_number, "url": url}
        answer = self._ask("media", lambda: self._voice("/mediaUpload", form, success=201))
        log.info("AT took the media file %s", short(url.split("?")[0], 120))
        return answer

    def transfer(self, session_id, phone, call_leg="callee", hold_music_url=None):
        """Ask AT to move a live call's `call_leg` to `phone` (the SDK has no /callTransfer); AT's answer."""
        form = {"sessionId": session_id, "phoneNumber": phone, "callLeg": call_leg}
        if hold_music_url:
            form["holdMusicUrl"] = hold_music_url

        def ask():
            answer = as_object(self._voice("/callTransfer", form))
            outcome = answer.get("callTransferResponse")
            if not isinstance(outcome, dict):
                raise ATError("at_bad_response", "Africa's Talking answered the transfer without callTransferResponse",
                              response=answer)
            if outcome.get("status") != "Success":
                reason = outcome.get("errorMessage")
                reason = reason if not absent(reason) else outcome.get("status") or "no status"
                raise ATError("at_transfer_failed", f"Africa's Talking did not transfer the call: {short(str(reason))}",
                              at_status=short(str(outcome.get("status")), 64), response=answer)
            return answer

        return self._ask("transfer", ask)

    def capability_token(self, client_name, incoming=True, outgoing=True, expire=3600):
        """A capability token from AT for a browser or app client named `client_name`: AT's answer as a dict.

        AT's WebRTC token endpoint is not in the Python SDK; the wrapper posts it the JSON it
        takes, with the SDK's credentials and our number.
        """
        body = {"username": self._username, "clientName": client_name, "phoneNumber": self.voice_number,
                "incoming": incoming, "outgoing": outgoing, "expire": f"{int(expire)}s"}

        def ask():
            answer = as_object(self._post(self.webrtc_url + "/capability-token/request", json=body))
            error = answer.get("errorMessage")
            if not absent(error):
                raise ATError("at_rejected", f"Africa's Talking refused the token: {short(str(error))}")
            if not isinstance(answer.get("token"), str) or not answer["token"]:
                raise ATError("at_bad_response", "Africa's Talking answered the token request without a token")
            return answer

        return self._ask("token", ask)

    def _ask(self, operation, ask):
        """Run one request to AT in a dial-out slot, counted and timed, every failure an ATError."""
        if not self._slots.acquire(blocking=False):
            raise Busy(operation)
        outcome = "at_error"
        started = time.perf_counter()
        try:
            answer = self._mapped(ask)
            outcome = "ok"
            return answer
        except ATError as exc:
            outcome = exc.code
            exc.operation = operation
            raise
        finally:
            self._slots.release()
            metrics.child(metrics.AT_REQUESTS, operation, outcome).inc()
            metrics.child(metrics.AT_LATENCY, operation).observe(time.perf_counter() - started)

    def _mapped(self, ask):
        """`ask()`, with the SDK's and requests' exceptions turned into ATError."""
        try:
            return ask()
        except AfricasTalkingException as exc:
            raise ATError("at_rejected", f"Africa's Talking refused the request: {short(str(exc))}") from None
        except requests.exceptions.JSONDecodeError:
            # The SDK parsed a body labelled application/json that was not JSON.
            raise ATError("at_bad_response", "Africa's Talking answered with a body that is not JSON") from None
        except requests.Timeout:
            raise ATError("at_timeout", f"Africa's Talking did not answer within {self.timeout[1]:g} s") from None
        except requests.RequestException as exc:
            raise ATError("at_unreachable", f"Africa's Talking could not be reached ({type(exc).__name__})") from None

    def _voice(self, path, form, success=None):
        """POST `form` to AT's voice API at `path` as the SDK's own methods do (`username` added)."""
        return self._post(self.base_url + path, success=success, data=dict(form, username=self._username))

    def _post(self, url, success=None, **body):
        """POST to AT with our credentials (`data=` a form or `json=`); the body, a dict if JSON.

        A non-2xx answer (or, given `success`, any other status) raises AfricasTalkingException
        with AT's text, as the SDK does.
        """
        response = requests.post(url, headers=self._headers, timeout=self.timeout, **body)
        if not 200 <= response.status_code < 300 or (success and response.status_code != success):
            raise AfricasTalkingException(f"HTTP {response.status_code}: {response.text}")
        try:
            return response.json()
        except ValueError:
            return response.text


def init_app(app):
    """Build the AT client from the app's settings, or record which settings are missing."""
    missing = [name for name in AT_CREDENTIALS if not app.config.get(name)]
    client = None
    if not missing:
        client = VoiceClient(
            app.config["AT_USERNAME"],
            app.config["AT_API_KEY"],
            app.extensions["voice_settings"].at_numbers[0],  # AT_VOICE_NUMBER in E.164, as every number compared
            base_url=app.config.get("AT_VOICE_API_URL", ""),
            timeout=float(app.config["AT_TIMEOUT_SECONDS"]),
            max_in_flight=int(app.config["VOICE_MAX_DIALOUTS_IN_FLIGHT"]),
            webrtc_url=app.config.get("AT_WEBRTC_API_URL", ""),
        )
    app.extensions["voice_client"] = client
    app.extensions["voice_client_missing"] = missing


def get_client():
    """The app's VoiceClient, or NotConfigured naming the missing settings."""
    client = current_app.extensions.get("voice_client")
    if client is None:
        raise NotConfigured(current_app.extensions.get("voice_client_missing") or list(AT_CREDENTIALS))
    return client

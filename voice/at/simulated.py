"""A simulated Africa's Talking voice API on 127.0.0.1, for offline work and tests.

It answers `/call` and `/queueStatus` with AT's shapes and `Content-Type: application/json`.
Some destination numbers make it answer each failure AT gives (see TEST_NUMBERS), so a
developer can see how the service reacts without an account. Given the service's URL, it
also plays the callee of each call it queues: it drives /voice/instruct as AT would (see
voice.at.simulator), then sends the final notification and an event.
"""

import json
import logging
import secrets
import threading
import time
from http.server import ThreadingHTTPServer

from voice.at.simulated_http import handler_for
from voice.at.simulator import SimulatedCall, SimulationError, masked_line

log = logging.getLogger(__name__)

# Numbers that make the simulated AT fail the way the real one can: destinations of /call and
# /callTransfer, or our number given to /queueStatus and /mediaUpload.
TEST_NUMBERS = {
    "+254700000001": ("entry", "InvalidPhoneNumber"),
    "+254700000002": ("entry", "DestinationNotSupported"),
    "+254700000003": ("entry", "InsufficientCredit"),
    "+254700000401": ("http", 401),
    "+254700000500": ("http", 500),
    "+254700000504": ("hang", None),
    "+254700000415": ("not_json", None),
    "+254700000200": ("charset", None),
    "+254700000486": ("unanswered", "USER_BUSY"),
    "+254700000480": ("unanswered", "NO_ANSWER"),
    "+254700000409": ("refused", "NotAllowed"),
    "+254700000201": ("status", 200),
    # Callees for campaigns: a number that does not exist, a network failing for now, one who answers and hangs
    # up at the first question, and ones who press 2 or 9 wherever they are asked.
    "+254700000404": ("unanswered", "UNALLOCATED_NUMBER"),
    "+254700000408": ("unanswered", "NORMAL_TEMPORARY_FAILURE"),
    "+254700000487": ("hangs_up", None),
    "+254700000102": ("press", "2"),
    "+254700000109": ("press", "9"),
}


# Client names that make the simulated token endpoint fail the way AT's can: as the test number named does,
# or (fail_error) with AT's errorMessage in a 200.
TEST_CLIENTS = {"fail_401": "+254700000401", "fail_500": "+254700000500", "fail_hang": "+254700000504"}


def new_session_id():
    """A session id shaped like AT's: `ATVId_` and 32 hex digits."""
    return "ATVId_" + secrets.token_hex(16)


class SimulatedAT:
    """The simulated AT API server; `requests` holds every form it received, in order.

    Its callees press `digits` at each GetDigits, or `press[number]` when the number they
    answer is there.
    """

    def __init__(self, host="127.0.0.1", port=0, api_key=None, hang_seconds=30.0,
                 service_url=None, token=None, digits=("1",), answer_delay=0.3, bridge_seconds=0.0,
                 press=None):
        self.api_key = api_key
        self.press = press or {}
        self.bridge_seconds = bridge_seconds
        self.live = {}
        self.queues = {}
        self._lock = threading.Lock()
        self.hang_seconds = hang_seconds
        self.service_url = service_url
        self.token = token
        self.digits = digits
        self.answer_delay = answer_delay
        self.calls = []
        self.requests = []
        self._release = threading.Event()
        self._server = ThreadingHTTPServer((host, port), handler_for(self))
        self._server.daemon_threads = True
        self._thread = None

    @property
    def url(self):
        """The base URL to give AT_VOICE_API_URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        """Serve in a background thread; return self."""
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="simulated-at", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        """Serve in the current thread until interrupted."""
        self._server.serve_forever()

    def stop(self):
        """Release hanging requests and shut the server down."""
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def answer_call(self, form):
        """Status, content type and body for a POST /call with `form`."""
        numbers = [n for n in form.get("to", "").split(",") if n]
        if not form.get("username") or not form.get("from") or not numbers:
            return 400, "text/plain", "Request is missing required form field(s): username, from, to"
        behaviours = [TEST_NUMBERS.get(n, ("entry", "Queued")) for n in numbers]
        for number in numbers:
            failure = self._failure(number)
            if failure:
                return failure
        entries = []
        for number, (kind, value) in zip(numbers, behaviours):
            status = value if kind == "entry" else "Queued"
            session = new_session_id() if status == "Queued" else "None"
            entries.append({"phoneNumber": number, "status": status, "sessionId": session})
        content_type = "application/json; charset=utf-8" if any(k == "charset" for k, _ in behaviours) else "application/json"
        if self.service_url:
            for entry, behaviour in zip(entries, behaviours):
                if entry["status"] == "Queued":
                    self._place(entry, form["from"], behaviour, form.get("clientRequestId"))
        return 200, content_type, json.dumps({"entries": entries, "errorMessage": "None"})

    def _failure(self, number):
        """The answer a test number gives whatever it was asked (status, type, body), or None."""
        kind, value = TEST_NUMBERS.get(number, (None, None))
        if kind == "http":
            return value, "text/plain", ("The supplied authentication is invalid" if value == 401
                                         else "Internal Server Error")
        if kind == "hang":
            self._release.wait(self.hang_seconds)
            return 504, "text/plain", "Gateway Timeout"
        if kind == "not_json":
            return 200, "application/json", "<html><body>Service temporarily unavailable</body></html>"
        return None

    def _place(self, entry, our_number, behaviour, client_request_id=None):
        """Play the callee of a queued call in the background, as AT's network would."""
        extra = {"clientRequestId": client_request_id} if client_request_id else {}
        kind, value = behaviour
        unanswered_cause = value if kind == "unanswered" else None
        digits = [value] * 10 if kind == "press" else list(self.press.get(entry["phoneNumber"], self.digits))
        call = SimulatedCall(self.service_url, token=self.token, direction="Outbound", caller=entry["phoneNumber"],
                             our_number=our_number, session_id=entry["sessionId"], digits=digits,
                             say=lambda line: log.info("simulated call: %s", masked_line(line)), extra=extra,
                             on_bridge=self._bridged, hangs_up=kind == "hangs_up", recording_base=self.url)

        def play():
            if self._release.wait(self.answer_delay):
                return
            self.live[call.session_id] = call
            try:
                self.calls.append(call.unanswered(unanswered_cause) if unanswered_cause else call.run())
            except SimulationError as exc:
                log.warning("simulated call %s stopped: %s", call.session_id, exc)
            finally:
                self.live.pop(call.session_id, None)

        threading.Thread(target=play, name=f"callee-{entry['sessionId']}", daemon=True).start()

    def play_for(self, spec, say):
        """Play a call `voice simulate` asked for (POST /simulator/calls), its transcript sent to `say`.

        Played here rather than in the command, the call can wait in a queue, be dequeued by another
        simulated call, and be transferred through /callTransfer, as the calls this AT places can.
        """
        options = {"token": spec.get("token") or self.token, "our_number": spec.get("ourNumber") or "+254711000000",
                   "digits": [str(d) for d in spec.get("digits") or []], "say": say, "on_bridge": self._bridged,
                   "recording_base": self.url}
        url = spec.get("url") or self.service_url
        if spec.get("client"):
            call = SimulatedCall.from_client(url, spec.get("username") or "simulated", spec["client"],
                                             spec.get("dialled") or "", **options)
        else:
            call = SimulatedCall(url, direction="Outbound" if spec.get("direction") == "Outbound" else "Inbound",
                                 caller=spec.get("caller") or "+254712345678", **options)
        self.live[call.session_id] = call
        try:
            return call.run()
        finally:
            self.live.pop(call.session_id, None)

    def _bridged(self, call, action):
        """A call reached a bridging action: queue or dequeue it, and keep it connected for bridge_seconds."""
        if action.tag == "Dequeue":
            waiting = self._dequeue(action.get("phoneNumber"), action.get("name"))
            if waiting is None:
                call.say("  (the queue is empty: AT hangs up)")
                return
            waiting.dequeued_by = call
            call.say(f"  connected to the caller waiting since {waiting.enqueued_at:.0f}")
        queued = action.tag == "Enqueue"
        key = (call.our_number, action.get("name") or "")
        if queued:
            with self._lock:
                self.queues.setdefault(key, []).append(call)
            call.enqueued_at = time.time()
        try:
            self._release.wait(self.bridge_seconds)
        finally:
            if queued:
                with self._lock:
                    if call in self.queues.get(key, []):
                        self.queues[key].remove(call)

    def _dequeue(self, number, name):
        """The call waiting longest in `number`'s queue `name` (any queue of it when unnamed), taken out; or None."""
        with self._lock:
            for (our_number, queue_name), waiting in self.queues.items():
                if our_number == number and waiting and (not name or queue_name == name):
                    return waiting.pop(0)
        return None

    def answer_queue_status(self, form):
        """Status, content type and body for a POST /queueStatus: the simulated calls waiting now."""
        numbers = [n for n in form.get("phoneNumbers", "").split(",") if n]
        for number in numbers:
            failure = self._failure(number)
            if failure:
                return failure
            if TEST_NUMBERS.get(number, ("",))[0] == "refused":
                return 200, "application/json", json.dumps({"status": "Failed", "entries": [],
                                                            "errorMessage": "Not a voice number of this account"})
        entries = []
        with self._lock:
            for number in numbers:
                named = [(name, len(calls)) for (ours, name), calls in self.queues.items() if ours == number]
                entries += [{"phoneNumber": number, "queueName": name, "numCalls": count}
                            for name, count in named or [("", 0)]]
        content_type = "application/json; charset=utf-8" if "+254700000200" in numbers else "application/json"
        return 200, content_type, json.dumps({"status": "Success", "entries": entries, "errorMessage": "None"})

    def answer_media_upload(self, form):
        """Status, content type and body for a POST /mediaUpload: 201 for an http(s) URL, as AT answers."""
        number, url = form.get("phoneNumber", ""), form.get("url", "")
        failure = self._failure(number)
        if failure:
            return failure
        if not number or not url:
            return 400, "text/plain", "Request is missing required form field(s): phoneNumber, url"
        if not url.startswith(("http://", "https://")):
            return 400, "text/plain", "Invalid url: the media file must be served over http(s)"
        if TEST_NUMBERS.get(number) == ("status", 200):
            return 200, "application/json", json.dumps({"status": "Queued"})
        return 201, "application/json", json.dumps({"status": "Success"})

    def answer_call_transfer(self, form):
        """Status, content type and body for a POST /callTransfer: Success for a live simulated call."""
        number, session_id = form.get("phoneNumber", ""), form.get("sessionId", "")
        failure = self._failure(number)
        if failure:
            return failure
        kind, value = TEST_NUMBERS.get(number, (None, None))
        call = self.live.get(session_id)
        if kind in ("entry", "refused"):
            error = value
        elif call is None or call.transferred_to:
            error = "Call session is not active"
        else:
            error = None
            call.transferred_to = number
            call.say(f"TRANSFER {form.get('callLeg') or 'callee'} to {number}")
            threading.Thread(target=self._report_transfer, args=(call, number), daemon=True).start()
        outcome = {"status": "Aborted" if error else "Success", "errorMessage": error or "None"}
        return 200, "application/json", json.dumps({"callTransferResponse": outcome})

    def answer_capability_token(self, form):
        """Status, content type and body for a POST /capability-token/request: a clearly fake token."""
        name = form.get("clientName")
        failure = self._failure(TEST_CLIENTS.get(name))
        if failure:
            return failure
        if name == "fail_error":
            return 200, "application/json", json.dumps({"errorMessage": "Invalid phoneNumber for this account"})
        if not form.get("username") or not name or not form.get("phoneNumber"):
            return 400, "application/json", json.dumps({"errorMessage": "username, clientName and phoneNumber are required"})
        seconds = str(form.get("expire", "86400s")).rstrip("s")
        return 200, "application/json", json.dumps({
            "clientName": name, "incoming": form.get("incoming", True), "outgoing": form.get("outgoing", True),
            "lifeTimeSec": seconds if seconds.isdigit() else "86400",
            "token": "SIMULATED-NOT-A-REAL-TOKEN-" + secrets.token_hex(16)})

    def _report_transfer(self, call, number):
        """The notification AT sends when a transfer starts."""
        try:
            call.notify(callSessionState="Transferred", callTransferState="Active",
                        callTransferredToNumber=number, callTransferParam=f"{number}:0")
        except SimulationError as exc:
            log.warning("simulated call %s: transfer notification failed: %s", call.session_id, exc)

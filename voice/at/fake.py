"""A simulated Africa's Talking voice API on 127.0.0.1, for offline work and tests.

It answers `/call` and `/queueStatus` with AT's shapes and `Content-Type: application/json`.
Some destination numbers make it answer each failure AT gives (see TEST_NUMBERS), so a
developer can see how the service reacts without an account. Given the service's URL, it
also plays the callee of each call it queues: it drives /voice/instruct as AT would (see
voice.at.simulator), then sends the final notification and an event.
"""

import json
import logging
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from voice.phone import mask
from voice.at.simulator import SimulatedCall, SimulationError

log = logging.getLogger(__name__)

# Destination numbers that make the simulated AT fail the way the real one can.
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
}


def new_session_id():
    """A session id shaped like AT's: `ATVId_` and 32 hex digits."""
    return "ATVId_" + secrets.token_hex(16)


class FakeAT:
    """The simulated AT API server; `requests` holds every form it received, in order."""

    def __init__(self, host="127.0.0.1", port=0, api_key=None, hang_seconds=30.0,
                 service_url=None, token=None, digits=("1",), answer_delay=0.3):
        self.api_key = api_key
        self.hang_seconds = hang_seconds
        self.service_url = service_url
        self.token = token
        self.digits = digits
        self.answer_delay = answer_delay
        self.calls = []
        self.requests = []
        self._release = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = None

    @property
    def url(self):
        """The base URL to give AT_VOICE_API_URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        """Serve in a background thread; return self."""
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-at", daemon=True)
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
        for kind, value in behaviours:
            if kind == "http":
                body = "The supplied authentication is invalid" if value == 401 else "Internal Server Error"
                return value, "text/plain", body
            if kind == "hang":
                self._release.wait(self.hang_seconds)
                return 504, "text/plain", "Gateway Timeout"
            if kind == "not_json":
                return 200, "application/json", "<html><body>Service temporarily unavailable</body></html>"
        entries = []
        for number, (kind, value) in zip(numbers, behaviours):
            status = value if kind == "entry" else "Queued"
            session = new_session_id() if status == "Queued" else "None"
            entries.append({"phoneNumber": number, "status": status, "sessionId": session})
        content_type = "application/json; charset=utf-8" if any(k == "charset" for k, _ in behaviours) else "application/json"
        if self.service_url:
            for entry, (kind, value) in zip(entries, behaviours):
                if entry["status"] == "Queued":
                    self._place(entry, form["from"], value if kind == "unanswered" else None)
        return 200, content_type, json.dumps({"entries": entries, "errorMessage": "None"})

    def _place(self, entry, our_number, unanswered_cause):
        """Play the callee of a queued call in the background, as AT's network would."""
        call = SimulatedCall(self.service_url, token=self.token, direction="Outbound", caller=entry["phoneNumber"],
                             our_number=our_number, session_id=entry["sessionId"], digits=list(self.digits),
                             say=lambda line: log.info("simulated call: %s", _masked(line)))

        def play():
            if self._release.wait(self.answer_delay):
                return
            try:
                self.calls.append(call.unanswered(unanswered_cause) if unanswered_cause else call.run())
            except SimulationError as exc:
                log.warning("simulated call %s stopped: %s", call.session_id, exc)

        threading.Thread(target=play, name=f"callee-{entry['sessionId']}", daemon=True).start()

    def answer_queue_status(self, form):
        """Status, content type and body for a POST /queueStatus."""
        numbers = [n for n in form.get("phoneNumbers", "").split(",") if n]
        entries = [{"phoneNumber": n, "queueName": "", "numCalls": 0} for n in numbers]
        return 200, "application/json", json.dumps({"status": "Success", "entries": entries, "errorMessage": "None"})


def _masked(line):
    """A transcript line fit for a log: phone numbers masked."""
    return re.sub(r"\+\d{7,15}", lambda found: mask(found.group()), line)


def _handler_for(fake):
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeAT/1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", "replace")
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            fake.requests.append({"path": self.path, "form": form, "apiKey": self.headers.get("apiKey")})
            if fake.api_key is not None and self.headers.get("apiKey") != fake.api_key:
                self._send(401, "text/plain", "The supplied authentication is invalid")
            elif self.path == "/call":
                self._send(*fake.answer_call(form))
            elif self.path == "/queueStatus":
                self._send(*fake.answer_queue_status(form))
            else:
                self._send(404, "text/plain", "Not Found")

        def _send(self, status, content_type, body):
            data = body.encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a hang test); nothing to answer

        def log_message(self, fmt, *args):
            log.debug("fake AT: " + fmt, *args)

    return Handler

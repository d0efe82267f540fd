"""The simulated AT's HTTP side: each request AT's API would take, routed to the SimulatedAT's answers."""

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from voice.at.simulator import SimulationError

log = logging.getLogger("voice.at.simulated")


def handler_for(simulated):
    """The request handler class of an HTTP server that serves the SimulatedAT `simulated`."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "SimulatedAT/1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", "replace")
            if (self.headers.get("Content-Type") or "").startswith("application/json"):
                try:
                    form = json.loads(raw)
                except ValueError:
                    form = {}
                form = form if isinstance(form, dict) else {}
            else:
                form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            simulated.requests.append({"path": self.path, "form": form, "apiKey": self.headers.get("apiKey")})
            if simulated.api_key is not None and self.headers.get("apiKey") != simulated.api_key:
                self._send(401, "text/plain", "The supplied authentication is invalid")
            elif self.path == "/call":
                self._send(*simulated.answer_call(form))
            elif self.path == "/queueStatus":
                self._send(*simulated.answer_queue_status(form))
            elif self.path == "/mediaUpload":
                self._send(*simulated.answer_media_upload(form))
            elif self.path == "/callTransfer":
                self._send(*simulated.answer_call_transfer(form))
            elif self.path == "/capability-token/request":
                self._send(*simulated.answer_capability_token(form))
            elif self.path == "/simulator/calls":
                self._stream_call(form)
            else:
                self._send(404, "text/plain", "Not Found")

        def do_GET(self):
            """The recordings it sent links to (AT serves them without a key)."""
            self._send(*recording(self.path.split("?")[0]))

        def _stream_call(self, spec):
            """Not AT's: play a call for `voice simulate` and stream its transcript, a line at a time."""
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            lock = threading.Lock()

            def say(line):
                with lock:  # a transfer's line comes from another request's thread
                    try:
                        self.wfile.write((line + "\n").encode("utf-8"))
                        self.wfile.flush()
                    except OSError:
                        pass  # the command went away; the call plays on

            try:
                simulated.play_for(spec, say)
            except SimulationError as exc:
                say(f"ERROR {exc}")

        def _send(self, status, content_type, body):
            data = body if isinstance(body, bytes) else body.encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a hang test); nothing to answer

        def log_message(self, fmt, *args):
            log.debug("simulated AT: " + fmt, *args)

    return Handler


RECORDING_SECONDS = 2.0


def recording(path):
    """Status, content type and body for a GET of a recording link the simulated AT sent: a short silent MP3."""
    if not re.fullmatch(r"/recordings/[A-Za-z0-9_.:\-]{1,128}-\d{1,3}\.mp3", path):
        return 404, "text/plain", "Not Found"
    return 200, "audio/mpeg", silent_mp3(RECORDING_SECONDS)


def silent_mp3(seconds):
    """A real MP3 of `seconds` of silence: MPEG-1 layer III frames (128 kbit/s, 44.1 kHz) with no audio data."""
    frame = bytes([0xFF, 0xFB, 0x90, 0x64]) + bytes(413)  # a 417-byte frame: its header, then zeros (silence)
    return frame * max(1, round(seconds * 44100 / 1152))

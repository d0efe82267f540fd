"""A simulated call: plays AT's part against a running service, over HTTP, as AT would.

It posts the answered call to /voice/instruct, reads the XML back as a transcript, presses
digits at each GetDigits (scripted, or asked at the terminal), follows callbackUrl and
Redirect, and ends with the final `isActive=0` notification and an event. Anything AT would
choke on (an error status, XML that does not parse, nesting AT forbids) stops it with a
SimulationError naming the problem.
"""

import math
import re
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlparse, urlunparse

import requests

from voice import shapes
from voice.phone import mask

ELEMENTS = {"Say", "Play", "GetDigits", "Dial", "Record", "Redirect", "Reject", "Conference", "Enqueue", "Dequeue"}
TERMINAL = {"Dial", "Reject", "Conference", "Enqueue", "Dequeue"}
MAX_REQUESTS = 40
RATE_PER_MINUTE = 4.0  # KES, a plausible live rate for the simulated figures
RECORDING_URL = "https://simulated.invalid/recordings/{session}-{n}.mp3"  # played outside the simulated AT


class SimulationError(Exception):
    """The service answered something AT could not play."""


def check_document(text):
    """Parse call-flow XML and check it against AT's rules; return the <Response> element."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise SimulationError(f"the answer is not valid XML ({exc}): {text[:200]!r}") from None
    if root.tag != "Response":
        raise SimulationError(f"the XML root is <{root.tag}>, AT expects <Response>")
    actions = list(root)
    for index, action in enumerate(actions):
        if action.tag not in ELEMENTS:
            raise SimulationError(f"<{action.tag}> is not an AT action")
        if "callBackUrl" in action.attrib:
            raise SimulationError(f"<{action.tag}> has callBackUrl, which AT ignores: it spells it callbackUrl")
        children = list(action)
        if children and action.tag not in ("GetDigits", "Record"):
            raise SimulationError(f"<{action.tag}> holds <{children[0].tag}>: AT nests only inside GetDigits and Record")
        if len(children) > 1 or any(child.tag not in ("Say", "Play") for child in children):
            raise SimulationError(f"<{action.tag}> may hold one <Say> or <Play> only, not "
                                  + ", ".join(f"<{child.tag}>" for child in children))
        if action.tag == "Redirect" and index != len(actions) - 1:
            raise SimulationError("<Redirect> is not the last action: AT ignores everything after it")
    return root


@dataclass
class SimulatedCall:
    """One call, played against the service at `base_url`."""

    base_url: str
    token: str | None = None
    direction: str = "Inbound"
    caller: str = "+254712345678"
    our_number: str = "+254711000000"
    session_id: str = field(default_factory=lambda: "ATVId_sim" + secrets.token_hex(13))
    digits: list | None = None
    ask: object = None
    say: object = print
    timeout: float = 10.0
    seconds: float = 0.0
    recordings: list = field(default_factory=list)
    requests_made: int = 0
    last_digits: str | None = None
    extra: dict = field(default_factory=dict)
    on_bridge: object = None
    transferred_to: str | None = None
    dequeued_by: "SimulatedCall | None" = None
    enqueued_at: float = 0.0
    first_state: str = "Answered"
    hangs_up: bool = False  # the callee hangs up at the first GetDigits instead of answering it
    recording_base: str | None = None  # the simulated AT's URL, which serves the recordings it sends

    def webhook_url(self, name):
        """The service's /voice/<name> URL with the token, as configured in AT's dashboard."""
        query = "?" + urlencode({"token": self.token}) if self.token else ""
        return f"{self.base_url.rstrip('/')}/voice/{name}{query}"

    def fields(self, **extra):
        """The form AT posts, for this call."""
        form = {"sessionId": self.session_id, "direction": self.direction, "callerNumber": self.caller,
                "destinationNumber": self.our_number, "callerCountryCode": "254", "isActive": "1"}
        form.update(self.extra)
        form.update({k: v for k, v in extra.items() if v is not None})
        return form

    @classmethod
    def from_client(cls, base_url, username, client, dialled, **options):
        """A call placed from a browser or app client, shaped like AT's: caller `<username>.<client>`, Ringing first."""
        extra = {"clientDialedNumber": dialled, "callerCountryCode": "-1", "callerCarrierName": "None",
                 "callStartTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
        return cls(base_url, direction="Inbound", caller=f"{username}.{client}", extra=extra, first_state="Ringing",
                   **options)

    def run(self):
        """Play the whole call; return its final notification's fields."""
        if self.extra.get("clientDialedNumber"):
            self.say(f"CALL from client {self.caller} {self.session_id}, dialling {self.extra['clientDialedNumber']}")
        else:
            self.say(f"CALL {self.direction.lower()} {self.session_id} from {self.caller} to {self.our_number}")
        first = self.webhook_url("instruct")
        root = self.post(first, self.fields(callSessionState=self.first_state))
        self.play(root, first)
        return self.finish()

    def unanswered(self, cause="USER_BUSY"):
        """Send what AT sends for an outbound call nobody picked up: the final request only."""
        self.say(f"CALL {self.session_id} to {self.caller}: not answered ({cause})")
        final = self.fields(isActive="0", callSessionState="NotAnswered", status="NotAnswered", hangupCause=cause,
                            durationInSeconds="0", amount="0", currencyCode="KES", callStartTime="None")
        self.post(self.webhook_url("instruct"), final, expect_xml=False)
        self.post(self.webhook_url("events"), final, expect_xml=False)
        return final

    def post(self, url, form, expect_xml=True):
        """POST to the service like AT; the checked <Response> (or None when no XML is expected)."""
        self.requests_made += 1
        if self.requests_made > MAX_REQUESTS:
            raise SimulationError(f"the call went through {MAX_REQUESTS} callbacks: the flow seems to loop")
        try:
            response = requests.post(self.local(url), data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SimulationError(f"cannot reach {self.local(url)}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise SimulationError(f"{urlparse(url).path} answered HTTP {response.status_code}: {response.text[:200]}")
        return check_document(response.text) if expect_xml else None

    def local(self, url):
        """A callback URL of the service, pointed at `base_url` (the XML may name a public host)."""
        parsed, base = urlparse(url), urlparse(self.base_url)
        if parsed.path.startswith("/voice/"):
            return urlunparse(parsed._replace(scheme=base.scheme, netloc=base.netloc))
        return url

    def play(self, root, current_url):
        """Run a document's actions in order, switching to the next document when AT would."""
        actions, index = list(root), 0
        while index < len(actions):
            action = actions[index]
            index += 1
            if action.tag == "Say":
                self.say(f"SAY ({action.get('voice', 'woman')}): {action.text or ''}")
                self.seconds += max(1.0, len((action.text or "").split()) / 2.5)
            elif action.tag == "Play":
                self.say(f"PLAY {action.get('url')}")
                self.seconds += 5
            elif action.tag == "GetDigits":
                self.prompt(action)
                if self.hangs_up:
                    self.say("HANGUP (the callee hung up at the question)")
                    return
                keys = self.next_digits(action)
                if not keys:
                    self.say("  (no input)")
                    self.seconds += float(action.get("timeout", 30))
                    continue
                self.say(f"  PRESS {keys}")
                self.last_digits = keys
                self.seconds += 3
                current_url = action.get("callbackUrl") or current_url
                actions, index = list(self.post(current_url, self.fields(dtmfDigits=keys))), 0
            elif action.tag == "Record":
                self.prompt(action)
                url = self.recording_url(len(self.recordings) + 1)
                self.recordings.append(url)
                if not action.attrib:
                    self.say("RECORD until hang-up")
                    self.seconds += 20
                    return
                self.say(f"RECORD up to {action.get('maxLength', 'unlimited')} s")
                self.seconds += min(10, float(action.get("maxLength", 10)))
                current_url = action.get("callbackUrl") or current_url
                actions, index = list(self.post(current_url, self.fields(recordingUrl=url))), 0
            elif action.tag == "Redirect":
                target = (action.text or "").strip()
                self.say(f"REDIRECT {urlparse(target).path}")
                if not urlparse(self.local(target)).netloc == urlparse(self.base_url).netloc:
                    self.say("  (outside this service: not followed)")
                    return
                current_url = target
                actions, index = list(self.post(current_url, self.fields())), 0
            else:
                self.say(f"{action.tag.upper()} " + " ".join(f"{k}={v}" for k, v in action.attrib.items()))
                for address in (action.get("phoneNumbers") or "").split(",") if action.tag == "Dial" else []:
                    client = shapes.CLIENT_ADDRESS.fullmatch(address)
                    if client:
                        self.say(f"  (rings the browser or app client {client.group(2)})")
                self.seconds += 30 if action.tag == "Dial" else 1
                if self.on_bridge is not None and action.tag != "Reject":
                    self.on_bridge(self, action)
                return  # Dial (answered), Reject, Conference and the queues end what the flow plays
        self.say("HANGUP (no more actions)")

    def recording_url(self, n):
        """The link AT would send for this call's recording `n`: served by the simulated AT when it plays the call."""
        if self.recording_base:
            return f"{self.recording_base.rstrip('/')}/recordings/{self.session_id}-{n}.mp3"
        return RECORDING_URL.format(session=self.session_id, n=n)

    def prompt(self, action):
        for child in action:
            label = f"SAY ({child.get('voice', 'woman')}): {child.text or ''}" if child.tag == "Say" \
                else f"PLAY {child.get('url')}"
            self.say("  " + label)
            self.seconds += 2

    def next_digits(self, action):
        """The keys the caller presses at this GetDigits: scripted, asked, or none."""
        if self.digits is not None:
            return self.digits.pop(0) if self.digits else ""
        if self.ask is not None:
            return self.ask(action)
        return ""

    def notify(self, **fields):
        """Send an event notification about this call to the service's events URL."""
        self.post(self.webhook_url("events"), self.fields(**fields), expect_xml=False)

    def finish(self):
        """Send the final notification to both URLs, as AT may; return its fields."""
        if self.dequeued_by is not None:
            agent = self.dequeued_by
            self.say(f"DEQUEUED to {agent.our_number}")
            self.notify(dequeuedToPhoneNumber=agent.our_number, dequeuedToSessionId=agent.session_id,
                        dequeueTime=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                        queueDurationInSeconds=str(max(0, round(time.time() - self.enqueued_at))))
        if self.transferred_to:
            self.notify(callSessionState="TransferCompleted", callTransferState="Completed",
                        callTransferredToNumber=self.transferred_to)
        duration = max(1, math.ceil(self.seconds))
        amount = math.ceil(duration / 60) * RATE_PER_MINUTE
        final = self.fields(isActive="0", callSessionState="Completed", status="Success",
                            hangupCause="NORMAL_CLEARING", durationInSeconds=str(duration),
                            amount=f"{amount:.4f}", currencyCode="KES",
                            recordingUrl=self.recordings[-1] if self.recordings else None)
        self.post(self.webhook_url("instruct"), final, expect_xml=False)
        self.post(self.webhook_url("events"), final, expect_xml=False)
        self.say(f"END after {duration} s, KES {amount:.2f}")
        return final


def masked_line(line):
    """A transcript line fit for a log: phone numbers masked."""
    return re.sub(r"\+\d{7,15}", lambda found: mask(found.group()), line)

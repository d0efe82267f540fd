"""Call flows as data: a YAML file of named steps, checked in full before any caller hears it.

A step is a list of actions, a menu, or a Python callable that returns actions. Every problem
found names the file, the step and the field, so a non-programmer can fix the file alone.
"""

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml

from voice.phone import InvalidPhone, normalise

DEFAULT_FLOW = Path(__file__).parent / "default.yaml"

STEP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MENU_KEYS = re.compile(r"^[0-9*#]{1,16}$")
VOICE_NAME = re.compile(r"^(man|woman|[a-z]{2,3}-[A-Z]{2}-[A-Za-z0-9-]{1,40})$")
CLIENT_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
SIP_ADDRESS = re.compile(r"^[A-Za-z0-9._+-]{1,64}@[A-Za-z0-9.-]{1,190}$")
CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
MAX_TEXT = 2000

# The file's action names (AT's element names, or the same in lower camel case) -> AT's element.
ACTION_NAMES = {
    name.lower(): name
    for name in ("Say", "Play", "GetDigits", "Dial", "Record", "Redirect", "Reject", "Conference", "Enqueue", "Dequeue")
}
PROMPTED = {"GetDigits", "Record"}


class FlowError(Exception):
    """A flow that must not reach a caller; `problems` lists every reason."""

    def __init__(self, source, problems):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid call flow {source}:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class Action:
    """One AT action: its element, attributes as AT spells them, text, prompt and the step it leads to."""

    element: str
    attrs: dict = field(default_factory=dict)
    text: str | None = None
    prompt: "Action | None" = None
    next: str | None = None
    # A Dial to browser or app clients (their names), or to whatever number a client's agent dialled:
    # both are resolved when the call is answered (voice.flows.clients).
    clients: list | None = None
    client_dialed: bool = False


@dataclass
class Menu:
    """Options keyed by what the caller presses, with retries and the no-input path."""

    prompt: Action
    options: dict
    retries: int = 2
    invalid: str = "Sorry, that is not an option."
    no_input: str = "Sorry, we did not get your choice."
    on_fail: str | None = None
    attrs: dict = field(default_factory=dict)

    @property
    def finish_key(self):
        """The key that ends the caller's entry, stripped from the digits AT sends."""
        return self.attrs.get("finishOnKey", "")


@dataclass
class Step:
    """A named step: exactly one of actions, a menu, or a Python callable."""

    name: str
    actions: list | None = None
    menu: Menu | None = None
    python: object = None
    python_name: str | None = None
    leads_to: list = field(default_factory=list)


@dataclass
class Flow:
    """A checked flow: its steps and where calls start."""

    source: str
    steps: dict
    inbound: str
    outbound: str | None = None
    numbers: dict = field(default_factory=dict)
    clients: str | None = None

    def start_for(self, direction, destination, from_client=False):
        """The first step of a call: a browser or app client's, else by the AT number it reached, then its direction."""
        if from_client and self.clients:
            return self.clients
        if destination and destination in self.numbers:
            return self.numbers[destination]
        if direction == "Outbound" and self.outbound:
            return self.outbound
        return self.inbound


class _Checker:
    """Collects every problem of a flow document instead of stopping at the first."""

    def __init__(self, step_names):
        self.step_names = step_names
        self.problems = []

    def fail(self, where, message):
        self.problems.append(f"{where}: {message}")

    # Values

    def text(self, where, value):
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "must be non-empty text")
            return None
        if len(value) > MAX_TEXT:
            self.fail(where, f"is longer than {MAX_TEXT} characters")
            return None
        # Line breaks and runs of spaces mean nothing to speech, and XML would rewrite a bare CR.
        value = " ".join(value.split())
        if any(ord(c) < 32 or 0xFFFE <= ord(c) <= 0xFFFF or 0xD800 <= ord(c) <= 0xDFFF for c in value):
            self.fail(where, "holds control characters, which XML cannot carry")
            return None
        return value

    def boolean(self, where, value):
        if not isinstance(value, bool):
            self.fail(where, "must be true or false")
            return None
        return "true" if value else "false"

    def count(self, where, value, low=1, high=86400):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(where, f"must be a whole number from {low} to {high}")
            return None
        return str(value)

    def key(self, where, value):
        if not isinstance(value, str) or len(value) != 1 or value not in "0123456789*#":
            self.fail(where, "must be one keypad key in quotes, e.g. \"#\"")
            return None
        return value

    def url(self, where, value):
        if not isinstance(value, str) or len(value) > 2048:
            self.fail(where, "must be an http(s) URL")
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or any(c.isspace() for c in value):
            self.fail(where, f"{value!r} is not an absolute http(s) URL")
            return None
        return value

    def phone(self, where, value, sip=False):
        if isinstance(value, str) and sip and SIP_ADDRESS.match(value.strip()):
            return value.strip()
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.fail(where, "must be a phone number in quotes, e.g. \"+254711000000\"")
            return None
        try:
            return normalise(str(value))
        except InvalidPhone as exc:
            self.fail(where, f"{value!r}: {exc}")
            return None

    def phones(self, where, value):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.fail(where, "must be a list of phone numbers (or SIP addresses)")
            return None
        numbers = [self.phone(f"{where}[{i + 1}]", item.strip() if isinstance(item, str) else item, sip=True)
                   for i, item in enumerate(items)]
        return None if None in numbers else ",".join(numbers)

    def client_names(self, where, value):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items or len(items) > 20:
            self.fail(where, "must be a list of 1 to 20 client names")
            return None
        names = []
        for number, item in enumerate(items, start=1):
            name = item.strip() if isinstance(item, str) else item
            if not isinstance(name, str) or not CLIENT_NAME.fullmatch(name):
                self.fail(f"{where}[{number}]", f"{item!r} is not a client name (letters, digits and _, up to 64)")
            else:
                names.append(name)
        return names

    def voice(self, where, value):
        if not isinstance(value, str) or not VOICE_NAME.match(value):
            self.fail(where, "must be man, woman, or a voice name such as en-US-Standard-C")
            return None
        return value

    def step_ref(self, where, value):
        if not isinstance(value, str) or value not in self.step_names:
            self.fail(where, f"names no step of this flow: {value!r}")
            return None
        return value

    def mapping(self, where, value, allowed, required=()):
        """`value` as a dict whose keys are all in `allowed` and hold `required`."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.fail(where, "must be a mapping of attributes")
            return None
        for name in value:
            if name not in allowed:
                hint = _spelling_hint(name, allowed)
                self.fail(f"{where}, field {name!r}", "is not a known attribute" + hint)
        for name in required:
            if name not in value:
                self.fail(where, f"needs {name!r}")
        return value

    # Actions

    def actions(self, where, items):
        """Check a list of actions; return them as Action objects (None if any is wrong)."""
        if not isinstance(items, list) or not items:
            self.fail(where, "must be a non-empty list of actions")
            return None
        before = len(self.problems)
        checked = [self.action(f"{where}, action {i + 1}", item) for i, item in enumerate(items)]
        self.order(where, checked)
        return checked if len(self.problems) == before else None

    def action(self, where, item):
        if not isinstance(item, dict) or len(item) != 1:
            self.fail(where, "must be one action, e.g. '- say: Hello'")
            return None
        (raw_name, body), = item.items()
        element = ACTION_NAMES.get(str(raw_name).lower())
        if element is None:
            self.fail(where, f"{raw_name!r} is not an AT action (one of: {', '.join(ACTION_NAMES.values())})")
            return None
        where = f"{where} ({element})"
        return getattr(self, "_" + element.lower())(where, body)

    def _say(self, where, body):
        if isinstance(body, str):
            body = {"text": body}
        body = self.mapping(where, body, ("text", "voice", "playBeep"), required=("text",))
        if body is None:
            return None
        action = Action("Say", text=self.text(f"{where}, field 'text'", body.get("text")))
        if "voice" in body:
            action.attrs["voice"] = self.voice(f"{where}, field 'voice'", body["voice"])
        if "playBeep" in body:
            action.attrs["playBeep"] = self.boolean(f"{where}, field 'playBeep'", body["playBeep"])
        return action

    def _play(self, where, body):
        if isinstance(body, str):
            body = {"url": body}
        body = self.mapping(where, body, ("url",), required=("url",))
        if body is None:
            return None
        return Action("Play", attrs={"url": self.url(f"{where}, field 'url'", body.get("url"))})

    def prompt(self, where, value):
        """A Say or Play nested in GetDigits or Record: the only nesting AT allows."""
        if not isinstance(value, dict) or len(value) != 1 or str(next(iter(value))).lower() not in ("say", "play"):
            self.fail(where, "must be one say or play (the only actions AT allows inside GetDigits and Record)")
            return None
        return self.action(where, value)

    def _collecting(self, element, where, body, attributes):
        """GetDigits or partial Record: attributes, a prompt, and where the input goes."""
        body = self.mapping(where, body, (*attributes, "prompt", "next", "callbackUrl"))
        if body is None:
            return None
        action = Action(element)
        for name, check in attributes.items():
            if name in body:
                action.attrs[name] = check(f"{where}, field {name!r}", body[name])
        if "prompt" in body:
            action.prompt = self.prompt(f"{where}, field 'prompt'", body["prompt"])
        if "next" in body and "callbackUrl" in body:
            self.fail(where, "give either 'next' (a step) or 'callbackUrl' (a URL), not both")
        elif "next" in body:
            action.next = self.step_ref(f"{where}, field 'next'", body["next"])
        elif "callbackUrl" in body:
            action.attrs["callbackUrl"] = self.url(f"{where}, field 'callbackUrl'", body["callbackUrl"])
        else:
            self.fail(where, "needs 'next': the step that receives what the caller entered")
        return action

    def _getdigits(self, where, body):
        return self._collecting("GetDigits", where, body, {
            "numDigits": lambda w, v: self.count(w, v, 1, 64),
            "timeout": lambda w, v: self.count(w, v, 1, 600),
            "finishOnKey": self.key,
        })

    def _record(self, where, body):
        if body in (None, {}, True, "terminal"):
            return Action("Record")  # the terminal form: records until the caller hangs up
        return self._collecting("Record", where, body, {
            "finishOnKey": self.key,
            "maxLength": lambda w, v: self.count(w, v, 1, 14400),
            "timeout": lambda w, v: self.count(w, v, 1, 3600),
            "trimSilence": self.boolean,
            "playBeep": self.boolean,
        })

    def _dial(self, where, body):
        body = self.mapping(where, body, ("phoneNumbers", "clients", "clientDialedNumber", "record", "sequential",
                                          "callerId", "ringbackTone", "maxDuration"))
        if body is None:
            return None
        action = Action("Dial")
        if body.get("clientDialedNumber") is not None:
            if body["clientDialedNumber"] is not True:
                self.fail(f"{where}, field 'clientDialedNumber'", "must be true (dial what the client's agent dialled)")
            elif "phoneNumbers" in body or "clients" in body:
                self.fail(where, "clientDialedNumber: true dials what the agent dialled: it takes no phoneNumbers or clients")
            action.client_dialed = True
        elif "clients" in body:
            action.clients = self.client_names(f"{where}, field 'clients'", body["clients"])
        elif "phoneNumbers" not in body:
            self.fail(where, "needs phoneNumbers, clients, or clientDialedNumber: true")
            return None
        checks = {
            "phoneNumbers": self.phones,
            "record": self.boolean,
            "sequential": self.boolean,
            "callerId": self.phone,
            "ringbackTone": self.url,
            "maxDuration": lambda w, v: self.count(w, v, 1, 86400),
        }
        action.attrs = {name: checks[name](f"{where}, field {name!r}", value)
                        for name, value in body.items() if name in checks}
        return action

    def _redirect(self, where, body):
        if isinstance(body, str):
            body = {"step": body} if body in self.step_names or not body.startswith(("http:", "https:")) else {"url": body}
        body = self.mapping(where, body, ("step", "url"))
        if body is None:
            return None
        if ("step" in body) == ("url" in body):
            self.fail(where, "needs a step name or a 'url'")
            return None
        if "step" in body:
            return Action("Redirect", next=self.step_ref(f"{where}, field 'step'", body["step"]))
        return Action("Redirect", text=self.url(f"{where}, field 'url'", body["url"]))

    def _bare(self, element, where, body):
        if body not in (None, {}, True):
            self.fail(where, f"{element} takes no attributes")
        return Action(element)

    def _reject(self, where, body):
        return self._bare("Reject", where, body)

    def _conference(self, where, body):
        return self._bare("Conference", where, body)

    def _enqueue(self, where, body):
        body = self.mapping(where, body, ("name", "holdMusic"))
        if body is None:
            return None
        action = Action("Enqueue")
        if "name" in body:
            action.attrs["name"] = self.text(f"{where}, field 'name'", body["name"])
        if "holdMusic" in body:
            action.attrs["holdMusic"] = self.url(f"{where}, field 'holdMusic'", body["holdMusic"])
        return action

    def _dequeue(self, where, body):
        body = self.mapping(where, body, ("phoneNumber", "name"), required=("phoneNumber",))
        if body is None:
            return None
        action = Action("Dequeue", attrs={"phoneNumber": self.phone(f"{where}, field 'phoneNumber'",
                                                                      body.get("phoneNumber"))})
        if "name" in body:
            action.attrs["name"] = self.text(f"{where}, field 'name'", body["name"])
        return action

    def order(self, where, actions):
        """AT's rules on order: Redirect and a terminal Record last, Reject alone, GetDigits not last."""
        last = len(actions) - 1
        for i, action in enumerate(actions):
            if action is None:
                continue
            if action.element == "Redirect" and i != last:
                self.fail(f"{where}, action {i + 1}", "Redirect must be the last action (AT ignores what follows)")
            if action.element == "Reject" and len(actions) != 1:
                self.fail(f"{where}, action {i + 1}", "Reject must be the only action of its step")
            if action.element == "Record" and action.next is None and "callbackUrl" not in action.attrs and i != last:
                self.fail(f"{where}, action {i + 1}", "a terminal Record must be last (it records until hang-up)")
            if action.element == "GetDigits" and i == last:
                self.fail(f"{where}, action {i + 1}",
                          "GetDigits needs an action after it: AT moves on silently when nothing is pressed")

    # Steps

    def menu(self, where, body):
        body = self.mapping(where, body, ("prompt", "options", "numDigits", "timeout", "finishOnKey", "retries",
                                          "invalid", "noInput", "onFail"), required=("prompt", "options"))
        if body is None:
            return None
        prompt = self.prompt(f"{where}, field 'prompt'", body.get("prompt")) if "prompt" in body else None
        options = {}
        raw_options = body.get("options")
        if not isinstance(raw_options, dict) or not raw_options:
            self.fail(f"{where}, field 'options'", "must map keys the caller presses to steps")
        else:
            for key, target in raw_options.items():
                spot = f"{where}, option {key!r}"
                if not isinstance(key, str):
                    self.fail(spot, f"write the key in quotes, e.g. \"{key}\" (unquoted it is read as a number)")
                elif not MENU_KEYS.match(key):
                    self.fail(spot, "must be keypad keys: digits, * or #")
                else:
                    options[key] = self.step_ref(spot, target)
        menu = Menu(prompt=prompt, options=options)
        attrs = {"finishOnKey": "#"}
        if "finishOnKey" in body:
            attrs["finishOnKey"] = self.key(f"{where}, field 'finishOnKey'", body["finishOnKey"])
        if "timeout" in body:
            attrs["timeout"] = self.count(f"{where}, field 'timeout'", body["timeout"], 1, 600)
        if "numDigits" in body:
            attrs["numDigits"] = self.count(f"{where}, field 'numDigits'", body["numDigits"], 1, 64)
        elif options and len({len(k) for k in options}) == 1:
            attrs["numDigits"] = str(len(next(iter(options))))
        menu.attrs = {name: value for name, value in attrs.items() if value is not None}
        finish = menu.attrs.get("finishOnKey")
        for key in options:
            if finish and finish in key:
                self.fail(f"{where}, option {key!r}", f"holds the finishOnKey {finish!r}, so it can never be entered")
        if "retries" in body:
            retries = self.count(f"{where}, field 'retries'", body["retries"], 0, 10)
            menu.retries = int(retries) if retries is not None else menu.retries
        if "invalid" in body:
            menu.invalid = self.text(f"{where}, field 'invalid'", body["invalid"])
        if "noInput" in body:
            menu.no_input = self.text(f"{where}, field 'noInput'", body["noInput"])
        if "onFail" in body:
            menu.on_fail = self.step_ref(f"{where}, field 'onFail'", body["onFail"])
        return menu

    def step(self, name, body):
        where = f"step {name!r}"
        if isinstance(body, list):
            return Step(name, actions=self.actions(where, body))
        if isinstance(body, dict) and "menu" in body:
            if len(body) != 1:
                self.fail(where, "a menu step holds only 'menu'")
            return Step(name, menu=self.menu(f"{where}, menu", body["menu"]))
        if isinstance(body, dict) and "python" in body:
            body = self.mapping(where, body, ("python", "leadsTo"))
            target = body.get("python")
            step = Step(name, python_name=target)
            if not isinstance(target, str) or not CALLABLE.match(target):
                self.fail(f"{where}, field 'python'", "must name a callable as package.module:function")
            else:
                step.python = self.load_callable(f"{where}, field 'python'", target)
            leads = body.get("leadsTo", [])
            if not isinstance(leads, list):
                self.fail(f"{where}, field 'leadsTo'", "must be a list of step names")
            else:
                step.leads_to = [self.step_ref(f"{where}, field 'leadsTo'", s) for s in leads]
            return step
        self.fail(where, "must be a list of actions, a 'menu', or a 'python' callable")
        return None

    def load_callable(self, where, target):
        module_name, _, attribute = target.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            self.fail(where, f"cannot be imported: {exc}")
            return None
        if not callable(function):
            self.fail(where, f"{target} is not callable")
            return None
        return function


def _spelling_hint(name, allowed):
    for candidate in allowed:
        if str(name).lower() == candidate.lower():
            return f" (AT spells it {candidate!r})"
    return f" (known: {', '.join(allowed)})"


def _references(step):
    """The step names a step can lead to."""
    if step.menu is not None:
        return list(step.menu.options.values()) + ([step.menu.on_fail] if step.menu.on_fail else [])
    if step.actions is not None:
        return [a.next for a in step.actions if a and a.next]
    return list(step.leads_to)


def check_document(document, source):
    """Check a parsed flow document; return a Flow or raise FlowError listing every problem."""
    if not isinstance(document, dict):
        raise FlowError(source, ["the file must be a mapping with 'start' and 'steps'"])
    problems = [f"top level, field {key!r}: is not known (use 'start' and 'steps')"
                for key in document if key not in ("start", "steps")]
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, dict) or not raw_steps:
        raise FlowError(source, problems + ["top level: needs 'steps', a mapping of step names to steps"])
    names = {str(name) for name in raw_steps}
    checker = _Checker(names)
    checker.problems.extend(problems)
    for name in raw_steps:
        if not isinstance(name, str) or not STEP_NAME.match(name):
            checker.fail(f"step {name!r}", "names may hold only letters, digits, - and _")
    steps = {str(name): checker.step(str(name), body) for name, body in raw_steps.items()}

    start = checker.mapping("start", document.get("start"), ("inbound", "outbound", "numbers", "clients"),
                            required=("inbound",))
    flow = Flow(source=source, steps=steps, inbound="")
    if start is not None:
        flow.inbound = checker.step_ref("start, field 'inbound'", start.get("inbound"))
        if "outbound" in start:
            flow.outbound = checker.step_ref("start, field 'outbound'", start["outbound"])
        if "clients" in start:
            flow.clients = checker.step_ref("start, field 'clients'", start["clients"])
        numbers = start.get("numbers") or {}
        if not isinstance(numbers, dict):
            checker.fail("start, field 'numbers'", "must map AT numbers to steps")
        else:
            for number, target in numbers.items():
                phone = checker.phone(f"start, number {number!r}", number)
                step = checker.step_ref(f"start, number {number!r}", target)
                if phone and step:
                    flow.numbers[phone] = step

    if not checker.problems:
        reached, todo = set(), [flow.inbound, flow.outbound, flow.clients, *flow.numbers.values()]
        while todo:
            name = todo.pop()
            if name and name not in reached:
                reached.add(name)
                todo.extend(_references(steps[name]))
        for name in steps:
            if name not in reached:
                checker.fail(f"step {name!r}", "cannot be reached from any start step, menu, next or redirect")
    if checker.problems:
        raise FlowError(source, checker.problems)
    return flow


def load(path=None):
    """Read and check the flow file at `path` (the shipped default flow when None)."""
    path = Path(path) if path else DEFAULT_FLOW
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError(str(path), [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowError(str(path), [f"is not valid YAML: {exc}"]) from None
    return check_document(document, str(path))


def check_python_result(flow, step_name, result):
    """Check what a Python step returned, like a static step; return Actions or raise FlowError."""
    checker = _Checker(set(flow.steps))
    actions = checker.actions(f"step {step_name!r} result", result)
    if checker.problems:
        raise FlowError(f"{flow.source} (python step {step_name!r})", checker.problems)
    return actions


def media_urls(flow):
    """Every audio URL the flow plays (Play, a Play prompt, holdMusic, ringbackTone), each once, in step order."""
    urls = []

    def visit(action):
        if action is None:
            return
        for name in ("url", "holdMusic", "ringbackTone", "ringBackTone"):
            value = action.attrs.get(name)
            if value and value.startswith(("http://", "https://")):
                urls.append(value)
        visit(action.prompt)

    for step in flow.steps.values():
        for action in step.actions or []:
            visit(action)
        if step.menu is not None:
            visit(step.menu.prompt)
    return list(dict.fromkeys(urls))

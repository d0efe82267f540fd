"""Call flows as data: a file of named steps becomes these objects once voice.flows.checks has checked it.

A step is a list of actions, a menu, or a Python callable that returns actions.
"""

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FLOW = Path(__file__).parent / "default.yaml"

# A campaign contact's variable in a say's text: `Hello {name}` (other braces are plain text).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
# Actions of ours, not AT's: played by the service (voice.flows.ivr), adding nothing to the XML.
OUR_ACTIONS = ("OptOut",)
# What a save or a variable may be named.
KEY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


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
    # A GetDigits whose digits a campaign keeps as the callee's answer under this key.
    save: str | None = None

    def personal(self):
        """True when this action (or its prompt) says a contact's variable."""
        return bool(self.text and PLACEHOLDER.search(self.text)) or (self.prompt is not None and self.prompt.personal())

    def with_variables(self, variables):
        """A copy whose texts have each `{name}` replaced by the variable (empty when the call has none)."""
        text = self.text
        if text and self.element == "Say":
            text = PLACEHOLDER.sub(lambda found: variables.get(found.group(1), ""), text)
        prompt = self.prompt.with_variables(variables) if self.prompt is not None else None
        return dataclasses.replace(self, attrs=dict(self.attrs), text=text, prompt=prompt)


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
    save: str | None = None  # a campaign keeps the chosen option as the callee's answer under this key

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

    @functools.cached_property
    def personal(self):
        """True when the step says a campaign contact's variable, so its XML differs from call to call."""
        if self.menu is not None:
            return ((self.menu.prompt is not None and self.menu.prompt.personal())
                    or any(PLACEHOLDER.search(notice or "") for notice in (self.menu.invalid, self.menu.no_input)))
        return any(action.personal() for action in self.actions or ())

    @functools.cached_property
    def opts_out(self):
        """True when the step puts the caller on the do-not-call list."""
        return any(action.element == "OptOut" for action in self.actions or ())

    @functools.cached_property
    def terminal(self):
        """True when the step leads nowhere: no menu, no Python, no next step or redirect."""
        return self.actions is not None and not any(action.next or action.element == "Redirect"
                                                    for action in self.actions)


@dataclass
class Flow:
    """A checked flow: its steps and where calls start."""

    source: str
    steps: dict
    inbound: str
    outbound: str | None = None
    numbers: dict = field(default_factory=dict)
    clients: str | None = None
    # The steps that end a campaign's call as completed (none given: any step that leads nowhere).
    ends: list = field(default_factory=list)

    @functools.cached_property
    def save_keys(self):
        """Every key a menu or a getDigits of this flow saves a campaign's answer under, in step order."""
        keys = []
        for step in self.steps.values():
            if step.menu is not None and step.menu.save:
                keys.append(step.menu.save)
            keys += [action.save for action in step.actions or () if action is not None and action.save]
        return list(dict.fromkeys(keys))

    def is_end(self, name):
        """True when playing the step `name` completes a campaign contact."""
        if self.ends:
            return name in self.ends
        step = self.steps.get(name)
        return step is not None and step.terminal

    def start_for(self, direction, destination, from_client=False):
        """The first step of a call: a browser or app client's, else by the AT number it reached, then its direction."""
        if from_client and self.clients:
            return self.clients
        if destination and destination in self.numbers:
            return self.numbers[destination]
        if direction == "Outbound" and self.outbound:
            return self.outbound
        return self.inbound


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

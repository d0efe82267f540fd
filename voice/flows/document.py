"""Call flows as data: a file of named steps becomes these objects once voice.flows.checks has checked it.

A step is a list of actions, a menu, or a Python callable that returns actions.
"""

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FLOW = Path(__file__).parent / "default.yaml"

# A browser or app client's name, as flow files and the token route accept it.


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

"""The first layer of the flow checker: one value of a flow file (text, counts, keys, URLs, numbers, names).

Every check records its problem and answers None instead of raising, so one pass over a file
lists everything wrong with it.
"""

import re
from urllib.parse import urlparse

from voice.shapes import CLIENT_NAME
from voice.phone import InvalidPhone, normalise

VOICE_NAME = re.compile(r"^(man|woman|[a-z]{2,3}-[A-Z]{2}-[A-Za-z0-9-]{1,40})$")
SIP_ADDRESS = re.compile(r"^[A-Za-z0-9._+-]{1,64}@[A-Za-z0-9.-]{1,190}$")
MAX_TEXT = 2000


class ValueChecker:
    """Collects every problem of a flow document instead of stopping at the first."""

    def __init__(self, step_names):
        self.step_names = step_names
        self.problems = []

    def fail(self, where, message):
        """Record a problem at `where` (the step, action and field it concerns)."""
        self.problems.append(f"{where}: {message}")

    def text(self, where, value):
        """Non-empty text to speak, its whitespace collapsed."""
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
        """A YAML true or false, as AT spells it."""
        if not isinstance(value, bool):
            self.fail(where, "must be true or false")
            return None
        return "true" if value else "false"

    def count(self, where, value, low=1, high=86400):
        """A whole number from `low` to `high`, as text."""
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(where, f"must be a whole number from {low} to {high}")
            return None
        return str(value)

    def key(self, where, value):
        """One keypad key."""
        if not isinstance(value, str) or len(value) != 1 or value not in "0123456789*#":
            self.fail(where, "must be one keypad key in quotes, e.g. \"#\"")
            return None
        return value

    def url(self, where, value):
        """An absolute http(s) URL."""
        if not isinstance(value, str) or len(value) > 2048:
            self.fail(where, "must be an http(s) URL")
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or any(c.isspace() for c in value):
            self.fail(where, f"{value!r} is not an absolute http(s) URL")
            return None
        return value

    def phone(self, where, value, sip=False):
        """A phone number in E.164 form (or, with `sip`, a SIP address)."""
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
        """A list (or comma-separated text) of phone numbers or SIP addresses, joined by commas."""
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.fail(where, "must be a list of phone numbers (or SIP addresses)")
            return None
        numbers = [self.phone(f"{where}[{i + 1}]", item.strip() if isinstance(item, str) else item, sip=True)
                   for i, item in enumerate(items)]
        return None if None in numbers else ",".join(numbers)

    def client_names(self, where, value):
        """A list (or comma-separated text) of 1 to 20 browser or app client names."""
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
        """man, woman, or one of AT's voice names."""
        if not isinstance(value, str) or not VOICE_NAME.match(value):
            self.fail(where, "must be man, woman, or a voice name such as en-US-Standard-C")
            return None
        return value

    def step_ref(self, where, value):
        """The name of a step of this flow."""
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


def _spelling_hint(name, allowed):
    for candidate in allowed:
        if str(name).lower() == candidate.lower():
            return f" (AT spells it {candidate!r})"
    return f" (known: {', '.join(allowed)})"

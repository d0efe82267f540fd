"""The second layer of the flow checker: one AT action, and the order of a step's actions.

Each action's attributes are a table of AT's attribute name -> the value check it takes; a name
outside the table is refused with a hint at its spelling.
"""

from voice.flows.checks.values import ValueChecker
from voice.flows.document import KEY_NAME, OUR_ACTIONS, Action

# The file's action names (AT's element names, or the same in lower camel case) -> AT's element.
ACTION_NAMES = {
    name.lower(): name
    for name in ("Say", "Play", "GetDigits", "Dial", "Record", "Redirect", "Reject", "Conference", "Enqueue", "Dequeue",
                 *OUR_ACTIONS)
}


class ActionChecker(ValueChecker):
    """Checks AT actions: each becomes an Action, or a problem naming its step, position and field."""

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
        """Check one action, `{name: body}`, by the method named for its element."""
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

    def attributes(self, where, body, checks, required=()):
        """`body`'s attributes, each checked by its entry in `checks`; None if `body` is not a mapping."""
        body = self.mapping(where, body, checks, required=required)
        return None if body is None else self.checked(where, body, checks, required)

    def checked(self, where, body, checks, required=()):
        """The attributes of `body` that `checks` names, checked, in the table's order."""
        # A missing required attribute is checked too, so its problem also says what it must hold.
        return {name: check(f"{where}, field {name!r}", body.get(name))
                for name, check in checks.items() if name in body or name in required}

    def _say(self, where, body):
        checks = {"text": self.text, "voice": self.voice, "playBeep": self.boolean}
        attrs = self.attributes(where, {"text": body} if isinstance(body, str) else body, checks, required=("text",))
        return None if attrs is None else Action("Say", text=attrs.pop("text"), attrs=attrs)

    def _play(self, where, body):
        attrs = self.attributes(where, {"url": body} if isinstance(body, str) else body, {"url": self.url},
                                required=("url",))
        return None if attrs is None else Action("Play", attrs=attrs)

    def prompt(self, where, value):
        """A Say or Play nested in GetDigits or Record: the only nesting AT allows."""
        if not isinstance(value, dict) or len(value) != 1 or str(next(iter(value))).lower() not in ("say", "play"):
            self.fail(where, "must be one say or play (the only actions AT allows inside GetDigits and Record)")
            return None
        return self.action(where, value)

    def _collecting(self, element, where, body, attributes):
        """GetDigits or partial Record: attributes, a prompt, and where the input goes."""
        saves = ("save",) if element == "GetDigits" else ()
        body = self.mapping(where, body, (*attributes, "prompt", "next", "callbackUrl", *saves))
        if body is None:
            return None
        action = Action(element, attrs=self.checked(where, body, attributes))
        if "save" in body:
            action.save = self.save_key(f"{where}, field 'save'", body["save"])
            if "next" not in body:
                self.fail(f"{where}, field 'save'", "needs 'next': the digits are saved when they reach that step")
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

    def _optout(self, where, body):
        return self._bare("OptOut", where, body)

    def save_key(self, where, value):
        """The key a campaign saves the callee's answer under: letters, digits and _."""
        if not isinstance(value, str) or not KEY_NAME.match(value):
            self.fail(where, "must be a name of letters, digits and _ (up to 64), e.g. satisfied")
            return None
        return value

    def _reject(self, where, body):
        return self._bare("Reject", where, body)

    def _conference(self, where, body):
        return self._bare("Conference", where, body)

    def _enqueue(self, where, body):
        attrs = self.attributes(where, body, {"name": self.text, "holdMusic": self.url})
        return None if attrs is None else Action("Enqueue", attrs=attrs)

    def _dequeue(self, where, body):
        attrs = self.attributes(where, body, {"phoneNumber": self.phone, "name": self.text}, required=("phoneNumber",))
        return None if attrs is None else Action("Dequeue", attrs=attrs)

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

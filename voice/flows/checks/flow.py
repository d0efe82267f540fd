"""The third layer of the flow checker: steps, menus and the whole file, read from disk by `load`.

Every problem found names the file, the step and the field, so a non-programmer can fix the file alone.
"""

import importlib
import re
from pathlib import Path

import yaml

from voice.flows.checks.actions import ActionChecker
from voice.flows.document import DEFAULT_FLOW, Flow, FlowError, Menu, Step

STEP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MENU_KEYS = re.compile(r"^[0-9*#]{1,16}$")
CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class FlowChecker(ActionChecker):
    """Checks steps and menus, on top of their actions and values."""

    def menu(self, where, body):
        """Check a menu step's `menu`; return it as a Menu."""
        body = self.mapping(where, body, ("prompt", "options", "numDigits", "timeout", "finishOnKey", "retries",
                                          "invalid", "noInput", "onFail", "save"), required=("prompt", "options"))
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
        if "save" in body:
            menu.save = self.save_key(f"{where}, field 'save'", body["save"])
        return menu

    def step(self, name, body):
        """Check one named step: a list of actions, a menu, or a Python callable."""
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
        """Import a Python step's `package.module:function`."""
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
    problems = [f"top level, field {key!r}: is not known (use 'start', 'steps' and 'ends')"
                for key in document if key not in ("start", "steps", "ends")]
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, dict) or not raw_steps:
        raise FlowError(source, problems + ["top level: needs 'steps', a mapping of step names to steps"])
    names = {str(name) for name in raw_steps}
    checker = FlowChecker(names)
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
    ends = document.get("ends", [])
    if not isinstance(ends, list):
        checker.fail("top level, field 'ends'", "must list the steps that complete a campaign's call")
    else:
        flow.ends = [checker.step_ref("top level, field 'ends'", name) for name in ends]

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
    checker = ActionChecker(set(flow.steps))
    actions = checker.actions(f"step {step_name!r} result", result)
    if checker.problems:
        raise FlowError(f"{flow.source} (python step {step_name!r})", checker.problems)
    return actions

"""The deployed call flow as a diagram (Graphviz), and the problems `voice flow check` finds in its file."""

import shutil

import graphviz

from voice import flows

KIND_SHAPES = {"menu": ("box", "#e8f0fe"), "actions": ("box", "#ffffff"), "python": ("box", "#fff4e0")}


def available():
    """True when Graphviz's `dot` program is installed (Debian: apt-get install graphviz)."""
    return shutil.which("dot") is not None


def step_rows(flow):
    """Each step as the flow page lists it: name, kind, what it does, and where it leads."""
    rows = []
    for name, step in flow.steps.items():
        kind = "menu" if step.menu is not None else "python" if step.python_name else "actions"
        rows.append({"name": name, "kind": kind, "does": _does(step), "leads": _edges(step),
                     "starts": [label for label, first in _starts(flow) if first == name]})
    return rows


def _does(step):
    if step.menu is not None:
        return "menu: " + (step.menu.prompt.text or step.menu.prompt.attrs.get("url") or "")
    if step.python_name:
        return "Python: " + step.python_name
    return ", ".join(_action_word(action) for action in step.actions or [])


def _action_word(action):
    if action.element == "Dial" and action.client_dialed:
        return "Dial what the client dialled"
    if action.element == "Dial" and action.clients:
        return "Dial clients " + ", ".join(action.clients)
    return action.element


def _edges(step):
    """(label, target step) pairs: menu keys, no-input/fail paths, next and redirects, a Python step's leadsTo."""
    if step.menu is not None:
        edges = [(f"press {keys}", target) for keys, target in step.menu.options.items()]
        if step.menu.on_fail:
            edges.append(("no valid key", step.menu.on_fail))
        return edges
    if step.python_name:
        return [("may lead to", target) for target in step.leads_to]
    edges = []
    for action in step.actions or []:
        if action.next:
            edges.append(("redirect" if action.element == "Redirect" else f"after {action.element}", action.next))
    return edges


def _starts(flow):
    starts = [("inbound calls", flow.inbound)]
    if flow.outbound:
        starts.append(("outbound calls", flow.outbound))
    if flow.clients:
        starts.append(("client calls", flow.clients))
    starts += [(f"calls to {number}", step) for number, step in flow.numbers.items()]
    return starts


_drawn = {}


def svg(flow):
    """The flow drawn as SVG: steps as boxes (Python steps marked), keys and `next` as labelled arrows; None without dot."""
    if not available():
        return None
    if _drawn.get("flow") is not flow:  # the deployed flow is fixed for the app's life: drawn once
        _drawn.update(flow=flow, svg=_draw(flow))
    return _drawn["svg"]


def _draw(flow):
    graph = graphviz.Digraph("flow", graph_attr={"rankdir": "LR", "fontname": "DejaVu Sans", "bgcolor": "white"},
                             node_attr={"fontname": "DejaVu Sans", "fontsize": "11", "style": "filled"},
                             edge_attr={"fontname": "DejaVu Sans", "fontsize": "10"})
    for number, (label, first) in enumerate(_starts(flow)):
        graph.node(f"start_{number}", label, shape="plaintext", style="")
        graph.edge(f"start_{number}", first)
    for row in step_rows(flow):
        shape, colour = KIND_SHAPES[row["kind"]]
        marker = " (Python)" if row["kind"] == "python" else " (menu)" if row["kind"] == "menu" else ""
        graph.node(row["name"], row["name"] + marker, shape=shape, fillcolor=colour)
        for label, target in row["leads"]:
            graph.edge(row["name"], target, label=label)
    return graph.pipe(format="svg", encoding="utf-8")


def check_file(path):
    """The problems `voice flow check` reports for the flow file as it is on disk now (none: an empty list)."""
    try:
        flows.load(path or None)
    except flows.FlowError as exc:
        return exc.problems
    return []

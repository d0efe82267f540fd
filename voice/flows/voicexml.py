"""Call-flow XML for AT, built with ElementTree so every text and attribute is escaped."""

import xml.etree.ElementTree as ET

from voice.flows.document import OUR_ACTIONS

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def render(actions, step_url):
    """The `<Response>` document for `actions`; `step_url(name)` makes a step's callback URL."""
    root = ET.Element("Response")
    for action in actions:
        if action.element not in OUR_ACTIONS:
            root.append(_element(action, step_url))
    ET.indent(root)
    return DECLARATION + ET.tostring(root, encoding="unicode")


def _element(action, step_url):
    element = ET.Element(action.element, {k: v for k, v in action.attrs.items() if v is not None})
    if action.next is not None:
        if action.element == "Redirect":
            element.text = step_url(action.next)
        else:
            element.set("callbackUrl", step_url(action.next, save=action.save) if action.save else step_url(action.next))
    if action.text is not None:
        element.text = action.text
    if action.prompt is not None:
        element.append(_element(action.prompt, step_url))
    return element

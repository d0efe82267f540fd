"""Python steps for call flows: each takes the call's fields and returns actions shaped like the file's."""

from flask import current_app


def connect_agent(call):
    """Dial the agents in VOICE_AGENT_NUMBERS one after another; voicemail when none answers or none is set."""
    agents = current_app.config.get("VOICE_AGENT_NUMBERS", "")
    if not agents:
        return [{"say": "No agent is available right now."}, {"redirect": "voicemail"}]
    return [
        {"say": "Please hold while we connect you to an agent."},
        {"dial": {"phoneNumbers": agents, "sequential": True}},
        {"say": "All our agents are busy."},
        {"redirect": "voicemail"},
    ]


def read_back_digits(call):
    """Say back, key by key, what the caller entered in the previous step."""
    digits = (call.get("dtmfDigits") or "").rstrip("#")
    if not digits:
        return [{"say": "You did not enter anything."}]
    keys = " ".join({"*": "star", "#": "hash"}.get(key, key) for key in digits)
    return [{"say": f"You entered {keys}."}]

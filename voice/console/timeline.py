"""A call's events as a person reads them: what happened, in order, each with its raw payload."""

import json

from voice.shapes import absent

STATE_WORDS = {
    "Queued": "Queued with AT", "Started": "Started", "Ringing": "Ringing", "Answered": "Answered",
    "Active": "In progress", "Transferred": "Transfer started", "TransferCompleted": "Transfer ended",
    "Completed": "Call ended", "NotAnswered": "Not answered", "Failed": "Call failed",
}


def timeline(detail):
    """The entries of a call's timeline, from history.call_with_events: time, title, lines, recording, raw; a
    recording is the call's JSON's entry for its link (its number, whether it is archived), played through us."""
    kept = {recording["sourceUrl"]: recording for recording in detail["call"].get("recordings") or []}
    entries = [_entry(event) for event in detail["events"]]
    for entry in entries:
        entry["recording"] = kept.get(entry["recording"]) if entry["recording"] else None
    return entries


def _entry(event):
    payload, params = event["payload"] or {}, event["params"] or {}
    kind, lines, recording = event["type"], [], None
    title = STATE_WORDS.get(kind, kind)
    if event["source"] == "invoke-call":
        title = "Dial-out queued with AT"
        lines.append(f"to {payload.get('phoneNumber')}, AT said {payload.get('status')}")
    elif event["source"] == "transfer":
        title = "Transfer asked for" if kind == "TransferRequested" else "Transfer refused by AT"
        lines.append(f"to {payload.get('phoneNumber')} ({payload.get('callLeg')} leg), by {payload.get('requestedBy')}")
        if kind != "TransferRequested":
            lines.append(f"AT: {payload.get('errorMessage')}")
    elif kind == "Digits":
        title = f"Pressed {payload.get('dtmfDigits')}"
    elif kind == "Recording":
        title = "Recording"
    if params.get("step"):
        if params.get("input") == "none":
            lines.append(f"nothing pressed at menu step {params['step']}")
        else:
            lines.append(f"menu step {params['step']}" + (f", attempt {params['attempt']}" if params.get("attempt") else ""))
    for field, words in (("callTransferredToNumber", "transferred to"), ("callTransferState", "transfer"),
                         ("callTransferHangupCause", "transfer hang-up cause"), ("dequeuedToPhoneNumber",
                         "taken from the queue by"), ("queueDurationInSeconds", "seconds waited in the queue"),
                         ("clientDialedNumber", "the client dialled")):
        if payload.get(field):
            lines.append(f"{words}: {payload[field]}")
    if kind in ("Completed", "NotAnswered", "Failed") or payload.get("isActive") == "0":
        figures = [f"{payload[name]}{unit}" for name, unit in (("durationInSeconds", " s"), ("hangupCause", ""))
                   if not absent(payload.get(name))]
        if not absent(payload.get("amount")):
            figures.append(f"{payload.get('currencyCode') or ''} {payload['amount']}".strip())
        if figures:
            lines.append(", ".join(figures))
    url = payload.get("recordingUrl")
    dropped = any("recordingUrl" in problem for problem in event["problems"])
    if isinstance(url, str) and url.startswith(("https://", "http://")) and not dropped:
        recording = url  # only what the parser accepted as an http(s) URL becomes an audio element
    for problem in event["problems"]:
        lines.append(f"left out: {problem}")
    return {"at": event["receivedAt"], "title": title, "source": event["source"], "lines": lines,
            "recording": recording, "raw": json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False),
            "params": json.dumps({k: v for k, v in params.items()}, sort_keys=True) if params else ""}

"""The dial-out API's views: status, the contract, dial-outs, transfers, queues, media, client tokens."""

import functools
from pathlib import Path

from flask import Blueprint, g, request, send_from_directory

from voice import dialout, fields, settings, shapes, transfers
from voice.access import annotate
from voice.at.client import get_client
from voice.auth import ADMIN, DIAL, WATCH, require_role, scoped_label
from voice.errors import APIError
from voice.flows.clients import client_address
from voice.phone import InvalidPhone, normalise
from voice.security import client_name_allowed
from voice.shapes import CLIENT_NAME

bp = Blueprint("api", __name__, url_prefix="/voice")
ROOT = Path(__file__).resolve().parent.parent


@bp.get("/")
def status():
    """Say the service is up, and whether AT is simulated."""
    body = {"service": "voice", "status": "ready"}
    if settings.current().mode == "simulated":
        body["mode"] = "simulated"
    return body


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 contract of these routes (voice/openapi.json)."""
    return send_from_directory(ROOT, "openapi.json", mimetype="application/json")


def dial_targets(view):
    """Read and check the numbers to dial (up to 10) and the clientRequestId before any limit is counted, and hand
    them to the view as `numbers` and `request_id`."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        numbers = dialout.checked(fields.numbers("phone"))
        return view(*args, numbers=numbers, request_id=fields.client_request_id(), **kwargs)

    return wrapped


@bp.route("/invoke-call", methods=["GET", "POST"])
@require_role(*DIAL)
@dial_targets
def invoke_call(numbers, request_id):
    """Dial the `phone` (or several) the client gives, from our AT number."""
    answer = dialout.place(numbers, g.api_key_label, request_id)
    if len(numbers) == 1:
        body = {"message": f"Call initiated to {numbers[0]}", "response": answer}
    else:
        entries = dialout.entries_of(answer)
        queued = sum(entry.get("status") == "Queued" for entry in entries)
        body = {"message": f"Calls initiated to {queued} of {len(numbers)} numbers",
                "calls": [{key: entry.get(key) for key in ("phoneNumber", "status", "sessionId")} for entry in entries],
                "response": answer}
    if request_id is not None:
        body["clientRequestId"] = request_id
    if settings.current().mode == "simulated":
        body["simulated"] = True
    return body


def transfer_target(view):
    """Read and check what a transfer asks for, and that its call is live, before limits; hand it over as `asked`."""

    @functools.wraps(view)
    def wrapped(session_id, *args, **kwargs):
        return view(session_id, *args, asked=transfers.asked(session_id, scoped_label()), **kwargs)

    return wrapped


@bp.post("/calls/<session_id>/transfer")
@require_role(*DIAL)
@transfer_target
def transfer_call(session_id, asked):
    """Move a live call to another number through AT's /callTransfer (a paid leg, limited like a dial-out)."""
    answer = transfers.transfer(session_id, asked, g.api_key_label)
    return {"message": f"Call {session_id} transferred to {asked['phoneNumber']}", "sessionId": session_id,
            "phoneNumber": asked["phoneNumber"], "callLeg": asked["callLeg"], "response": answer}


@bp.get("/queue")
@require_role(*WATCH)
def queue_status():
    """How many callers wait in the queues of our AT numbers (default AT_VOICE_NUMBER)."""
    client = get_client()
    numbers = [ours(raw) for raw in fields.numbers("phone", limit=MAX_QUEUE_NUMBERS)] or [client.voice_number]
    entries = client.queue_status(list(dict.fromkeys(numbers)))
    return {"queues": [{"phoneNumber": entry.get("phoneNumber"), "queueName": entry.get("queueName") or "",
                        "numCalls": _count(entry.get("numCalls"))} for entry in entries]}


@bp.post("/media")
@require_role(*ADMIN)
def upload_media():
    """Have AT fetch and cache an audio file, so its first <Play> or hold music starts at once."""
    url = fields.audio_url("url", required=True)
    raw = fields.text("phone")
    client = get_client()
    phone = ours(raw) if raw else client.voice_number
    client.upload_media(url, phone)
    return {"message": "Africa's Talking has the file; its first play starts at once.", "url": url,
            "phoneNumber": phone}


@bp.post("/clients/token")
@require_role(*ADMIN)
def client_token():
    """A capability token from AT that lets a browser or app client (AT's WebRTC SDK) make and take calls."""
    name = (fields.text("clientName") or "").strip()
    if not CLIENT_NAME.fullmatch(name):
        raise APIError(400, "bad_field", "clientName is required: letters, digits and _, up to 64.")
    incoming, outgoing = fields.flag("incoming", True), fields.flag("outgoing", True)
    expire = fields.integer("expire", 3600, MIN_TOKEN_SECONDS, MAX_TOKEN_SECONDS)
    if not client_name_allowed(settings.current().client_name_rules, g.api_key_label, name):
        raise APIError(403, "client_not_allowed", f"This key may not mint tokens for the client {name!r} "
                       "(VOICE_CLIENT_NAMES).")
    annotate(request.environ, detail="client=" + name)
    answer = get_client().capability_token(name, incoming, outgoing, expire)
    body = {"token": answer["token"], "clientName": name, "lifetimeSeconds": _count(answer.get("lifeTimeSec")) or expire,
            "incoming": incoming, "outgoing": outgoing, "address": client_address(name)}
    if settings.current().mode == "simulated":
        body["simulated"] = True
    return body


MIN_TOKEN_SECONDS, MAX_TOKEN_SECONDS = 60, 86400
MAX_QUEUE_NUMBERS = 10


def ours(raw):
    """`raw` as one of this service's AT numbers (AT_VOICE_NUMBER, AT_VOICE_NUMBERS), or a 400."""
    try:
        number = normalise(raw)
    except InvalidPhone as exc:
        raise APIError(400, "invalid_phone", str(exc)) from None
    if number not in settings.current().at_numbers:
        raise APIError(400, "not_our_number",
                       "phone must be one of this service's AT numbers (AT_VOICE_NUMBER or AT_VOICE_NUMBERS).")
    return number


def _count(value):
    """A count in AT's answer (a string or a JSON number), 0 when it is not a plain one."""
    return shapes.whole(value if isinstance(value, str) else str(value), 0, 10 ** 9) or 0

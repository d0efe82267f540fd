"""The campaigns API: create from a list, watch, pause, resume, cancel, export; and the do-not-call list.

Admins and dialers create; a dialer sees and changes only its own campaigns, as with calls;
viewers read. The do-not-call list is the admin's.
"""

from flask import Blueprint, Response, current_app, g, request, stream_with_context

from voice import fields, shapes
from voice.access import annotate
from voice.auth import ADMIN, DIAL, READ, require_role, scoped_label
from voice.campaigns import dnc, exports, service
from voice.errors import APIError
from voice.phone import InvalidPhone, mask, normalise

bp = Blueprint("campaigns", __name__, url_prefix="/voice")
MAX_PAGE = 10_000
MAX_DNC_NUMBERS = 1000


def _page():
    raw = request.args.get("page", "1")
    page = shapes.whole(raw, 1, MAX_PAGE) if raw.isdigit() else None
    if page is None:
        raise APIError(400, "bad_field", f"page must be a whole number from 1 to {MAX_PAGE}.")
    return page


@bp.post("/campaigns")
@require_role(*DIAL)
def create_campaign():
    """Create a campaign from a JSON body, or a form with a `contacts` CSV file; 201 with what was accepted."""
    request.max_content_length = int(current_app.config["VOICE_CAMPAIGN_UPLOAD_MB"]) * 1024 * 1024
    if request.mimetype == "multipart/form-data":
        spec = request.form.to_dict()
    elif request.is_json:
        spec = request.get_json(silent=True)
        if not isinstance(spec, dict):
            raise APIError(400, "bad_json", "Send the campaign as a JSON object.")
    else:
        raise APIError(415, "unsupported_media_type",
                       "Send the campaign as JSON, or as multipart/form-data with a 'contacts' CSV file.")
    rows = service.rows_from_request(request)
    campaign, accepted, refused = service.create(spec, rows, g.api_key_label, current_app.extensions["voice_flow"])
    annotate(request.environ, detail=f"campaign={campaign['id']} accepted={accepted} refused={len(refused)}")
    return {"campaign": campaign, "accepted": accepted, "refused": refused}, 201


@bp.get("/campaigns")
@require_role(*READ)
def list_campaigns():
    """The campaigns this key may see, newest first, with their figures."""
    return {"campaigns": service.listing(scoped_label(), _page())}


@bp.get("/campaigns/<int:campaign_id>")
@require_role(*READ)
def show_campaign(campaign_id):
    """One campaign: its rules, status, counts per contact status, calls in progress, cost, next attempt."""
    return service.show(campaign_id, scoped_label())


@bp.post("/campaigns/<int:campaign_id>/pause")
@require_role(*DIAL)
def pause_campaign(campaign_id):
    """Stop starting calls; those in progress finish."""
    return service.pause(campaign_id, scoped_label())


@bp.post("/campaigns/<int:campaign_id>/resume")
@require_role(*DIAL)
def resume_campaign(campaign_id):
    """Start calling again (a campaign paused for its budget needs a larger one: {"budget": {...}})."""
    body = request.get_json(silent=True) if request.is_json else None
    budget = body.get("budget") if isinstance(body, dict) else None
    return service.resume(campaign_id, scoped_label(), budget)


@bp.post("/campaigns/<int:campaign_id>/cancel")
@require_role(*DIAL)
def cancel_campaign(campaign_id):
    """End the campaign: contacts still to be called are cancelled; calls in progress finish."""
    return service.cancel(campaign_id, scoped_label())


@bp.get("/campaigns/<int:campaign_id>/contacts")
@require_role(*READ)
def campaign_contacts(campaign_id):
    """A page of the campaign's contacts (100 each), optionally of one status."""
    status = request.args.get("status") or None
    page = _page()
    found = service.contacts(campaign_id, scoped_label(), status, page)
    return {"contacts": found, "page": page, "next": page + 1 if len(found) == service.PAGE else None}


def _csv(campaign_id, rows, name):
    return Response(stream_with_context(rows), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-{name}.csv"'})


@bp.get("/campaigns/<int:campaign_id>/results.csv")
@require_role(*READ)
def campaign_results(campaign_id):
    """A row per contact, streamed."""
    return _csv(campaign_id, exports.results_csv(campaign_id, scoped_label()), "results")


@bp.get("/campaigns/<int:campaign_id>/attempts.csv")
@require_role(*READ)
def campaign_attempts(campaign_id):
    """A row per attempt, streamed."""
    return _csv(campaign_id, exports.attempts_csv(campaign_id, scoped_label()), "attempts")


# --- do-not-call ---


def _dnc_numbers():
    raw = fields.numbers("phone", limit=MAX_DNC_NUMBERS)
    if not raw:
        raise APIError(400, "invalid_phone", "phone is required: one number, several, or a JSON list.")
    try:
        return list(dict.fromkeys(normalise(number) for number in raw))
    except InvalidPhone as exc:
        raise APIError(400, "invalid_phone", str(exc)) from None


@bp.get("/dnc")
@require_role(*ADMIN)
def list_dnc():
    """The do-not-call list in number order, 500 a page (`after` the last number of the previous page)."""
    after = request.args.get("after")
    if after:
        try:
            after = normalise(after)
        except InvalidPhone as exc:
            raise APIError(400, "invalid_phone", str(exc)) from None
    entries = dnc.page(after)
    return {"numbers": entries, "next": entries[-1]["phone"] if len(entries) == dnc.PAGE else None}


@bp.post("/dnc")
@require_role(*ADMIN)
def add_dnc():
    """Put numbers on the do-not-call list: no campaign calls them (checked at import and before each attempt)."""
    numbers = _dnc_numbers()
    added = dnc.add(numbers, g.api_key_label, "api")
    annotate(request.environ, detail=f"dnc+={len(added)} " + ",".join(mask(number) for number in numbers[:3]))
    return {"added": added, "already": [number for number in numbers if number not in added]}


@bp.delete("/dnc")
@require_role(*ADMIN)
def remove_dnc():
    """Take numbers off the do-not-call list."""
    numbers = _dnc_numbers()
    return {"removed": dnc.remove(numbers)}

"""The webhook endpoints API (/voice/webhooks...): the admin registers the URLs that receive signed events, reads
their deliveries and sends an event again (docs/webhooks.md)."""

from flask import Blueprint, g, request

from voice import shapes
from voice.access import annotate
from voice.auth import ADMIN, require_role
from voice.errors import APIError
from voice.webhooks import service

bp = Blueprint("endpoints", __name__, url_prefix="/voice")
MAX_PAGE = 10_000


def _body():
    body = request.get_json(silent=True) if request.is_json else None
    if not isinstance(body, dict):
        raise APIError(400, "bad_json", "Send the endpoint as a JSON object: {\"url\": ..., \"events\": [...]}.")
    return body


@bp.post("/webhooks")
@require_role(*ADMIN)
def add_endpoint():
    """Register an endpoint for some event types; 201 with its signing secret, shown this once."""
    body = _body()
    created = service.create(body.get("url"), body.get("events"), body.get("description"), g.api_key_label)
    annotate(request.environ, detail=f"webhook endpoint={created['id']}")
    return created, 201


@bp.get("/webhooks")
@require_role(*ADMIN)
def list_endpoints():
    """Every endpoint."""
    return {"endpoints": service.listing()}


@bp.get("/webhooks/<int:endpoint_id>")
@require_role(*ADMIN)
def show_endpoint(endpoint_id):
    """One endpoint, with its deliveries counted by status."""
    return service.show(endpoint_id)


@bp.delete("/webhooks/<int:endpoint_id>")
@require_role(*ADMIN)
def remove_endpoint(endpoint_id):
    """Remove an endpoint: nothing more is sent to it."""
    service.remove(endpoint_id)
    return "", 204


@bp.post("/webhooks/<int:endpoint_id>/enable")
@require_role(*ADMIN)
def enable_endpoint(endpoint_id):
    """Re-enable a disabled endpoint."""
    return service.enable(endpoint_id)


@bp.get("/webhooks/<int:endpoint_id>/deliveries")
@require_role(*ADMIN)
def endpoint_deliveries(endpoint_id):
    """A page of the endpoint's delivery attempts, newest first."""
    raw = request.args.get("page", "1")
    page = shapes.whole(raw, 1, MAX_PAGE) if raw.isdigit() else None
    if page is None:
        raise APIError(400, "bad_field", f"page must be a whole number from 1 to {MAX_PAGE}.")
    found = service.attempts(endpoint_id, page)
    return {"attempts": found, "page": page, "next": page + 1 if len(found) == service.PAGE else None}


@bp.post("/webhooks/<int:endpoint_id>/deliveries/<event_id>/retry")
@require_role(*ADMIN)
def retry_delivery(endpoint_id, event_id):
    """Send an event to the endpoint again (202: the worker sends it)."""
    return service.retry(endpoint_id, event_id), 202

"""What operators poll: Prometheus metrics at /metrics, and liveness and readiness under /voice/health/."""

import logging

import sqlalchemy as sa
from flask import Blueprint, current_app, request

from voice import metrics, settings
from voice.auth import WATCH, address_in, authenticate, check_role
from voice.campaigns.figures import account_figures
from voice.errors import APIError
from voice.ratelimit import store_answers
from voice.store.db import StoreUnavailable, db
from voice.webhooks import delivery

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


@bp.get("/metrics")
def scrape():
    """The Prometheus text of every worker's metrics; behind the API key, or open to VOICE_METRICS_ALLOWED_IPS."""
    if not current_app.config["VOICE_METRICS"]:
        raise APIError(404, "not_found", "Metrics are off (VOICE_METRICS=0).")
    if not address_in(request.remote_addr, settings.current().metrics_networks):
        _, role = authenticate(hint=", or scrape from an address in VOICE_METRICS_ALLOWED_IPS.")
        check_role(role, WATCH)
    try:
        campaigns = account_figures()
    except StoreUnavailable as exc:  # the rest of the metrics still tell what is wrong
        log.warning("metrics: the campaigns' figures could not be read (%s)", exc)
        campaigns = None
    try:
        webhooks = delivery.figures()
    except StoreUnavailable as exc:
        log.warning("metrics: the webhooks' figures could not be read (%s)", exc)
        webhooks = None
    body, content_type = metrics.exposition(campaigns, webhooks)
    return current_app.response_class(body, mimetype=None, content_type=content_type)


@bp.get("/voice/health/live")
def live():
    """200 while the process serves requests."""
    return {"status": "live"}


@bp.get("/voice/health/ready")
def ready():
    """200 when the database, the rate-limit store and the call flow are usable; else 503 naming what is not."""
    failing = []
    try:
        with db.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure of the database means not ready; say which part, not the URL
        log.warning("readiness: the database does not answer (%s)", type(exc).__name__)
        failing.append("database")
    try:
        if not store_answers():
            failing.append("rate_limit_store")
    except Exception as exc:
        log.warning("readiness: the rate-limit store does not answer (%s)", type(exc).__name__)
        failing.append("rate_limit_store")
    if current_app.extensions.get("voice_flow") is None:
        failing.append("call_flow")
    if failing:
        return {"status": "unavailable", "failing": failing}, 503
    return {"status": "ready"}

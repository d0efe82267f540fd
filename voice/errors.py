"""Errors as our clients see them: JSON `{"error", "message"}` on JSON routes, apology XML on XML routes."""

import logging

from flask import current_app, jsonify, render_template, request
from limits.errors import StorageError
from werkzeug.exceptions import HTTPException

from voice import metrics, refusals
from voice.at.client import ATError, Busy, NotConfigured
from voice.ratelimit import TooManyDials
from voice.store.db import StoreUnavailable

log = logging.getLogger(__name__)


class APIError(Exception):
    """A client mistake or refusal with its status, machine code and a message saying what to fix."""

    def __init__(self, status, code, message, headers=None, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra  # more keys of the JSON body (a campaign's refused rows)


def json_error(status, code, message, headers=None, **extra):
    """A JSON error response."""
    response = jsonify(error=code, message=message, **extra)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def apology(status=200):
    """The XML that ends a call politely when its flow cannot go on."""
    return xml_response(render_template("voice/apology.xml"), status)


def xml_response(body, status=200):
    """Call-flow XML as AT's samples serve it: text/plain."""
    return current_app.response_class(body, status=status, mimetype="text/plain")


def xml_route(view):
    """Mark a view whose every answer, error or not, must be call-flow XML."""
    view.answers_xml = True
    return view


def is_xml_route():
    """True when the current request is served by a view marked with xml_route."""
    view = current_app.view_functions.get(request.endpoint)
    return getattr(view, "answers_xml", False)


# Refusals of the requester itself stay refusals on XML routes: there is no caller to apologise to.
REFUSALS = (401, 403, 405, 429)


def _error(status, code, message, headers=None, **extra):
    """The answer to a refused request: apology XML on XML routes (unless the requester itself is refused), else JSON."""
    if is_xml_route() and status not in REFUSALS:
        log.warning("instruct request refused (%s); answered with the apology", status)
        return apology(status if status < 500 else 200)
    return json_error(status, code, message, headers=headers, **extra)


def _handle_http(exc):
    if exc.code == 429:
        metrics.refused("rate_limit")
    code = (exc.name or "error").lower().replace(" ", "_")
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # Allow, Retry-After...
    return _error(exc.code, code, exc.description or exc.name, headers)


def _handle_api_error(exc):
    return _error(exc.status, exc.code, exc.message, exc.headers, **exc.extra)


def _handle_store_unavailable(exc):
    log.error("database unavailable on %s %s: %s", request.method, request.path, exc)
    return json_error(
        503, "store_unavailable", "The call store is unavailable; retry shortly.", headers={"Retry-After": "5"}
    )


def _handle_limits_storage(exc):
    log.error("rate-limit storage unavailable on %s %s: %s", request.method, request.path, exc)
    return json_error(503, "limits_unavailable", "Rate limits cannot be checked right now; retry shortly.",
                      headers={"Retry-After": "5"})


def _handle_unexpected(exc):
    log.exception("unexpected error on %s %s", request.method, request.path)
    if is_xml_route():
        return apology()
    return json_error(500, "internal_error", "The service failed to handle this request; it has been logged.")


def _handle_refusal(exc):
    """A refused dial (voice/refusals.py): counted, and answered with its status, code and words."""
    refusal = refusals.counted(exc)
    headers = {}
    if isinstance(exc, Busy):
        if exc.operation == "call":
            metrics.child(metrics.DIALOUTS, "busy", "none").inc()
        headers["Retry-After"] = "5"
    elif isinstance(exc, TooManyDials):
        headers["Retry-After"] = str(exc.retry_after)
    return json_error(refusal.status, refusal.code, refusals.message(exc), headers=headers)


def _handle_at_error(exc):
    if exc.operation == "call":
        metrics.child(metrics.DIALOUTS, exc.code, metrics.known(exc.at_status, metrics.ENTRY_STATUSES)).inc()
    return json_error(500, exc.code, exc.message, atStatus=exc.at_status, response=exc.response)


def register(app):
    """Install the error handlers that keep every answer JSON (or XML on XML routes)."""
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(APIError, _handle_api_error)
    for kind in refusals.REFUSED:
        app.register_error_handler(kind, _handle_refusal)
    app.register_error_handler(StorageError, _handle_limits_storage)
    app.register_error_handler(
        NotConfigured,
        lambda exc: json_error(
            503, "not_configured",
            "Dial-out is disabled until these settings are set: " + ", ".join(exc.missing),
        ),
    )
    app.register_error_handler(ATError, _handle_at_error)
    app.register_error_handler(StoreUnavailable, _handle_store_unavailable)
    app.register_error_handler(Exception, _handle_unexpected)

"""Every response the test suite sees, checked against voice/openapi.json, so the contract cannot drift."""

import csv
import io
import json
from pathlib import Path

from flask import request
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIResponse
from openapi_core.testing import MockRequest
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.validation.response.exceptions import MissingData

SPEC = Path(__file__).resolve().parent.parent / "voice" / "openapi.json"
# The 500s the contract allows: how AT failed, on the routes that ask AT something.
UPSTREAM_ERRORS = {"at_rejected", "at_call_failed", "at_timeout", "at_unreachable", "at_bad_response",
                   "at_transfer_failed"}
AT_ROUTES = {"/voice/invoke-call", "/voice/queue", "/voice/media", "/voice/calls/{sessionId}/transfer",
             "/voice/clients/token"}
_openapi = []


def csv_text(data, **parameters):
    """A text/csv body as the string its schema describes, once read as UTF-8 CSV whose rows have the header's cells."""
    text = data.decode(parameters.get("charset", "utf-8")) if isinstance(data, bytes) else data
    rows = list(csv.reader(io.StringIO(text, newline="")))
    ragged = [number for number, row in enumerate(rows, start=1) if len(row) != len(rows[0])]
    if ragged:
        raise ValueError(f"CSV row {ragged[0]} has {len(rows[ragged[0] - 1])} cells, the header {len(rows[0])}")
    return text


def openapi():
    """The contract, parsed once per test run."""
    if not _openapi:
        config = Config(extra_media_type_deserializers={"text/csv": csv_text})
        _openapi.append(OpenAPI.from_dict(json.loads(SPEC.read_text()), config=config))
    return _openapi[0]


def watch(app):
    """Check each of `app`'s responses against the contract; violations gather in app.extensions."""
    violations = app.extensions.setdefault("contract_violations", [])

    @app.after_request
    def check(response):
        try:
            # The request as far as finding its operation goes: its body may be unreadable (a 413).
            asked = MockRequest(request.host_url.rstrip("/"), request.method.lower(), request.path)
            openapi().validate_response(asked, WerkzeugOpenAPIResponse(response))
        except (PathNotFound, OperationNotFound):
            pass  # unknown paths and methods answer the documented JSON 404/405 of every route
        except MissingData:
            # The final isActive=0 answer on /voice/instruct is documented as an empty body, which
            # OpenAPI cannot put beside the XML of the same status; any other empty body is a drift.
            if not (request.path == "/voice/instruct" and response.status_code == 200):
                violations.append(f"{request.method} {request.path} -> {response.status_code}: empty body")
        except Exception as exc:  # every other failure is a drift between the code and the contract
            details = "; ".join(str(e) for e in getattr(exc, "schema_errors", [])) or str(exc)
            violations.append(f"{request.method} {request.path} -> {response.status_code}: {type(exc).__name__}: {details}")
        return response

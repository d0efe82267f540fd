"""The console's webhook page (admin): each endpoint, whether it is enabled, and its recent delivery attempts."""

from flask import render_template

from voice.auth import ADMIN
from voice.console import bp
from voice.console.signin import signed_in
from voice.webhooks import service

RECENT = 10


@bp.get("/webhooks")
@signed_in(*ADMIN)
def webhooks():
    """The webhook endpoints and the last RECENT delivery attempts of each."""
    endpoints = [dict(endpoint, recent=service.attempts(endpoint["id"])[:RECENT]) for endpoint in service.listing()]
    return render_template("console/webhooks.html", endpoints=endpoints)

"""The voice blueprint: AT's webhooks and our dial-out API under /voice/."""

from flask import Blueprint

bp = Blueprint("voice", __name__, url_prefix="/voice", template_folder="templates")

from voice import routes  # noqa: E402,F401  (registers the views on bp)

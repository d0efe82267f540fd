"""The operator console at /voice/console/: calls live and past, a call's timeline, figures, the flow, placing calls.

Pages are rendered on the server (Jinja, autoescaped) and work without JavaScript but for
live updates. Everything shown that came from a caller or AT is untrusted text.
"""

from flask import Blueprint

bp = Blueprint("console", __name__, url_prefix="/voice/console", template_folder="templates",
               static_folder="static", static_url_path="/static")

from voice.console import campaign_pages, pages, signin, webhook_pages  # noqa: E402,F401  (the views register themselves on bp)
from voice.console.signin import init_app  # noqa: E402,F401

"""The console's pages: calls (live and recent), one call, the overview, the flow, placing a call."""

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from voice import dialout, filters, refusals
from voice.at.client import ATError, NotConfigured
from voice.auth import DIAL, READ, scoped_label
from voice.console import bp, diagram
from voice.console.signin import signed_in
from voice.console.timeline import timeline
from voice.errors import APIError
from voice.recordings import playback
from voice.ratelimit import TooManyDials
from voice.store import history
from voice.store.overview import Overview

log = logging.getLogger(__name__)

PAGE = 25
WINDOWS = {"24h": (timedelta(hours=24), True), "7d": (timedelta(days=7), False), "30d": (timedelta(days=30), False)}
FILTERS = ("phone", "state", "direction", "since", "until")


class PlaceCallForm(FlaskForm):
    """The number to dial."""

    phone = StringField("Number", validators=[InputRequired(), Length(max=64)])


@bp.get("/")
def home():
    """The calls page."""
    return redirect(url_for("console.calls"))


@bp.get("/calls")
@signed_in(*READ)
def calls():
    """Calls in progress, then recent calls, filtered and a page at a time; the tables refresh themselves."""
    args = {name: request.args[name] for name in FILTERS if request.args.get(name)}
    error = None
    try:
        wanted = filters.call_filter({name: request.args.get(name) for name in (*FILTERS, "cursor")}, limit=PAGE)
        recent, following = history.list_calls(wanted, scoped_label())
        following = filters.encode_cursor(following) if following else None
    except filters.BadFilter as exc:
        recent, following, error = [], None, exc.message
    live = history.live_calls(scoped_label())
    overview_figures().warm(current_app._get_current_object(), scoped_label())
    context = {"live": live, "recent": recent, "following": following, "filters": args, "error": error,
               "now": datetime.now(timezone.utc)}
    if request.headers.get("HX-Request"):
        return render_template("console/_calls_tables.html", **context)
    return render_template("console/calls.html", **context)


@bp.get("/calls/<session_id>")
@signed_in(*READ)
def call(session_id):
    """One call: its figures and its timeline, each event's raw payload one click away."""
    detail = history.call_with_events(session_id, scoped_label())
    if detail is None:
        raise APIError(404, "not_found", "No call with this sessionId is recorded.")
    return render_template("console/call.html", call=detail["call"], timeline=timeline(detail),
                           details=history.labelled_values(detail["call"]))


@bp.get("/calls/<session_id>/recordings/<int:n>")
@signed_in(*READ)
def call_recording(session_id, n):
    """A call's kept recording for the page's player, as the API plays it back (Range honoured)."""
    return playback.response(session_id, n, scoped_label())


@bp.get("/overview")
@signed_in(*READ)
def overview():
    """Calls per hour or day, answer rate, durations, cost by currency and hang-up causes over a window."""
    window = request.args.get("window") if request.args.get("window") in WINDOWS else "24h"
    length, hourly = WINDOWS[window]
    until = datetime.now(timezone.utc)
    since = until - length
    figures = overview_figures().figures(since, until, hourly, scoped_label())
    buckets = figures["buckets"]
    chart = {
        "buckets": {"labels": [start.strftime("%d %b %H:00" if hourly else "%d %b") for start, _, _ in buckets],
                    "calls": [calls for _, calls, _ in buckets], "answered": [ok for _, _, ok in buckets]},
        "causes": figures["byHangupCause"],
        "costs": figures["costByCurrency"],
    }
    return render_template("console/overview.html", window=window, windows=list(WINDOWS), figures=figures,
                           buckets=buckets, hourly=hourly, chart=chart)


@bp.get("/flow")
@signed_in(*READ)
def flow():
    """The deployed call flow: a diagram of its steps, and what `voice flow check` says of its file now."""
    deployed = current_app.extensions["voice_flow"]
    # Where the file lies on the host is the operator's business: other roles see its name alone.
    source = deployed.source if g.api_role == "admin" else Path(deployed.source).name
    return render_template("console/flow.html", flow=deployed, source=source, steps=diagram.step_rows(deployed),
                           problems=diagram.check_file(current_app.config["VOICE_FLOW_FILE"]),
                           drawable=diagram.available())


@bp.get("/flow.svg")
@signed_in(*READ)
def flow_svg():
    """The deployed flow drawn by Graphviz, as SVG."""
    svg = diagram.svg(current_app.extensions["voice_flow"])
    if svg is None:
        raise APIError(503, "no_graphviz", "Graphviz (the dot program) is not installed on the server.")
    response = current_app.response_class(svg, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


@bp.route("/place", methods=["GET", "POST"])
@signed_in(*DIAL)
def place():
    """Place a call through the same checks and limits as the API's dial-out."""
    form = PlaceCallForm()
    error = None
    if form.validate_on_submit():
        try:
            numbers = dialout.checked([form.phone.data])
            answer = dialout.place(numbers, g.api_key_label)
        except refusals.REFUSED as exc:
            refusals.counted(exc)  # as the API counts them
            error = refusals.message(exc)
            if isinstance(exc, TooManyDials):
                error += f" Try again in {exc.retry_after} s."
        except ATError as exc:
            error = exc.message
        except NotConfigured as exc:
            error = "Dial-out is off until these settings are set: " + ", ".join(exc.missing)
        else:
            session = next((entry.get("sessionId") for entry in dialout.entries_of(answer)), None)
            flash(f"Calling {numbers[0]}.")
            log.info("console: %s placed a call (%s)", g.api_key_label, session)
            return redirect(url_for("console.calls"))
    return render_template("console/place.html", form=form, error=error), (400 if error else 200)


def overview_figures():
    """This app's overview figures, whole past days kept per process."""
    return current_app.extensions.setdefault("voice_overview", Overview())


@bp.app_template_filter("duration")
def duration(seconds):
    """Seconds as `1:05` or `1:02:05`."""
    if seconds is None:
        return "–"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@bp.app_template_filter("since")
def since(iso, now=None):
    """Seconds from an ISO time to now."""
    if not iso:
        return None
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return max(0, int(((now or datetime.now(timezone.utc)) - moment).total_seconds()))

"""The console's campaign pages: the campaigns, one campaign live (charts, contacts, pause / resume / cancel, the CSV
downloads), and a new campaign from a CSV file, previewed before it is created.

Every read and change goes through voice.campaigns.service, as the API's do, with the same roles and the same
scope (a dialer sees and changes its own campaigns only).
"""

import base64
import binascii
import io
import logging
import re

from flask import (Response, current_app, flash, g, redirect, render_template, request, stream_with_context,
                   url_for)
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField, SelectChoice, SelectField, SelectMultipleField, StringField

from voice.auth import DIAL, READ, scoped_label
from voice.campaigns import exports, figures, rules, service
from voice.campaigns.contacts import ListError, rows_of_csv
from voice.console import bp
from voice.console.signin import signed_in
from voice.errors import APIError

log = logging.getLogger(__name__)

CONTACTS_PAGE = 50
BUCKET_WORDS = {60: "minute", 300: "5 minutes", 900: "15 minutes", 3600: "hour", 3 * 3600: "3 hours",
                6 * 3600: "6 hours", 86400: "day", 7 * 86400: "week"}  # figures.BUCKETS, as the page says them
LIVE = ("scheduled", "running")  # the statuses a campaign's page refreshes itself in
ACTIONS = {"pause": service.pause, "resume": service.resume, "cancel": service.cancel}
DONE = {"pause": "Paused: calls in progress finish.", "resume": "Resumed.",
        "cancel": "Cancelled: nobody else is called; calls in progress finish."}
# Where a refusal of service.checked()/create() is shown: the form field its message starts with.
FIELDS = {"name": "name", "step": "step", "window": "window", "timezone": "timezone", "retry": "retry",
          "startAt": "start_at", "notAfter": "not_after", "maxConcurrent": "max_concurrent",
          "perMinute": "per_minute", "budget": "budget"}


class CampaignForm(FlaskForm):
    """A new campaign's settings and its contacts file; the rules are service.checked()'s, not the form's."""

    contacts = FileField("Contacts (CSV)")
    staged = HiddenField()       # the previewed file, base64, sent back with the confirmation
    staged_name = HiddenField()
    name = StringField("Name")
    step = SelectField("Start at step", validate_choice=False)
    window_from = StringField("Calls from")
    window_to = StringField("until")
    days = SelectMultipleField("Days", choices=[SelectChoice(day, day.capitalize()) for day in rules.DAYS],
                               validate_choice=False, default=list(rules.DAYS))
    timezone = StringField("Time zone for numbers without one")
    retry = StringField("Retry after", default=rules.DEFAULT_RETRY)
    max_concurrent = StringField("Calls at once", default="5")
    per_minute = StringField("New calls a minute", default="30")
    budget_amount = StringField("Budget")
    budget_currency = StringField("Currency")
    start_at = StringField("Start at (UTC)")
    not_after = StringField("No call after (UTC)")


class ActionForm(FlaskForm):
    """Pause, resume or cancel: the CSRF token, and for a resume a larger budget."""

    budget_amount = StringField("New budget")
    budget_currency = StringField("Currency")


def _digits(text):
    """True for ASCII digits only: str.isdigit() also takes `²` and other digits int() refuses."""
    return text.isascii() and text.isdigit()


def _campaign_id(raw):
    """The campaign id of a URL, or a 404 (any text reaches the view, so that a role check comes first)."""
    if not _digits(raw) or len(raw) > 10:
        raise APIError(404, "not_found", f"No campaign {raw[:20]} here.")
    return int(raw)


@bp.before_app_request
def _upload_limit():
    """A new campaign's form may carry a contacts file as large as the API takes (read before the CSRF check)."""
    if request.endpoint == "console.new_campaign" and request.method == "POST":
        limit = int(current_app.config["VOICE_CAMPAIGN_UPLOAD_MB"]) * 1024 * 1024
        request.max_content_length = limit * 2  # the file, or the previewed one sent back as base64
        request.max_form_memory_size = limit * 2


@bp.get("/campaigns")
@signed_in(*READ)
def campaigns():
    """The campaigns this key may see, newest first: progress, status, cost against budget, next attempt."""
    page = request.args.get("page", "1")
    page = int(page) if _digits(page) and 0 < len(page) <= 4 and int(page) > 0 else 1
    listed = service.listing(scoped_label(), page)
    return render_template("console/campaigns.html", campaigns=[_summary(c) for c in listed], page=page,
                           more=len(listed) == service.PAGE)


@bp.get("/campaigns/<campaign_id>")
@signed_in(*READ)
def campaign(campaign_id):
    """One campaign: figures and charts (refreshed while it runs), its contacts a page at a time, its actions."""
    return _campaign_page(_campaign_id(campaign_id))


def _campaign_page(campaign_id, error=None, status=200):
    row = service.get(campaign_id, scoped_label())
    context = _live_context(row)
    if request.headers.get("HX-Request") and error is None:
        return render_template("console/_campaign_live.html", **context)
    wanted = request.args.get("status") or None
    if wanted not in (None, *rules.STATUSES):
        wanted, error = None, error or "status must be one of " + ", ".join(rules.STATUSES)
    after = request.args.get("after", "")
    after = int(after) if _digits(after) and len(after) <= 10 else None
    shown = service.contacts(campaign_id, scoped_label(), wanted, after=after, size=CONTACTS_PAGE + 1)
    following = shown[CONTACTS_PAGE - 1]["id"] if len(shown) > CONTACTS_PAGE else None
    return render_template("console/campaign.html", contacts=shown[:CONTACTS_PAGE], wanted=wanted, after=after,
                           following=following, statuses=rules.STATUSES, error=error, **context), status


def _live_context(row):
    """What the live part of a campaign's page shows, and the charts' data."""
    summary = _summary(service.as_json(row))
    keys = list(dict.fromkeys([*current_app.extensions["voice_flow"].save_keys, *(row.answer_keys or ())]))
    answered = figures.answers(row, keys, sum(summary["counts"][status] for status in figures.ANSWERED))
    chart = {
        "statuses": {"labels": list(rules.STATUSES), "counts": [summary["counts"][s] for s in rules.STATUSES]},
        "answers": {key: {"labels": [value for value, _ in found], "counts": [n for _, n in found]}
                    for key, found in answered.items()},
    }
    return {"campaign": summary, "answers": answered, "chart": chart,
            "live": summary["status"] in LIVE, "action_form": ActionForm(),
            "may_change": g.api_role in DIAL and summary["status"] not in ("completed", "cancelled")}


@bp.get("/campaigns/<campaign_id>/over-time")
@signed_in(*READ)
def campaign_over_time(campaign_id):
    """A campaign's attempts over time: a part of its page of its own, fetched after the page and refreshed less
    often (it counts every attempt, the costliest figure), or a page of its own without JavaScript."""
    row = service.get(_campaign_id(campaign_id), scoped_label())
    over_time = figures.attempts_over_time(row)
    stamp = "%H:%M" if over_time["seconds"] < 3600 else "%d %b %H:%M" if over_time["seconds"] < 86400 else "%d %b"
    context = {"campaign": {"id": row.id, "name": row.name}, "over_time": over_time, "live": row.status in LIVE,
               "bucket": BUCKET_WORDS.get(over_time["seconds"], f"{over_time['seconds']} s"),
               "chart": {"labels": [start.strftime(stamp) for start, _, _ in over_time["buckets"]],
                         "attempts": [n for _, n, _ in over_time["buckets"]],
                         "answered": [n for _, _, n in over_time["buckets"]]}}
    if request.headers.get("HX-Request"):
        return render_template("console/_campaign_over_time.html", **context)
    return render_template("console/campaign_over_time.html", **context)


def _summary(body):
    """A campaign's JSON (service.as_json) with what the pages show of it: done, progress, spent of the budget."""
    done = sum(body["counts"][status] for status in rules.FINISHED)
    budget = body["budget"]
    spent = body["cost"].get(budget["currency"], 0) if budget else None
    return dict(body, done=done, spent=spent,
                progress=round(100 * done / body["contacts"]) if body["contacts"] else 0)


@bp.post("/campaigns/<campaign_id>/pause")
@signed_in(*DIAL)
def pause_campaign(campaign_id):
    """Stop starting calls; those in progress finish."""
    return _change(campaign_id, "pause")


@bp.post("/campaigns/<campaign_id>/resume")
@signed_in(*DIAL)
def resume_campaign(campaign_id):
    """Start calling again (with a larger budget when it paused for its own)."""
    return _change(campaign_id, "resume")


@bp.post("/campaigns/<campaign_id>/cancel")
@signed_in(*DIAL)
def cancel_campaign(campaign_id):
    """End the campaign: contacts still to be called are cancelled."""
    return _change(campaign_id, "cancel")


def _change(campaign_id, action):
    """Do `action` through the service, as the API does; a refusal (409) is shown on the campaign's page."""
    campaign_id = _campaign_id(campaign_id)
    form = ActionForm()
    try:
        if action == "resume" and (form.budget_amount.data or "").strip():
            service.resume(campaign_id, scoped_label(), {"amount": form.budget_amount.data.strip(),
                                                         "currency": (form.budget_currency.data or "").strip()})
        else:
            ACTIONS[action](campaign_id, scoped_label())
    except APIError as exc:
        if exc.status == 404:
            raise
        return _campaign_page(campaign_id, error=exc.message, status=exc.status)
    log.info("console: %s did %s on campaign %s", g.api_key_label, action, campaign_id)
    flash(DONE[action])
    return redirect(url_for("console.campaign", campaign_id=campaign_id))


@bp.get("/campaigns/<campaign_id>/results.csv")
@signed_in(*READ)
def campaign_results(campaign_id):
    """A row per contact, streamed, as the API gives it."""
    return _csv(_campaign_id(campaign_id), exports.results_csv, "results")


@bp.get("/campaigns/<campaign_id>/attempts.csv")
@signed_in(*READ)
def campaign_attempts(campaign_id):
    """A row per attempt, streamed, as the API gives it."""
    return _csv(_campaign_id(campaign_id), exports.attempts_csv, "attempts")


def _csv(campaign_id, write, name):
    return Response(stream_with_context(write(campaign_id, scoped_label())), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-{name}.csv"'})


@bp.route("/campaigns/new", methods=["GET", "POST"])
@signed_in(*DIAL)
def new_campaign():
    """Upload a contacts file and choose the settings; see what is accepted and refused; then create the campaign."""
    flow = current_app.extensions["voice_flow"]
    form = CampaignForm()
    form.step.choices = [SelectChoice("", f"the flow's outbound start ({flow.outbound or flow.inbound})")] + [
        SelectChoice(name) for name in flow.steps]
    if request.method == "GET":
        return render_template("console/campaign_new.html", form=form, errors={}, preview=None)
    errors, preview = {}, None
    content, filename = _contacts_file(form, errors)
    if content is not None:
        spec = _spec(form)
        try:
            if request.form.get("confirm") and not (form.contacts.data and form.contacts.data.filename):
                body, accepted, refused = service.create(spec, rows_of_csv(io.BytesIO(content)), g.api_key_label, flow)
                flash(f"Campaign {body['id']} created: {accepted} contacts accepted, {len(refused)} refused.")
                log.info("console: %s created campaign %s (%d contacts)", g.api_key_label, body["id"], accepted)
                return redirect(url_for("console.campaign", campaign_id=body["id"]))
            _, importer = service.checked(spec, rows_of_csv(io.BytesIO(content)), flow)
            preview = {"accepted": importer.count, "refused": importer.refused, "filename": filename}
            form.staged.data = base64.b64encode(content).decode()
            form.staged_name.data = filename
        except ListError as exc:  # rows_of_csv reads the header when first asked for a row
            errors["contacts"] = str(exc)
        except APIError as exc:
            if exc.code in ("bad_contacts", "no_contacts"):
                errors["contacts"] = exc.message
                if exc.code == "no_contacts":
                    preview = {"accepted": 0, "refused": exc.extra.get("refused", []), "filename": filename}
            else:
                match = re.match(r"[A-Za-z]+", exc.message)
                errors[FIELDS.get(match.group(0) if match else "", "form")] = exc.message
    status = 400 if errors else 200
    return render_template("console/campaign_new.html", form=form, errors=errors, preview=preview), status


def _contacts_file(form, errors):
    """The contacts file's bytes and name: a file just chosen, else the one previewed; None (an error noted)."""
    upload = form.contacts.data
    if upload and upload.filename:
        return upload.read(), upload.filename[:128]
    if form.staged.data:
        try:
            return base64.b64decode(form.staged.data, validate=True), (form.staged_name.data or "contacts.csv")[:128]
        except (binascii.Error, ValueError):
            pass
    errors["contacts"] = "Choose a CSV file with a 'phone' column."
    return None, None


def _spec(form):
    """The form's settings as the API's fields (service.checked() reads and checks them)."""
    start, end, days = (form.window_from.data or "").strip(), (form.window_to.data or "").strip(), form.days.data or []
    window = None
    if start or end or set(days) != set(rules.DAYS):
        window = {"from": start or "00:00", "to": end or start or "00:00", "days": days}
    amount = (form.budget_amount.data or "").strip()
    spec = {"name": form.name.data or None, "step": form.step.data or None, "window": window,
            "timezone": (form.timezone.data or "").strip() or None, "retry": form.retry.data,
            "maxConcurrent": form.max_concurrent.data, "perMinute": form.per_minute.data,
            "startAt": form.start_at.data, "notAfter": form.not_after.data,
            "budget": {"amount": amount, "currency": (form.budget_currency.data or "").strip()} if amount else None}
    return spec


@bp.app_template_filter("moment")
def moment(iso_text):
    """An API time (`2026-12-02T14:01:56.227660Z`) as `2026-12-02 14:01:56`."""
    return iso_text[:19].replace("T", " ") if iso_text else "–"


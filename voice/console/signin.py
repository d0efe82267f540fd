"""Signing in to the console with an API key: a signed session cookie, CSRF on every form, limited attempts."""

import functools
import hashlib
import hmac
import logging
import re

from flask import (current_app, g, has_request_context, redirect, render_template, request, session,
                   url_for)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, TooManyRequests
from wtforms import PasswordField, StringField
from wtforms.validators import InputRequired, Length

from voice import metrics
from voice.auth import check_role, key_entry, labelled
from voice.console import bp
from voice.errors import APIError
from voice.ratelimit import TooManyDials, count_sign_in
from voice.store import sessions

log = logging.getLogger(__name__)
csrf = CSRFProtect()

# What the console's pages may load: our own files only, no inline script or style; recordings from anywhere
# over http(s).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src http: https:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class SignInForm(FlaskForm):
    """The label and key of an API key."""

    label = StringField("Key label", validators=[InputRequired(), Length(max=64)])
    key = PasswordField("API key", validators=[InputRequired(), Length(max=256)])


class ConsoleSession(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app):
        return bool(app.config["SESSION_COOKIE_SECURE"] or (has_request_context() and request.is_secure))


def init_app(app):
    """Register the console: its session cookie, CSRF protection, security headers and the blueprint."""
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_PATH"] = "/voice/console"
    app.config["SESSION_COOKIE_NAME"] = "voice_console"
    app.config["PERMANENT_SESSION_LIFETIME"] = app.extensions["voice_settings"].console_session
    # CSRF is checked by the console alone: the JSON API takes keys, not cookies.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # a token lives as long as its session
    app.session_interface = ConsoleSession()
    csrf.init_app(app)
    app.register_blueprint(bp)


@bp.context_processor
def _mode():
    """Every console page says when AT is simulated."""
    return {"voice_mode": current_app.extensions["voice_settings"].mode}


@bp.before_request
def _console_checks():
    """The console needs SECRET_KEY; every form it takes carries the session's CSRF token."""
    if not current_app.config.get("SECRET_KEY"):
        return render_template("console/error.html", title="The console is off",
                               message="Set SECRET_KEY (make run writes one into .env) to use the console."), 503
    if request.method == "POST":
        csrf.protect()
    return None


@bp.after_request
def _console_headers(response):
    """A strict Content-Security-Policy, no framing, no caching of pages holding call data."""
    # A view that sets its own policy (the flow's SVG) keeps it.
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc):
    page, status = _error_page(exc.code, exc.name, exc.description)
    retry = dict(exc.get_headers()).get("Retry-After")
    return page, status, ({"Retry-After": retry} if retry else {})


@bp.errorhandler(APIError)
def _api_error(exc):
    return _error_page(exc.status, exc.code.replace("_", " ").capitalize(), exc.message)


@bp.errorhandler(CSRFError)
def _csrf_error(exc):
    return _error_page(400, "The form expired", "Reload the page and send the form again.")


def _error_page(status, title, message):
    if status == 429:
        metrics.refused("rate_limit")
    return render_template("console/error.html", title=title, message=message), status


def _key_check(key):
    """What the session keeps of a key: a MAC of it, so a rotated key ends the sessions it opened."""
    secret = current_app.config["SECRET_KEY"]
    secret = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_in(*roles):
    """The view needs a signed-in session whose key (still configured, unchanged) has one of `roles`."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            label = session.get("label")
            current = labelled(label) if label else None
            if (current is None or not hmac.compare_digest(session.get("check", ""), _key_check(current[0]))
                    or not sessions.is_open(session.get("sid"), label)):
                session.clear()
                return redirect(url_for("console.sign_in", next=request.full_path if request.method == "GET" else None))
            g.api_key_label, g.api_role = label, current[1]
            check_role(g.api_role, roles, "This page")
            return view(*args, **kwargs)

        return wrapped

    return decorate


# A path of the console itself: no scheme, host, backslash, control character or `..`, so a redirect to it
# can neither leave the site nor break the Location header.
_CONSOLE_PATH = re.compile(r"/voice/console/[A-Za-z0-9_./?=&%+:@~!$'()*,;-]{0,500}")


def console_path(target):
    """`target` when it is a path of the console that is safe to redirect to, else None."""
    if not isinstance(target, str) or not _CONSOLE_PATH.fullmatch(target) or "/../" in target or "//" in target:
        return None
    return target


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Sign in with an API key's label and key (attempts limited per address: VOICE_CONSOLE_SIGNIN_LIMIT)."""
    if request.method == "POST":
        try:
            count_sign_in(request.remote_addr or "-")
        except TooManyDials as exc:
            raise TooManyRequests(f"{exc} Try again in {exc.retry_after} s.", retry_after=exc.retry_after) from None
    form = SignInForm()
    error = None
    if form.validate_on_submit():
        entry = key_entry(form.key.data)
        if entry is not None and hmac.compare_digest(entry[0].encode(), form.label.data.strip().encode()):
            sessions.end(session.get("sid"))  # a session this browser had before ends, copies of it included
            session.clear()
            session.permanent = True
            session_id = sessions.start(entry[0], current_app.permanent_session_lifetime)
            session.update(label=entry[0], check=_key_check(form.key.data), sid=session_id)
            log.info("console: %s signed in (%s) from %s", entry[0], entry[1], request.remote_addr)
            return redirect(console_path(request.args.get("next")) or url_for("console.calls"))
        metrics.refused("bad_key")
        # The label field is where a key pasted in the wrong box lands: name it only when it is a label.
        given = form.label.data.strip()
        shown = repr(given) if labelled(given) is not None else "(not a configured label)"
        log.warning("console: sign-in refused for label %s from %s", shown, request.remote_addr)
        error = "That label and key do not match a key of this service."
    elif request.method == "POST":
        error = "Give the key's label and the key."
    return render_template("console/sign_in.html", form=form, error=error), (401 if error else 200)


@bp.post("/sign-out")
def sign_out():
    """End the session."""
    label, session_id = session.get("label"), session.get("sid")
    session.clear()
    sessions.end(session_id)
    if label:
        log.info("console: %s signed out", label)
    return redirect(url_for("console.sign_in"))

"""The application factory: settings, logging, the voice blueprint and its error handlers."""

import logging
import os

from dotenv import load_dotenv
from flask import Flask

from voice import access, errors, fields, flows, logs, ops, ratelimit, routes, security, settings
from voice import console
from voice.at import client
from voice.cli import voice_cli
from voice.store import db, records


def create_app(config=None):
    """Build the app from `config`, or from the environment and .env when none is given."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(settings.DEFAULTS)
    app.config["MIGRATIONS_DIR"] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
    if config is None:
        load_dotenv(os.path.join(os.getcwd(), ".env"))
        app.config.from_mapping(settings.from_environ(os.environ))
    else:
        app.config.from_mapping(config)
    app.json = fields.RequestJSON(app)
    app.json.sort_keys = False

    mode = "simulated" if settings.simulated(app.config) else "live"
    if mode == "simulated":
        app.config.update(settings.simulated_at_settings(app.config))
    # The settings that need reading, read once; a bad one stops the app here.
    app.extensions["voice_settings"] = settings.build(app.config, mode)
    logs.configure(app)
    if mode == "simulated":
        logging.getLogger("voice").warning(
            "SIMULATED Africa's Talking: dial-outs go to %s and no real call is placed. To go live, set "
            "AT_USERNAME, AT_API_KEY and AT_VOICE_NUMBER in .env (or VOICE_SIMULATE=0).",
            app.config["AT_VOICE_API_URL"])
    security.init_app(app)
    # An invalid flow stops the app here, before any caller can hear it.
    app.extensions["voice_flow"] = flows.load(app.config["VOICE_FLOW_FILE"] or None)
    client.init_app(app)
    db.init_app(app)
    records.init_app(app)
    ratelimit.init_app(app)
    errors.register(app)
    routes.init_app(app)
    app.register_blueprint(ops.bp)
    console.init_app(app)
    app.cli.add_command(voice_cli)
    access.init_app(app)
    return app

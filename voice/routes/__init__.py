"""The views, a blueprint per audience: AT's webhooks, the dial-out API, the call history API."""

from voice.routes import api, history, webhooks


def init_app(app):
    """Register the three blueprints, every route under /voice/."""
    for blueprint in (webhooks.bp, api.bp, history.bp):
        app.register_blueprint(blueprint)

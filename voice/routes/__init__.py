"""The views, a blueprint per audience: AT's webhooks, the dial-out API, the call history API, campaigns."""

from voice.routes import api, campaigns, endpoints, history, webhooks


def init_app(app):
    """Register the blueprints, every route under /voice/."""
    for blueprint in (webhooks.bp, api.bp, history.bp, campaigns.bp, endpoints.bp):
        app.register_blueprint(blueprint)

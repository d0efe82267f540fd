"""Signed webhooks to the user's systems (docs/webhooks.md)."""

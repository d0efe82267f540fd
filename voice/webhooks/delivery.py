"""PLACEHOLDER (helper A fills this in): delivering events to endpoints."""


def due():
    """The ids of deliveries due now, claimed for this worker."""
    return ()


def deliver(delivery_id):
    """Send one delivery."""


def housekeeping():
    """Give up on what failed for too long."""

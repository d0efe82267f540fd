"""PLACEHOLDER (helper B fills this in): archiving recordings."""


def calls_ended(calls):
    """Note each recording of the ended calls, to be fetched."""


def due():
    """The ids of recordings due for a fetch, claimed for this worker."""
    return ()


def fetch(recording_id):
    """Fetch one recording."""


def housekeeping():
    """Give up on what failed for too long."""

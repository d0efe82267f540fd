"""PLACEHOLDER (helper A fills this in): the events webhook endpoints receive."""


def calls_ended(calls):
    """Queue a `call.completed` event for each ended call, for every endpoint that asked for it."""

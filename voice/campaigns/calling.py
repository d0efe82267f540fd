"""A campaign's call as the flow sees it: the step it starts at and the contact's variables, looked up when needed."""

import functools

import sqlalchemy as sa

from voice.campaigns.models import Attempt, Campaign, Contact, attempt_of
from voice.store.db import StoreUnavailable, db, guarded


class CallContext:
    """What a campaign knows of the outbound call `note`; each lookup is made once, and only if a step asks."""

    def __init__(self, note):
        self.note = note

    @functools.cached_property
    def _row(self):
        """(campaign step, contact variables) of the call's attempt, or None for a call of no campaign."""
        attempt_id = attempt_of(self.note.client_request_id)
        where = Attempt.id == attempt_id if attempt_id else Attempt.session_id == self.note.session_id
        # The callee must be the attempt's contact: a clientRequestId alone cannot lead to another contact's data.
        query = (sa.select(Campaign.step, Contact.vars).select_from(Attempt)
                 .join(Contact, Contact.id == Attempt.contact_id).join(Campaign, Campaign.id == Attempt.campaign_id)
                 .where(where, Contact.phone == self.note.caller).limit(1))
        try:
            return guarded(lambda: db.session.execute(query).first())
        except StoreUnavailable:
            return None  # the caller still hears the flow, from its outbound start

    @property
    def start(self):
        return self._row[0] if self._row else None

    @property
    def variables(self):
        return (self._row[1] if self._row else None) or {}


def context_for(note):
    """The CallContext of an outbound call, or None where no campaign can be involved."""
    if note.direction != "Outbound" or note.client_name:
        return None
    return CallContext(note)

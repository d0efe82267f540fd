"""The do-not-call list: numbers no campaign calls, added by an admin or by the callee in a flow (`optOut`)."""

import logging

import sqlalchemy as sa

from voice.campaigns.models import DoNotCall
from voice.phone import mask
from voice.store.db import StoreUnavailable, db, guarded, iso, utcnow

log = logging.getLogger(__name__)
PAGE = 500


def add(numbers, added_by, source):
    """Put `numbers` (E.164) on the list; the ones that were not on it yet."""

    def work():
        present = set(db.session.execute(sa.select(DoNotCall.phone).where(DoNotCall.phone.in_(numbers))).scalars())
        new = [number for number in dict.fromkeys(numbers) if number not in present]
        now = utcnow()
        db.session.add_all(DoNotCall(phone=number, added_at=now, added_by=added_by, source=source) for number in new)
        return new

    return guarded(work, write=True)


def add_from_call(number):
    """The callee asked never to be called again: on the list, or logged when the store is down (the call goes on)."""
    try:
        add([number], None, "flow")
        log.info("%s asked not to be called again: on the do-not-call list", mask(number))
    except StoreUnavailable as exc:  # a repeat of this callback adding it at the same moment included
        log.error("%s asked not to be called again but the list could not be written: %s", mask(number), exc)


def remove(numbers):
    """Take `numbers` off the list; how many were on it."""
    return guarded(lambda: db.session.execute(sa.delete(DoNotCall).where(DoNotCall.phone.in_(numbers))).rowcount,
                   write=True)


def page(after=None, limit=PAGE):
    """Up to `limit` entries after the number `after`, in number order."""
    query = sa.select(DoNotCall).order_by(DoNotCall.phone).limit(limit)
    if after:
        query = query.where(DoNotCall.phone > after)
    rows = guarded(lambda: list(db.session.execute(query).scalars()))
    return [{"phone": row.phone, "addedAt": iso(row.added_at), "addedBy": row.added_by, "source": row.source}
            for row in rows]

"""Placing dial-outs, for the API and the console alike: numbers checked, limits counted, AT asked, calls recorded."""

import logging

from flask import request

from voice import metrics, settings
from voice.access import annotate
from voice.at.client import get_client
from voice.phone import check_dialable, mask, normalise
from voice.ratelimit import count_dialouts
from voice.store import records
from voice.store.db import StoreUnavailable

log = logging.getLogger(__name__)


def checked(raw_numbers):
    """The numbers a client gave, cleaned to E.164 (each once) and each checked, before any limit is counted.

    Raises InvalidPhone or NotAllowed for the first number that may not be dialled.
    """
    numbers = list(dict.fromkeys(normalise(raw) for raw in raw_numbers or [None]))
    masked = ",".join(mask(number) for number in numbers)
    annotate(request.environ, detail="to=" + masked, to=masked)
    for number in numbers:
        check_dialable(number, settings.current().allowed_country_codes)
    return numbers


def place(numbers, label, client_request_id=None):
    """Dial checked `numbers` for the key `label` in one AT request; AT's answer (raises ATError, TooManyDials...)."""
    count_dialouts(label, numbers)
    client = get_client()
    answer = client.call(numbers[0] if len(numbers) == 1 else numbers, client_request_id=client_request_id)
    for entry in entries_of(answer):
        metrics.child(metrics.DIALOUTS, "queued", metrics.known(entry.get("status"), metrics.ENTRY_STATUSES)).inc()
    annotate(request.environ, detail="outcome=queued")
    try:
        stored = records.record_dialout(answer, client.voice_number, label, client_request_id)
        annotate(request.environ, ",".join(stored) or "-")
    except StoreUnavailable as exc:
        # The call is placed: answering an error would invite a retry that dials twice. AT's
        # callbacks still create the record when the store is back.
        log.error("dial-out to %s placed but not recorded: %s", mask(numbers[0]), exc)
    return answer


def entries_of(answer):
    """AT's per-number entries of a dial-out answer."""
    return [entry for entry in answer.get("entries") or [] if isinstance(entry, dict)]

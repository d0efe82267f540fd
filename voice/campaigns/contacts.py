"""A campaign's contact list read, checked row by row, and stored in chunks: what was accepted, and why each row was not.

A row is refused for the reasons a dial-out is (an invalid, premium or refused number, see
voice.refusals), and for a duplicate, a number on the do-not-call list, a bad time zone or
variables. Up to MAX_CONTACTS rows; a CSV is read as a stream, so a large list never sits in
memory twice.
"""

import csv
import io
import re

import sqlalchemy as sa

from voice import phone, refusals
from voice.shapes import has_control
from voice.campaigns import rules
from voice.campaigns.models import Contact, DoNotCall
from voice.store.db import db, guarded

MAX_CONTACTS = 100_000
MAX_VARS = 50
MAX_VALUE = 512
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
CHUNK = 2000
RESERVED_COLUMNS = ("phone", "timezone")


class ListError(ValueError):
    """A contact list that cannot be read at all (not a row of it): the message says why."""


def rows_of_json(items):
    """The contacts of a JSON list, as (phone, timezone, vars) rows."""
    if not isinstance(items, list):
        raise ListError("contacts must be a list of {\"phone\": ..., \"timezone\": ..., \"vars\": {...}}")
    if len(items) > MAX_CONTACTS:
        raise ListError(f"a campaign takes at most {MAX_CONTACTS} contacts")
    for item in items:
        if isinstance(item, str):
            yield item, None, {}
        elif isinstance(item, dict):
            yield item.get("phone"), item.get("timezone"), item.get("vars", {})
        else:
            yield None, None, None


def rows_of_csv(stream):
    """The contacts of a CSV file (bytes, UTF-8, a header with `phone`), as (phone, timezone, vars) rows."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline="")
    reader = csv.reader(text)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise ListError("the contacts file is empty: it needs a header row with a 'phone' column") from None
    except UnicodeDecodeError:
        raise ListError("the contacts file is not UTF-8 text") from None
    except csv.Error as exc:
        raise ListError(f"the contacts file is not valid CSV: {exc}") from None
    lowered = [name.lower() for name in header]
    if "phone" not in lowered:
        raise ListError("the contacts file needs a 'phone' column in its header row")
    if len(set(lowered)) != len(lowered):
        raise ListError("the contacts file's header names a column twice")
    extra = [name for name, low in zip(header, lowered) if low not in RESERVED_COLUMNS]
    bad = [name for name in extra if not VAR_NAME.match(name)]
    if bad or len(extra) > MAX_VARS:
        raise ListError(f"column names must be letters, digits and _ (up to {MAX_VARS} besides phone and timezone): "
                        f"{bad[0][:64]!r}" if bad else f"at most {MAX_VARS} columns besides phone and timezone")
    where_phone, where_zone = lowered.index("phone"), lowered.index("timezone") if "timezone" in lowered else None
    others = [(i, name) for i, (name, low) in enumerate(zip(header, lowered)) if low not in RESERVED_COLUMNS]
    count = 0
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            count += 1
            if count > MAX_CONTACTS:
                raise ListError(f"a campaign takes at most {MAX_CONTACTS} contacts")
            cells += [""] * (len(header) - len(cells))
            zone = cells[where_zone].strip() if where_zone is not None else ""
            yield (cells[where_phone], zone or None,
                   {name: cells[i] for i, name in others if cells[i] != ""} if len(cells) <= len(header) else None)
    except UnicodeDecodeError:
        raise ListError(f"the contacts file is not UTF-8 text (row {count + 1})") from None
    except csv.Error as exc:
        raise ListError(f"the contacts file is not valid CSV (row {count + 1}): {exc}") from None


def _vars(raw):
    """A contact's variables, checked: a flat mapping of names to short texts or numbers."""
    if raw is None or not isinstance(raw, dict):
        raise ValueError("vars must be an object of names to texts (or the row has more cells than the header)")
    if len(raw) > MAX_VARS:
        raise ValueError(f"a contact has at most {MAX_VARS} variables")
    checked = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not VAR_NAME.match(name):
            raise ValueError(f"variable name {str(name)[:64]!r} must be letters, digits and _")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"variable {name!r} must be a text or a number")
        value = str(value)
        if len(value) > MAX_VALUE or has_control(value):
            raise ValueError(f"variable {name!r} must be up to {MAX_VALUE} characters of text")
        checked[name] = value
    return checked


class Importer:
    """Checks rows one by one and stores the accepted ones in chunks under a campaign."""

    def __init__(self, allowed_country_codes, campaign_zone=None):
        self.allowed = allowed_country_codes
        self.campaign_zone = campaign_zone
        self.seen = set()
        self.accepted = []   # (row, phone, zone, vars), cleared as each chunk is stored
        self.count = 0
        self.refused = []
        self.var_names = set()
        self._zones = {}

    def check(self, row, raw_phone, raw_zone, raw_vars):
        """Accept or refuse one row (1-based)."""
        shown = str(raw_phone)[:32] if isinstance(raw_phone, (str, int)) else None
        try:
            if raw_phone is None or not isinstance(raw_phone, (str, int)) or isinstance(raw_phone, bool):
                raise phone.InvalidPhone("phone is required, in international format, e.g. +254712345678")
            number = phone.normalise(str(raw_phone))
            phone.check_dialable(number, self.allowed)
        except refusals.REFUSED as exc:
            return self._refuse(row, shown, refusals.message(exc))
        if number in self.seen:
            return self._refuse(row, shown, "duplicate: the number is already in this list")
        try:
            zone = self._zone(raw_zone, number)
            variables = _vars(raw_vars)
        except (ValueError, rules.RuleError) as exc:
            return self._refuse(row, shown, str(exc))
        self.seen.add(number)
        self.var_names.update(variables)
        self.accepted.append((row, number, zone, variables))
        self.count += 1
        return True

    def _zone(self, raw, number):
        if raw is not None and not isinstance(raw, str):
            raise ValueError("timezone must be an IANA time zone name such as Africa/Nairobi")
        if raw:
            if raw not in self._zones:
                rules.zone(raw)
                self._zones[raw] = raw
            return raw
        return rules.zone_of_number(number) or self.campaign_zone or "UTC"

    def _refuse(self, row, shown, error):
        self.refused.append({"row": row, "phone": shown, "error": error})
        return False

    def drop_do_not_call(self):
        """Refuse the accepted rows whose number is on the do-not-call list (looked up in chunks)."""
        kept = []
        for start in range(0, len(self.accepted), 500):
            chunk = self.accepted[start:start + 500]
            listed = set(db.session.execute(sa.select(DoNotCall.phone).where(
                DoNotCall.phone.in_([number for _, number, _, _ in chunk]))).scalars())
            for entry in chunk:
                if entry[1] in listed:
                    self._refuse(entry[0], entry[1], "the number is on the do-not-call list")
                    self.count -= 1
                else:
                    kept.append(entry)
        self.accepted = kept
        self.refused.sort(key=lambda refusal: refusal["row"])

    def store(self, campaign_id, first_due):
        """Insert the accepted contacts under `campaign_id`, due from `first_due(zone)` (None: the campaign's window
        never opens for them before notAfter, so they are `expired`); CHUNK a transaction, each in the host's write
        turn, so callbacks wait for one chunk at most."""
        table = Contact.__table__
        for start in range(0, len(self.accepted), CHUNK):
            rows = []
            for row, number, zone, variables in self.accepted[start:start + CHUNK]:
                due = first_due(zone)
                rows.append({"campaign_id": campaign_id, "row": row, "phone": number, "zone": zone,
                             "vars": variables or None, "status": "pending" if due else "expired", "attempts": 0,
                             "planned": 0, "transients": 0, "next_attempt_at": due})
            guarded(lambda: db.session.execute(table.insert(), rows), write=True)

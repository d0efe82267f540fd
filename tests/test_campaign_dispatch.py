"""What the worker does for campaigns, step by step: claim within the pacing, place, settle each call's end, recover.

The worker's functions run in an app context with a clock the test moves (`now=`); the calls go to
a simulated AT on 127.0.0.1 that plays each callee against the app served over real HTTP, so a
contact's outcome is what AT's callbacks said. Runs on SQLite and on PostgreSQL.
"""

import threading
import time
from datetime import timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from tests.helpers import KEY, WEBHOOK_TOKEN, sent
from voice.at.client import get_client
from voice.campaigns import dispatch, outcomes, settling
from voice.campaigns.models import Attempt, Campaign, Contact, request_id
from voice.store.db import db, utcnow
from voice.store.records import Call

pytestmark = pytest.mark.both_databases

ANSWERS = "+254712345678"          # answers, presses 3 (a message), and the flow plays to its end
ANSWERS_TOO = "+254712345679"
HANGS_UP = "+254700000487"         # answers and hangs up at the first question
NO_ANSWER = "+254700000480"
BUSY = "+254700000486"
UNALLOCATED = "+254700000404"
TEMPORARY_FAILURE = "+254700000408"
INVALID_AT_DIAL = "+254700000001"
NO_CREDIT = "+254700000003"
AT_500 = "+254700000500"
WAIT = 20.0                         # seconds a simulated callee may take, at most, to play a call out


@pytest.fixture
def config(config):
    """The test settings, a destination allowed to be dialled as often as the retries here need."""
    return dict(config, VOICE_RATE_LIMIT_PER_DESTINATION="1000 per hour")


@pytest.fixture
def at(simulated_at, live_app):
    """The simulated AT, playing the callee of each call it queues against the app served over HTTP."""
    simulated_at.service_url, simulated_at.token, simulated_at.answer_delay = live_app, WEBHOOK_TOKEN, 0.05
    simulated_at.digits = ("3",)  # the default flow's message: recorded, then goodbye, its end
    return simulated_at


def create(client, contacts, **rules):
    """Create a campaign through the API (quick retries and pacing unless given); its id."""
    body = {"name": "test", "contacts": contacts, "retry": "1s", "perMinute": 600}
    body.update(rules)
    response = client.post("/voice/campaigns", json=body, headers=KEY)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["campaign"]["id"]


def calls_to(at, number):
    """The /call requests the simulated AT got for `number`."""
    return [form for form in sent(at, "/call") if form.get("to") == number]


def calls_for(at, attempt_id):
    """The /call requests the simulated AT got for one attempt (its clientRequestId)."""
    return [form for form in sent(at, "/call") if form.get("clientRequestId") == request_id(attempt_id)]


def row(model, *where):
    """One row of `model` as a plain namespace, read in its own session."""
    found = db.session.execute(sa.select(model).where(*where)).scalar_one()
    return SimpleNamespace(**{column.key: getattr(found, column.key) for column in model.__table__.columns})


class Worker:
    """The worker's steps run by hand, in the app's context, at the test's clock `now`."""

    def __init__(self, app, now=None):
        self.app, self.flow = app, app.extensions["voice_flow"]
        self.now = now or utcnow()

    def run(self, work):
        """`work()` in an app context."""
        with self.app.app_context():
            return work()

    def claim(self, advance=1.0):
        """Move the clock `advance` seconds and claim; the attempt ids."""
        self.now += timedelta(seconds=advance)
        return self.run(lambda: dispatch.claim(self.now))

    def place(self, attempt_ids):
        """Place each attempt; {attempt id: outcome word}."""
        return self.run(lambda: {attempt_id: dispatch.place(attempt_id) for attempt_id in attempt_ids})

    def dial(self, count=1, advance=1.0):
        """Claim (a tick a second) until `count` attempts are claimed, and place them; {attempt id: outcome}."""
        claimed = []
        for _ in range(20):
            claimed += self.claim(advance)
            if len(claimed) >= count:
                break
        assert len(claimed) == count, f"claimed {claimed}, wanted {count}"
        return self.place(claimed)

    def settle(self):
        """Settle the calls that ended, waiting (bounded) until no attempt is `placed`: every callee played out."""
        deadline = time.monotonic() + WAIT
        while True:
            left = self.run(lambda: (settling.settle(self.flow, self.now), db.session.execute(
                sa.select(sa.func.count()).select_from(Attempt).where(Attempt.status == "placed")).scalar())[1])
            if not left:
                return
            assert time.monotonic() < deadline, f"{left} calls placed but not ended after {WAIT} s"
            time.sleep(0.05)

    def until_due(self):
        """Move the clock to the earliest time a waiting contact is due and its campaign's next pacing slot comes."""
        due = self.run(lambda: db.session.execute(
            sa.select(Contact.next_attempt_at, Campaign.next_dial_at).join(Campaign, Campaign.id == Contact.campaign_id)
            .where(Contact.status.in_(("pending", "retry"))).order_by(Contact.next_attempt_at).limit(1)).first())
        assert due is not None, "no contact is waiting"
        self.now = max(self.now, due[0], due[1] or due[0])

    def contact(self, phone, campaign_id=None):
        """The contact row of `phone`."""
        where = [Contact.phone == phone] + ([Contact.campaign_id == campaign_id] if campaign_id else [])
        return self.run(lambda: row(Contact, *where))

    def attempts(self, phone):
        """The attempts to `phone`, in order, as namespaces."""
        def work():
            found = db.session.execute(sa.select(Attempt).join(Contact, Contact.id == Attempt.contact_id)
                                       .where(Contact.phone == phone).order_by(Attempt.id)).scalars().all()
            return [SimpleNamespace(**{c.key: getattr(a, c.key) for c in Attempt.__table__.columns}) for a in found]
        return self.run(work)

    def attempt(self, attempt_id):
        """One attempt row."""
        return self.run(lambda: row(Attempt, Attempt.id == attempt_id))

    def campaign(self, campaign_id):
        """One campaign row."""
        return self.run(lambda: row(Campaign, Campaign.id == campaign_id))

    def calling(self, campaign_id=None):
        """How many contacts are `calling` (in one campaign, or all)."""
        where = [Contact.status == "calling"] + ([Contact.campaign_id == campaign_id] if campaign_id else [])
        return self.run(lambda: db.session.execute(sa.select(sa.func.count()).select_from(Contact).where(*where))
                        .scalar())


# --- each outcome ---------------------------------------------------------------------------------------------


def test_answered_to_the_end_is_completed(app, client, at):
    campaign_id = create(client, [ANSWERS])
    worker = Worker(app)
    assert list(worker.dial().values()) == ["placed"]
    worker.settle()
    contact = worker.contact(ANSWERS)
    assert (contact.status, contact.attempts, contact.next_attempt_at) == ("completed", 1, None)
    assert [a.outcome for a in worker.attempts(ANSWERS)] == ["completed"]
    shown = client.get(f"/voice/campaigns/{campaign_id}/contacts", headers=KEY).get_json()["contacts"][0]
    assert shown["status"] == "completed" and len(shown["sessionIds"]) == 1


def test_answered_and_hung_up_at_the_first_question_is_breakoff_never_called_again(app, client, at):
    create(client, [HANGS_UP], retry="1s 1s")
    worker = Worker(app)
    worker.dial()
    worker.settle()
    contact = worker.contact(HANGS_UP)
    assert (contact.status, contact.attempts, contact.next_attempt_at) == ("breakoff", 1, None)
    assert worker.claim(advance=86400) == []
    assert len(calls_to(at, HANGS_UP)) == 1


@pytest.mark.parametrize("number, cause", [(NO_ANSWER, "NO_ANSWER"), (BUSY, "USER_BUSY")])
def test_unanswered_is_retried_then_unreached_when_the_retries_are_used_up(app, client, at, number, cause):
    create(client, [number], retry="1s")
    worker = Worker(app)
    worker.dial()
    worker.settle()
    contact = worker.contact(number)
    assert (contact.status, contact.attempts, contact.planned, contact.last_hangup_cause) == ("retry", 1, 1, cause)
    worker.until_due()
    worker.dial(advance=0)
    worker.settle()
    contact = worker.contact(number)
    assert (contact.status, contact.attempts, contact.next_attempt_at) == ("unreached", 2, None)
    assert [a.outcome for a in worker.attempts(number)] == ["retry", "unreached"]
    assert worker.claim(advance=86400) == []
    assert len(calls_to(at, number)) == 2


def test_an_unallocated_number_fails_after_one_attempt(app, client, at):
    create(client, [UNALLOCATED], retry="1s 1s")
    worker = Worker(app)
    worker.dial()
    worker.settle()
    contact = worker.contact(UNALLOCATED)
    assert (contact.status, contact.attempts, contact.next_attempt_at) == ("failed", 1, None)
    assert worker.claim(advance=86400) == []
    assert len(calls_to(at, UNALLOCATED)) == 1


def test_a_temporary_failure_is_a_short_retry_that_uses_no_planned_one_three_in_a_row(app, client, at):
    create(client, [TEMPORARY_FAILURE], retry="1s")
    worker = Worker(app)
    seen = []
    for _ in range(10):
        worker.dial(advance=0 if seen else 1)
        worker.settle()
        attempt = worker.attempts(TEMPORARY_FAILURE)[-1]
        contact = worker.contact(TEMPORARY_FAILURE)
        seen.append((contact.attempts, contact.planned, contact.transients, contact.status,
                     contact.next_attempt_at - attempt.ended_at if contact.next_attempt_at else None))
        if contact.status != "retry":
            break
        worker.until_due()
    short, planned = timedelta(minutes=1), timedelta(seconds=1)
    assert seen == [
        (1, 0, 1, "retry", short), (2, 0, 2, "retry", 2 * short), (3, 0, 3, "retry", 4 * short),
        (4, 1, 0, "retry", planned),   # three short retries in a row: the next one uses the planned retry
        (5, 1, 1, "retry", short), (6, 1, 2, "retry", 2 * short), (7, 1, 3, "retry", 4 * short),
        (8, 1, 3, "unreached", None),  # the planned retry used up
    ]
    assert len(calls_to(at, TEMPORARY_FAILURE)) == 8


def test_a_number_at_refuses_at_dial_fails_without_a_call(app, client, at):
    create(client, [INVALID_AT_DIAL], retry="1s 1s")
    worker = Worker(app)
    assert list(worker.dial().values()) == ["failed"]
    contact = worker.contact(INVALID_AT_DIAL)
    assert (contact.status, contact.attempts, contact.next_attempt_at) == ("failed", 1, None)
    assert [a.outcome for a in worker.attempts(INVALID_AT_DIAL)] == ["failed"]
    assert worker.claim(advance=86400) == []


def test_at_answering_500_is_a_transient_failure_once_no_call_turns_up(app, client, at):
    create(client, [AT_500], retry="1s 1s")
    worker = Worker(app)
    # AT may have queued the call before failing its answer: the attempt waits for a call naming it.
    assert list(worker.dial().values()) == ["unknown"]
    assert worker.contact(AT_500).status == "calling"
    with app.app_context():
        settling.recover(utcnow() + timedelta(seconds=5))  # within twice AT's timeout: still waiting
    assert worker.contact(AT_500).status == "calling"
    later = utcnow() + timedelta(minutes=61)  # past the outcome timeout, and no call came
    with app.app_context():
        settling.recover(later)
    contact = worker.contact(AT_500)
    assert (contact.status, contact.attempts, contact.planned, contact.transients) == ("retry", 1, 0, 1)
    assert contact.next_attempt_at == later + timedelta(minutes=1)
    assert [a.outcome for a in worker.attempts(AT_500)] == ["transient"]


def test_insufficient_credit_pauses_the_campaign_and_the_contact_waits(app, client, at):
    campaign_id = create(client, [NO_CREDIT])
    worker = Worker(app)
    assert list(worker.dial().values()) == ["withdrawn"]
    campaign = worker.campaign(campaign_id)
    assert (campaign.status, campaign.paused_reason) == ("paused", "credit")
    contact = worker.contact(NO_CREDIT)
    assert (contact.status, contact.attempts) == ("pending", 0)
    assert worker.claim(advance=60) == []


# --- retries in time ------------------------------------------------------------------------------------------


def test_a_retry_is_due_when_the_last_call_ended_plus_the_delay(app, client, at):
    create(client, [NO_ANSWER], retry="5m")
    worker = Worker(app)
    worker.dial()
    worker.settle()
    attempt, contact = worker.attempts(NO_ANSWER)[0], worker.contact(NO_ANSWER)
    assert attempt.ended_at is not None and attempt.ended_at > attempt.dialled_at
    assert contact.next_attempt_at == attempt.ended_at + timedelta(minutes=5)
    worker.now = contact.next_attempt_at - timedelta(seconds=1)
    assert worker.claim(advance=0) == []
    assert len(worker.claim(advance=1)) == 1


def test_a_retry_waits_for_the_window_to_open_in_the_contacts_zone(app, client, at):
    nairobi = utcnow().astimezone(ZoneInfo("Africa/Nairobi"))
    opens = (nairobi + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)  # 2 to 3 hours from now
    window = {"from": f"{opens:%H:%M}", "to": f"{opens + timedelta(hours=3):%H:%M}"}
    create(client, [{"phone": NO_ANSWER}, {"phone": BUSY, "timezone": "Africa/Lagos"}], retry="1m", window=window)
    opens_nairobi = opens.astimezone(ZoneInfo("UTC"))
    opens_lagos = opens_nairobi + timedelta(hours=2)  # the same clock time, two hours west
    worker = Worker(app, now=opens_lagos - timedelta(seconds=1))  # both windows open: 2 h in, and just opened
    assert worker.contact(NO_ANSWER).next_attempt_at == opens_nairobi
    assert worker.contact(BUSY).next_attempt_at == opens_lagos
    worker.dial(count=2)
    worker.settle()
    for number, opening in ((NO_ANSWER, opens_nairobi), (BUSY, opens_lagos)):
        contact = worker.contact(number)
        ended = worker.attempts(number)[0].ended_at
        assert ended + timedelta(minutes=1) < opening
        assert (contact.status, contact.next_attempt_at) == ("retry", opening)


def test_a_retry_past_not_after_expires_the_contact(app, client, at):
    not_after = (utcnow() + timedelta(minutes=10)).isoformat()
    create(client, [NO_ANSWER], retry="1h", notAfter=not_after)
    worker = Worker(app)
    worker.dial()
    worker.settle()
    contact = worker.contact(NO_ANSWER)
    assert (contact.status, contact.next_attempt_at) == ("expired", None)
    assert [a.outcome for a in worker.attempts(NO_ANSWER)] == ["expired"]
    assert worker.claim(advance=3600) == []


def test_a_retry_whose_next_opening_is_past_not_after_expires(app, client, at):
    nairobi = utcnow().astimezone(ZoneInfo("Africa/Nairobi")).replace(second=0, microsecond=0)
    window = {"from": f"{nairobi - timedelta(hours=1):%H:%M}", "to": f"{nairobi + timedelta(minutes=5):%H:%M}"}
    # Without the window the retry would be due in 10 minutes, before notAfter; the window reopens tomorrow.
    create(client, [NO_ANSWER], retry="10m", window=window, notAfter=(utcnow() + timedelta(minutes=30)).isoformat())
    worker = Worker(app)
    worker.dial()
    worker.settle()
    contact = worker.contact(NO_ANSWER)
    assert (contact.status, contact.next_attempt_at) == ("expired", None)


def test_a_contact_claimed_after_its_window_closed_waits_for_the_next_opening(app, client, at):
    window = {"from": "08:00", "to": "20:00"}
    create(client, [ANSWERS], window=window)
    worker = Worker(app)
    due = worker.contact(ANSWERS).next_attempt_at
    evening = due.astimezone(ZoneInfo("Africa/Nairobi")).replace(hour=21, minute=0, second=0, microsecond=0)
    if evening < due:
        evening += timedelta(days=1)
    worker.now = evening.astimezone(ZoneInfo("UTC"))
    assert worker.claim(advance=0) == []
    next_morning = (evening + timedelta(days=1)).replace(hour=8)
    assert worker.contact(ANSWERS).next_attempt_at == next_morning
    assert sent(at, "/call") == []


# --- pacing ---------------------------------------------------------------------------------------------------


def test_max_concurrent_is_never_exceeded(app, client):
    campaign_id = create(client, [f"+2547123400{n:02d}" for n in range(6)], maxConcurrent=2)
    worker = Worker(app)
    claimed = []
    for _ in range(6):
        claimed += worker.claim(advance=1)
        assert worker.calling(campaign_id) <= 2
    assert len(claimed) == 2


def test_per_minute_spreads_calls_as_slots_ten_seconds_apart(app, client):
    create(client, [f"+2547123400{n:02d}" for n in range(10)], perMinute=6, maxConcurrent=10)
    worker = Worker(app)
    start = worker.now
    assert len(worker.claim(advance=0)) == 1
    assert len(worker.claim(advance=1)) == 0
    claimed_at = []
    for _ in range(40):  # a tick a second
        if worker.claim(advance=1):
            claimed_at.append((worker.now - start).total_seconds())
    assert 9 <= claimed_at[0] <= 10   # the first slot may be up to a second before the first claim
    assert [round(b - a) for a, b in zip(claimed_at, claimed_at[1:])] == [10] * (len(claimed_at) - 1)
    assert len(claimed_at) >= 3


def test_a_late_tick_takes_one_slot_not_the_ones_it_missed(app, client):
    create(client, [f"+2547123400{n:02d}" for n in range(10)], perMinute=6, maxConcurrent=10)
    worker = Worker(app)
    assert len(worker.claim(advance=0)) == 1
    assert len(worker.claim(advance=60)) == 1   # five slots went by unused: they are not made up at once


def test_the_account_cap_holds_across_campaigns(make_app):
    app = make_app(VOICE_CAMPAIGN_MAX_CONCURRENT=3)
    client = app.test_client()
    first = create(client, [f"+2547123400{n:02d}" for n in range(4)], maxConcurrent=2)
    second = create(client, [f"+2547123401{n:02d}" for n in range(4)], maxConcurrent=2)
    worker = Worker(app)
    claimed = []
    for _ in range(5):
        claimed += worker.claim(advance=1)
        assert worker.calling() <= 3
    assert len(claimed) == 3
    assert worker.calling(first) > 0 and worker.calling(second) > 0


def test_the_account_rate_holds_across_campaigns(make_app):
    app = make_app(VOICE_CAMPAIGN_PER_MINUTE=2)
    client = app.test_client()
    create(client, [f"+2547123400{n:02d}" for n in range(4)], maxConcurrent=10)
    create(client, [f"+2547123401{n:02d}" for n in range(4)], maxConcurrent=10)
    worker = Worker(app)
    claimed = []
    for _ in range(5):
        claimed += worker.claim(advance=1)
    assert len(claimed) == 2
    assert len(worker.claim(advance=60)) >= 1


# --- budget ---------------------------------------------------------------------------------------------------


def test_a_campaign_pauses_itself_when_its_calls_cost_its_budget(app, client, at):
    campaign_id = create(client, [ANSWERS, ANSWERS_TOO, "+254712345670"], maxConcurrent=1,
                         budget={"amount": 4, "currency": "KES"})
    worker = Worker(app)
    worker.dial()
    worker.settle()
    shown = client.get(f"/voice/campaigns/{campaign_id}", headers=KEY).get_json()
    assert (shown["status"], shown["pausedReason"]) == ("paused", "budget")
    assert shown["cost"]["KES"] >= 4
    assert worker.claim(advance=60) == []
    assert len(sent(at, "/call")) == 1
    refused = client.post(f"/voice/campaigns/{campaign_id}/resume", headers=KEY)
    assert refused.status_code == 409 and refused.get_json()["error"] == "budget_reached"
    resumed = client.post(f"/voice/campaigns/{campaign_id}/resume", json={"budget": {"amount": 100, "currency": "KES"}},
                          headers=KEY)
    assert resumed.status_code == 200 and resumed.get_json()["status"] == "running"
    assert len(worker.claim(advance=1)) == 1


# --- pause, resume, cancel ------------------------------------------------------------------------------------


def test_a_paused_campaign_claims_nothing_and_its_calls_in_progress_settle(app, client, at):
    campaign_id = create(client, [ANSWERS, ANSWERS_TOO], maxConcurrent=1)
    worker = Worker(app)
    worker.dial()
    assert client.post(f"/voice/campaigns/{campaign_id}/pause", headers=KEY).get_json()["status"] == "paused"
    worker.settle()
    assert worker.contact(ANSWERS).status == "completed"
    assert worker.claim(advance=60) == []
    assert worker.contact(ANSWERS_TOO).status == "pending"
    assert client.post(f"/voice/campaigns/{campaign_id}/resume", headers=KEY).get_json()["status"] == "running"
    assert list(worker.dial().values()) == ["placed"]
    worker.settle()
    assert worker.contact(ANSWERS_TOO).status == "completed"


def test_an_attempt_claimed_before_a_pause_is_withdrawn_undialled(app, client, at):
    campaign_id = create(client, [ANSWERS])
    worker = Worker(app)
    claimed = worker.claim()
    client.post(f"/voice/campaigns/{campaign_id}/pause", headers=KEY)
    assert worker.place(claimed) == {claimed[0]: "withdrawn"}
    contact = worker.contact(ANSWERS)
    assert (contact.status, contact.attempts) == ("pending", 0)
    assert sent(at, "/call") == []


def test_cancel_ends_waiting_contacts_and_settles_the_calls_in_progress(app, client, at):
    campaign_id = create(client, [NO_ANSWER, ANSWERS, ANSWERS_TOO], maxConcurrent=2, retry="1s 1s")
    worker = Worker(app)
    assert list(worker.dial(count=2).values()) == ["placed", "placed"]
    cancelled = client.post(f"/voice/campaigns/{campaign_id}/cancel", headers=KEY).get_json()
    assert cancelled["status"] == "cancelled"
    assert worker.contact(ANSWERS_TOO).status == "cancelled"
    worker.settle()
    assert worker.contact(NO_ANSWER).status == "cancelled"   # unanswered: no retry for a cancelled campaign
    assert worker.contact(ANSWERS).status == "completed"     # its call finished
    assert worker.claim(advance=3600) == []
    assert [len(calls_to(at, number)) for number in (NO_ANSWER, ANSWERS, ANSWERS_TOO)] == [1, 1, 0]


# --- do-not-call at dispatch ----------------------------------------------------------------------------------


def test_a_number_put_on_the_do_not_call_list_after_import_is_not_dialled(app, client, at):
    create(client, [ANSWERS, ANSWERS_TOO])
    added = client.post("/voice/dnc", json={"phone": ANSWERS}, headers=KEY)
    assert added.status_code == 200 and added.get_json()["added"] == [ANSWERS]
    worker = Worker(app)
    outcomes = worker.dial(count=2)
    assert sorted(outcomes.values()) == ["optedOut", "placed"]
    worker.settle()
    assert worker.contact(ANSWERS).status == "optedOut"
    assert worker.contact(ANSWERS_TOO).status == "completed"
    assert calls_to(at, ANSWERS) == [] and len(calls_to(at, ANSWERS_TOO)) == 1


# --- restart safety -------------------------------------------------------------------------------------------


def test_place_run_twice_for_one_attempt_dials_once(app, client, at):
    create(client, [ANSWERS])
    worker = Worker(app)
    (attempt_id,) = worker.claim()
    assert worker.place([attempt_id]) == {attempt_id: "placed"}
    assert worker.place([attempt_id]) == {attempt_id: "taken"}
    worker.settle()
    assert len(calls_for(at, attempt_id)) == 1
    assert worker.contact(ANSWERS).attempts == 1


def test_place_run_at_once_by_two_workers_dials_once(app, client, at):
    create(client, [ANSWERS])
    worker = Worker(app)
    (attempt_id,) = worker.claim()
    outcomes, start = [], threading.Barrier(2)

    def run():
        start.wait()
        outcomes.append(worker.place([attempt_id])[attempt_id])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(outcomes) == ["placed", "taken"]
    assert len(calls_for(at, attempt_id)) == 1


def test_an_attempt_left_claimed_is_withdrawn_after_the_lost_job_time_and_dialled_once(app, client, at):
    create(client, [ANSWERS])
    worker = Worker(app)
    (lost,) = worker.claim()
    claimed_at = worker.now
    assert worker.run(lambda: settling.recover(claimed_at + timedelta(minutes=1))) == 0
    assert worker.attempt(lost).status == "claimed"
    later = claimed_at + settling.LOST_JOB + timedelta(seconds=1)
    worker.run(lambda: settling.recover(later))
    assert worker.attempt(lost).status == "withdrawn"
    contact = worker.contact(ANSWERS)
    assert (contact.status, contact.attempts, contact.next_attempt_at) == ("pending", 0, later)
    assert worker.place([lost]) == {lost: "taken"}   # its job delivered after all: nobody is dialled
    worker.now = later
    (again,) = worker.claim()
    assert worker.place([again]) == {again: "placed"}
    worker.settle()
    assert calls_for(at, lost) == [] and len(calls_for(at, again)) == 1
    assert worker.contact(ANSWERS).status == "completed"


def test_an_attempt_left_dialling_whose_call_at_placed_is_adopted(app, client, at):
    create(client, [ANSWERS])
    worker = Worker(app)
    (attempt_id,) = worker.claim()
    claimed_at = worker.now

    def dial_and_die():
        """What place() did before the worker was killed: the attempt taken, AT asked, its answer never stored."""
        db.session.execute(sa.update(Attempt).where(Attempt.id == attempt_id).values(status="dialling"))
        db.session.commit()
        get_client().call(ANSWERS, client_request_id=request_id(attempt_id))

    worker.run(dial_and_die)
    deadline = time.monotonic() + WAIT
    while worker.run(lambda: db.session.execute(sa.select(Call.session_id).where(
            Call.client_request_id == request_id(attempt_id), Call.ended_at.is_not(None))).scalar()) is None:
        assert time.monotonic() < deadline, "the simulated callee never ended the call"
        time.sleep(0.05)
    worker.run(lambda: settling.recover(claimed_at + timedelta(minutes=1)))
    assert worker.attempt(attempt_id).status == "dialling"   # too early to tell a lost answer from a slow one
    worker.run(lambda: settling.recover(claimed_at + settling.LOST_JOB + timedelta(seconds=1)))
    attempt = worker.attempt(attempt_id)
    assert attempt.status == "placed" and attempt.session_id
    worker.settle()
    assert worker.contact(ANSWERS).status == "completed"
    assert worker.attempt(attempt_id).outcome == "completed"
    assert len(calls_for(at, attempt_id)) == 1


def test_a_placed_call_without_an_outcome_settles_as_transient_after_the_timeout(app, client, at):
    at.answer_delay = 120  # the callee never plays within the test: no notification ever comes
    create(client, [ANSWERS], retry="1s")
    worker = Worker(app)
    (attempt_id,) = worker.dial()
    dialled = worker.attempt(attempt_id).dialled_at
    worker.run(lambda: settling.recover(dialled + timedelta(minutes=59)))
    assert worker.attempt(attempt_id).status == "placed"
    timeout = dialled + timedelta(minutes=app.config["VOICE_CAMPAIGN_OUTCOME_MINUTES"], seconds=1)
    worker.run(lambda: settling.recover(timeout))
    attempt, contact = worker.attempt(attempt_id), worker.contact(ANSWERS)
    assert (attempt.status, attempt.outcome) == ("ended", "transient")
    assert (contact.status, contact.planned, contact.transients) == ("retry", 0, 1)
    assert contact.next_attempt_at == timeout + timedelta(minutes=1)


# --- finishing ------------------------------------------------------------------------------------------------


def test_a_campaign_completes_when_no_contact_waits_or_is_calling(app, client, at):
    campaign_id = create(client, [ANSWERS, NO_ANSWER], retry="1s")
    worker = Worker(app)
    worker.dial(count=2)
    assert worker.run(lambda: settling.expire_and_finish(worker.now)) == 0   # two calls in progress
    worker.settle()
    assert worker.contact(NO_ANSWER).status == "retry"
    assert worker.run(lambda: settling.expire_and_finish(worker.now)) == 0   # one contact waits
    worker.until_due()
    worker.dial(advance=0)
    worker.settle()
    assert worker.run(lambda: settling.expire_and_finish(worker.now)) == 1
    shown = client.get(f"/voice/campaigns/{campaign_id}", headers=KEY).get_json()
    assert shown["status"] == "completed" and shown["finishedAt"]
    assert shown["counts"]["completed"] == 1 and shown["counts"]["unreached"] == 1


def test_not_after_expires_the_contacts_still_waiting(app, client, at):
    not_after = utcnow() + timedelta(minutes=10)
    campaign_id = create(client, [ANSWERS, ANSWERS_TOO], notAfter=not_after.isoformat())
    worker = Worker(app, now=not_after + timedelta(seconds=1))
    assert worker.run(lambda: settling.expire_and_finish(worker.now)) == 1
    assert [worker.contact(number).status for number in (ANSWERS, ANSWERS_TOO)] == ["expired", "expired"]
    assert worker.campaign(campaign_id).status == "completed"
    assert worker.claim(advance=0) == [] and sent(at, "/call") == []


# --- what a maintainer's review found -------------------------------------------------------------------------

BAD_CREDENTIALS = "+254700000401"  # the simulated AT answers 401 for it, as AT does for a wrong key


def test_at_refusing_our_credentials_pauses_the_campaign_and_uses_up_no_contact(app, client, at):
    campaign_id = create(client, [BAD_CREDENTIALS, ANSWERS])
    worker = Worker(app)
    assert "withdrawn" in worker.dial(count=2).values()
    campaign = worker.campaign(campaign_id)
    assert (campaign.status, campaign.paused_reason) == ("paused", "credentials")
    contact = worker.contact(BAD_CREDENTIALS)
    assert (contact.status, contact.attempts, contact.transients) == ("pending", 0, 0)


def test_a_cancel_while_at_is_asked_cancels_the_contact_it_withdraws(app, client, at):
    campaign_id = create(client, [ANSWERS])
    worker = Worker(app)
    attempt_id, = worker.claim()
    client.post(f"/voice/campaigns/{campaign_id}/cancel", headers=KEY)
    # The dial read the campaign as running before the cancel: withdrawing reads it again.
    worker.run(lambda: outcomes.withdraw(attempt_id, worker.now, error="busy"))
    assert worker.contact(ANSWERS).status == "cancelled"


def test_a_contact_planned_again_in_a_cancelled_campaign_is_cancelled_by_housekeeping(app, client, at):
    campaign_id = create(client, [NO_ANSWER], retry="1s")
    worker = Worker(app)
    worker.dial()
    client.post(f"/voice/campaigns/{campaign_id}/cancel", headers=KEY)
    with app.app_context():  # a settle that read the campaign before the cancel planned a retry
        db.session.execute(sa.update(Contact).where(Contact.phone == NO_ANSWER).values(
            status="retry", next_attempt_at=worker.now))
        db.session.commit()
    worker.run(lambda: settling.expire_and_finish(worker.now))
    assert worker.contact(NO_ANSWER).status == "cancelled"


def test_per_minute_holds_over_any_minute_across_a_pause(app, client, at):
    campaign_id = create(client, [f"+2547123000{n:02d}" for n in range(12)], perMinute=3, maxConcurrent=100)
    worker = Worker(app)
    claimed = []
    for second in range(60):
        claimed += worker.claim(advance=1)
        if second == 30:  # a pause and a resume reset nothing of the minute's count
            client.post(f"/voice/campaigns/{campaign_id}/pause", headers=KEY)
            client.post(f"/voice/campaigns/{campaign_id}/resume", headers=KEY)
    assert len(claimed) == 3


def test_a_cost_in_another_currency_pauses_a_budgeted_campaign(app, client, at):
    campaign_id = create(client, [ANSWERS], budget={"amount": 1000, "currency": "USD"})
    worker = Worker(app)
    worker.dial()
    worker.settle()  # the simulated AT charges in KES: the USD budget cannot tell how much was spent
    campaign = worker.campaign(campaign_id)
    assert (campaign.status, campaign.paused_reason) == ("paused", "budget")


def test_contacts_whose_window_never_opens_before_not_after_are_expired_at_import(app, client, at):
    start = utcnow() + timedelta(days=1)
    body = {"contacts": [ANSWERS], "startAt": start.isoformat(), "notAfter": (start + timedelta(days=2)).isoformat(),
            "window": {"from": "08:00", "to": "09:00", "days": ["mon"], "skip": []}}
    # Pick a start such that no Monday falls in the two days.
    while any((start + timedelta(days=n)).astimezone(ZoneInfo("Africa/Nairobi")).weekday() == 0 for n in range(3)):
        start += timedelta(days=1)
        body.update(startAt=start.isoformat(), notAfter=(start + timedelta(days=2)).isoformat())
    response = client.post("/voice/campaigns", json=body, headers=KEY)
    assert response.status_code == 201
    assert worker_contact_status(app, ANSWERS) == "expired"


def worker_contact_status(app, number):
    return Worker(app).contact(number).status


def test_an_answer_under_a_key_the_flow_does_not_save_is_ignored(app):
    from voice.campaigns import progress

    flow = app.extensions["voice_flow"]
    forged = [({"step": "goodbye", "save": "anything"}, {"dtmfDigits": "1", "isActive": "1"})]
    assert progress.replay(flow, None, forged).answers == {}

"""Campaigns end to end with real processes: the app under gunicorn, the Procfile's worker, a simulated AT.

The simulated AT runs in this process and plays each callee against the served app, so a test
sees every /call the worker sent (each with its attempt's clientRequestId) and every call that
could not be played to its end.
"""

import csv
import io
import logging
import os
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from unittest import mock

import requests
import sqlalchemy as sa

from flask_migrate import upgrade

from app import create_app
from tests.gunicorn_helpers import log_of, served, service_env, start_worker, stop, worker_log_of, worker_process
from tests.helpers import AT_KEY, KEY, WEBHOOK_TOKEN, postgres_url, sent
from voice.at import simulated
from voice.at.simulated import SimulatedAT
from voice.at.simulator import SimulatedCall
from voice.jobs import storage_for
from voice.store.db import db

SURVEY = """\
start:
  inbound: ask
  outbound: ask
ends: [confirmed]
steps:
  ask:
    menu:
      prompt:
        say: Hello {name}. Press 1 to confirm your appointment, or 2 to be called no more.
      save: confirm
      options:
        "1": confirmed
        "2": stop
      timeout: 5
      retries: 1
      onFail: bye
  confirmed:
    - say: Thank you, see you then.
  stop:
    - optOut: {}
    - say: You will not be called again.
  bye:
    - say: Goodbye.
"""

# Each simulated callee, and how its contact ends with retry "1s 1s": status, attempts, last hangup cause.
CALLEES = {
    "+254712345678": ("completed", 1, "NORMAL_CLEARING"),     # answers and presses 1
    "+254700000480": ("unreached", 3, "NO_ANSWER"),
    "+254700000486": ("unreached", 3, "USER_BUSY"),
    "+254700000404": ("failed", 1, "UNALLOCATED_NUMBER"),
    "+254700000487": ("breakoff", 1, "NORMAL_CLEARING"),      # hangs up at the first question
    "+254700000102": ("optedOut", 1, "NORMAL_CLEARING"),      # presses 2
}


class Live(dict):
    """The simulated AT's calls in progress (its `live`), remembering the most there ever were at once.

    A call is in from the moment its callee answers (or AT gives up ringing) until its final
    notification is about to be sent (see ending_calls): within the time its attempt holds a
    place of the campaign's maxConcurrent, which ends when that notification is settled.
    """

    def __init__(self):
        super().__init__()
        self.most = 0
        self._lock = threading.Lock()

    def __setitem__(self, key, value):
        with self._lock:
            super().__setitem__(key, value)
            self.most = max(self.most, len(self))

    def pop(self, key, *default):
        with self._lock:
            return super().pop(key, *default)


class Callees(SimulatedAT):
    """The simulated AT, counting its calls live at once and the calls that could not be played to their end."""

    def __init__(self, call_delay=0.0, **options):
        super().__init__(api_key=AT_KEY, token=WEBHOOK_TOKEN, **options)
        self.call_delay = call_delay  # how long AT takes to answer each /call
        self.live = Live()
        self.stopped = []      # warnings: a call whose callback the app did not answer with 200 and good XML
        self.transcript = []   # what the callees heard and did

    def answer_call(self, form):
        if self.call_delay:
            time.sleep(self.call_delay)
        return super().answer_call(form)

    def dialled(self):
        """The clientRequestIds of every /call received, in order."""
        return [r["form"].get("clientRequestId") for r in self.requests if r["path"] == "/call"]


def ending_calls(fake):
    """SimulatedCall, its calls leaving fake.live as their final notification is about to be sent."""

    class EndingCall(SimulatedCall):
        def finish(self):
            fake.live.pop(self.session_id, None)
            return super().finish()

        def unanswered(self, cause="USER_BUSY"):
            fake.live.pop(self.session_id, None)
            return super().unanswered(cause)

    return EndingCall


class Transcript(logging.Handler):
    """Collects the simulated AT's lines: its calls' transcripts, and a warning for each call it could not play."""

    def __init__(self, fake):
        super().__init__(logging.INFO)
        self.fake = fake

    def emit(self, record):
        (self.fake.stopped if record.levelno >= logging.WARNING else self.fake.transcript).append(record.getMessage())


@contextmanager
def simulated_callees(**options):
    """A Callees AT, its transcripts in `.transcript`, its warnings in `.stopped`, its live calls counted."""
    fake = Callees(**options)
    handler = Transcript(fake)
    logger = logging.getLogger("voice.at.simulated")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    fake.start()
    try:
        with mock.patch.object(simulated, "SimulatedCall", ending_calls(fake)):
            yield fake
    finally:
        fake.stop()
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def campaign_service(workdir, fake, **changes):
    """The app under gunicorn against `fake`, whose callees call back to it; yields (base URL, environment)."""
    env = service_env(workdir, fake.url, **changes)
    fake.service_url = f"http://127.0.0.1:{env['PORT']}"
    with served(env, workdir) as (base, _):
        yield base, env


def create(base, spec, contacts_csv):
    """POST /voice/campaigns as a form with the contacts as a CSV file; the answer's JSON."""
    answer = requests.post(base + "/voice/campaigns", headers=KEY, data=spec, timeout=60,
                           files={"contacts": ("contacts.csv", contacts_csv.encode(), "text/csv")})
    assert answer.status_code == 201, answer.text
    return answer.json()


def wait_completed(base, campaign_id, seconds, workdir, names=("worker",)):
    """Poll the campaign until it is `completed`; fail with its figures and the logs past `seconds`."""
    deadline = time.monotonic() + seconds
    shown = None
    while time.monotonic() < deadline:
        shown = requests.get(f"{base}/voice/campaigns/{campaign_id}", headers=KEY, timeout=10).json()
        if shown["status"] == "completed":
            return shown
        time.sleep(0.25)
    logs = "\n".join(f"--- {name}.log\n{worker_log_of(workdir, name)[-4000:]}" for name in names)
    raise AssertionError(f"campaign {campaign_id} not completed within {seconds} s: {shown}\n{logs}\n"
                         f"--- gunicorn.log\n{log_of(workdir)[-3000:]}")


def contacts_of(base, campaign_id):
    """Every contact of the campaign, through the paged API, by phone."""
    found, page = {}, 1
    while page:
        answer = requests.get(f"{base}/voice/campaigns/{campaign_id}/contacts?page={page}", headers=KEY,
                              timeout=10).json()
        found.update((contact["phone"], contact) for contact in answer["contacts"])
        page = answer["next"]
    return found


def csv_rows(base, campaign_id, name):
    answer = requests.get(f"{base}/voice/campaigns/{campaign_id}/{name}.csv", headers=KEY, timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.text)))


def engine_of(url):
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def attempts_in(database_url, campaign_id):
    """The campaign's attempt rows, straight from its database."""
    engine = engine_of(database_url)
    try:
        with engine.connect() as connection:
            return [row._asdict() for row in connection.execute(sa.text(
                "SELECT id, contact_id, number, status, outcome, error, dialled_at, ended_at, session_id "
                "FROM campaign_attempts WHERE campaign_id = :c ORDER BY id"), {"c": campaign_id})]
    finally:
        engine.dispose()


def test_a_campaign_from_a_csv_runs_to_completed_under_gunicorn_and_the_worker(tmp_path):
    flow = tmp_path / "survey.yaml"
    flow.write_text(SURVEY)
    names = {phone: f"Name{n}" for n, phone in enumerate(CALLEES)}
    contacts = "phone,name\n" + "".join(f"{phone},{name}\n" for phone, name in names.items())
    with simulated_callees(answer_delay=0.05) as fake, \
            campaign_service(tmp_path, fake, VOICE_FLOW_FILE=flow) as (base, env), \
            worker_process(env, tmp_path, threads=4):
        created = create(base, {"name": "appointments", "retry": "1s 1s", "perMinute": "600",
                                "maxConcurrent": "6"}, contacts)
        assert created["accepted"] == len(CALLEES) and created["refused"] == []
        campaign_id = created["campaign"]["id"]
        shown = wait_completed(base, campaign_id, 60, tmp_path)
        found = contacts_of(base, campaign_id)
        attempts = csv_rows(base, campaign_id, "attempts")
        results = {row["phone"]: row for row in csv_rows(base, campaign_id, "results")}
        time.sleep(0.5)  # the last callee's final event is posted after the notification that settled it

    assert shown["finishedAt"] and shown["inProgress"] == 0
    assert {status: n for status, n in shown["counts"].items() if n} == Counter(s for s, _, _ in CALLEES.values())
    for phone, (status, tries, cause) in CALLEES.items():
        contact = found[phone]
        assert (contact["status"], contact["attempts"], contact["lastHangupCause"]) == (status, tries, cause), contact
        assert contact["vars"] == {"name": names[phone]}
        assert len(contact["sessionIds"]) == tries
        assert results[phone]["status"] == status and results[phone]["name"] == names[phone]
    assert found["+254712345678"]["answers"] == {"confirm": "1"}
    assert found["+254700000102"]["answers"] == {"confirm": "2"}
    assert found["+254700000487"]["answers"] == {}

    by_phone = {}
    for row in attempts:
        by_phone.setdefault(row["phone"], []).append(row)
    assert set(by_phone) == set(CALLEES)
    for phone, (status, tries, cause) in CALLEES.items():
        rows = by_phone[phone]
        assert [int(row["attempt"]) for row in rows] == list(range(1, tries + 1))
        assert all(row["dialledAt"] and row["endedAt"] and row["sessionId"] for row in rows), rows
        assert [row["outcome"] for row in rows] == ["retry"] * (tries - 1) + [status]
        assert {row["hangupCause"] for row in rows} == {cause}
    sessions = [row["sessionId"] for row in attempts]
    assert len(set(sessions)) == len(sessions) == sum(tries for _, tries, _ in CALLEES.values())
    assert {row["currency"] for row in attempts if row["cost"]} == {"KES"}
    assert float(results["+254712345678"]["cost"]) > 0

    # Every attempt was dialled once with its own clientRequestId, and every callback of every call was answered.
    dialled = fake.dialled()
    assert len(dialled) == len(set(dialled)) == len(attempts)
    assert all(request_id.startswith("campaign-attempt-") for request_id in dialled)
    assert not fake.stopped, fake.stopped
    assert len(fake.calls) == len(attempts)
    assert {call["sessionId"] for call in fake.calls} == set(sessions)
    for phone, name in names.items():  # each contact heard its own name, where it was answered
        heard = any(f"Hello {name}. Press 1" in line for line in fake.transcript)
        assert heard == (CALLEES[phone][0] not in ("unreached", "failed")), phone
    assert " 500 " not in log_of(tmp_path) and "Traceback" not in worker_log_of(tmp_path)


def calls_in(database_url):
    """The stored calls: sessionId -> whether it ended."""
    engine = engine_of(database_url)
    try:
        with engine.connect() as connection:
            return {session: ended is not None for session, ended in connection.execute(
                sa.text("SELECT session_id, ended_at FROM calls"))}
    finally:
        engine.dispose()


def attempt_states(database_url, campaign_id):
    """How many of the campaign's attempts are in each (status, outcome)."""
    return Counter((row["status"], row["outcome"]) for row in attempts_in(database_url, campaign_id))


def test_kill_9_of_the_worker_mid_dispatch_dials_no_attempt_twice_and_every_contact_ends(tmp_path):
    """AT answers each /call in 0.3 s, so the kill leaves dials whose answer never reached the store."""
    phones = [f"+2547123{n:05d}" for n in range(60)]
    flow = tmp_path / "survey.yaml"
    flow.write_text(SURVEY)
    with simulated_callees(answer_delay=0.1, call_delay=0.3) as fake, \
            campaign_service(tmp_path, fake, VOICE_FLOW_FILE=flow, VOICE_CAMPAIGN_OUTCOME_MINUTES="0.05",
                             VOICE_MAX_DIALOUTS_IN_FLIGHT="10") as (base, env):
        first = start_worker(env, tmp_path, threads=10, name="worker1")
        try:
            created = create(base, {"name": "killed", "retry": "none", "perMinute": "6000", "maxConcurrent": "10"},
                             "phone\n" + "\n".join(phones) + "\n")
            campaign_id = created["campaign"]["id"]
            deadline = time.monotonic() + 30
            while len(fake.dialled()) < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        finally:
            stop(first)
        dialled_before = len(fake.dialled())
        assert 0 < dialled_before < len(phones), "the worker was not killed mid-dispatch"
        left = attempt_states(env["DATABASE_URL"], campaign_id)
        assert any(status in ("claimed", "dialling", "placed") for status, _ in left), left
        time.sleep(3.5)  # a supervisor's restart delay; past it, the lost dials' outcome is due
        with worker_process(env, tmp_path, threads=10, name="worker2"):
            shown = wait_completed(base, campaign_id, 150, tmp_path, names=("worker1", "worker2"))
            found = contacts_of(base, campaign_id)
        attempts = attempts_in(env["DATABASE_URL"], campaign_id)
        time.sleep(0.5)
    print(f"dialled before the kill: {dialled_before}; attempts then: {dict(left)}; "
          f"after: {dict(Counter((a['status'], a['outcome'], a['error']) for a in attempts))}")

    dialled = fake.dialled()
    assert len(dialled) == len(set(dialled)), [i for i, n in Counter(dialled).items() if n > 1]
    # Each callee answered its first call: a dial whose answer the kill lost is adopted from its call's
    # notifications (they carry its clientRequestId), not settled as failed and dialled again.
    twice = {phone: n for phone, n in Counter(form["to"] for form in sent(fake, "/call")).items() if n > 1}
    assert not twice, f"called again after the call they answered: {twice}"
    # An attempt was dialled exactly when it says so: none withdrawn after its dial, none dialled unrecorded.
    assert set(dialled) == {f"campaign-attempt-{a['id']}" for a in attempts if a["status"] != "withdrawn"}
    assert all(a["status"] in ("ended", "withdrawn") for a in attempts), attempts
    assert shown["counts"]["completed"] == len(phones) and set(found) == set(phones)
    assert all(contact["status"] == "completed" for contact in found.values())
    assert not fake.stopped, fake.stopped  # the app answered every callback of every call
    stored = calls_in(env["DATABASE_URL"])
    assert {call["sessionId"] for call in fake.calls} <= {s for s, ended in stored.items() if ended}


def test_workers_started_together_on_a_fresh_postgresql_each_get_the_queue(tmp_path):
    """Two workers of a new deployment start at once after the release step: neither may die creating the queue."""
    database_url = postgres_url()
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "VOICE_API_KEY": "k" * 24})
    with app.app_context():
        upgrade()  # the Procfile's release step
        db.engine.dispose()
    together = threading.Barrier(2)
    failures = []

    def start_worker_storage():
        together.wait()
        try:
            storage_for(app)
        except Exception as exc:  # noqa: BLE001 - what a worker would die of at start
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=start_worker_storage) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


def most_at_once(intervals):
    """The most intervals (start, end) that overlap at any moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same moment
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def test_two_workers_on_postgresql_dial_each_contact_once_within_max_concurrent(tmp_path):
    MOST = 20
    database_url = postgres_url()
    phones = [f"+2547124{n:05d}" for n in range(500)]
    flow = tmp_path / "survey.yaml"
    flow.write_text(SURVEY)
    with simulated_callees(answer_delay=0.05) as fake, \
            campaign_service(tmp_path, fake, DATABASE_URL=database_url, VOICE_FLOW_FILE=flow,
                             VOICE_CAMPAIGN_PER_MINUTE="60000", VOICE_CAMPAIGN_MAX_CONCURRENT="1000",
                             VOICE_MAX_DIALOUTS_IN_FLIGHT="8", VOICE_RATE_LIMIT_PER_KEY="100000 per minute",
                             WEB_CONCURRENCY="2") as (base, env), \
            worker_process(env, tmp_path, threads=8, name="worker1") as first, \
            worker_process(env, tmp_path, threads=8, name="worker2", after=(first, "worker1")):
        created = create(base, {"name": "two workers", "retry": "none", "perMinute": "60000",
                                "maxConcurrent": str(MOST)},
                         "phone\n" + "\n".join(phones) + "\n")
        assert created["accepted"] == len(phones)
        campaign_id = created["campaign"]["id"]
        shown = wait_completed(base, campaign_id, 150, tmp_path, names=("worker1", "worker2"))
        attempts = attempts_in(database_url, campaign_id)
        time.sleep(0.5)
    placed = [a for a in attempts if a["status"] != "withdrawn"]
    print(f"{len(attempts)} attempts, {len(placed)} dialled; at most {fake.live.most} calls live at once; "
          f"{dict(Counter((a['status'], a['outcome'], a['error']) for a in attempts))}")

    dialled = fake.dialled()
    assert len(dialled) == len(set(dialled)) == len(phones)
    assert set(dialled) == {f"campaign-attempt-{a['id']}" for a in placed}
    firsts = Counter(a["contact_id"] for a in placed if a["number"] == 1)
    assert len(firsts) == len(phones) and set(firsts.values()) == {1}
    assert shown["counts"]["completed"] == len(phones)
    assert not fake.stopped, fake.stopped
    # Never more than maxConcurrent calls at once: as AT saw them, and as the attempts' times say.
    assert MOST / 4 < fake.live.most <= MOST
    assert MOST / 4 < most_at_once([(a["dialled_at"], a["ended_at"]) for a in placed]) <= MOST
    for name in ("worker1", "worker2"):  # both took part, and neither failed
        log = worker_log_of(tmp_path, name)
        assert "AT queued call" in log and "Traceback" not in log

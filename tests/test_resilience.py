"""Resilience under real gunicorn: killed processes, a failing AT, a locked database. Bounded in time."""

import os
import signal
import sqlite3
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.gunicorn_helpers import free_port, served, service_env
from tests.helpers import EVENTS, INSTRUCT, KEY

EVENT = {"isActive": "0", "direction": "Inbound", "callSessionState": "Completed", "durationInSeconds": "12",
         "amount": "1.0", "currencyCode": "KES", "hangupCause": "NORMAL_CLEARING", "callerNumber": "+254712345678",
         "destinationNumber": "+254711000000"}
ANSWERED = {"isActive": "1", "direction": "Inbound", "callerNumber": "+254712345678",
            "destinationNumber": "+254711000000"}


def stored_sessions(workdir):
    with sqlite3.connect(workdir / "voice.sqlite3") as connection:
        return {row[0] for row in connection.execute(
            "SELECT calls.session_id FROM events JOIN calls ON calls.id = events.call_id")}


class Burst:
    """Events posted from several threads until stopped; remembers which ones were acknowledged."""

    def __init__(self, base, prefix):
        self.base, self.prefix = base, prefix
        self.acknowledged, self.failed = [], 0
        self.running = True
        self.threads = [threading.Thread(target=self.post, args=(n,)) for n in range(6)]

    def post(self, worker):
        count = 0
        while self.running:
            count += 1
            session = f"ATVId_{self.prefix}_{worker}_{count}"
            try:
                response = requests.post(self.base + EVENTS, data=dict(EVENT, sessionId=session), timeout=5)
                if response.status_code == 200 and response.text == "OK":
                    self.acknowledged.append(session)
                else:
                    self.failed += 1
            except requests.RequestException:
                self.failed += 1
                time.sleep(0.05)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        for thread in self.threads:
            thread.join()


def workers_of(master):
    return [int(pid) for pid in subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True,
                                                text=True).stdout.split()]


def answers(base, seconds):
    """Seconds until /voice/instruct answers XML again (fails past `seconds`)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            response = requests.post(base + INSTRUCT, data=dict(ANSWERED, sessionId="ATVId_probe"), timeout=2)
            if response.status_code == 200:
                ET.fromstring(response.content)
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the service did not answer again within {seconds} s")


def test_kill_9_of_a_worker_loses_no_acknowledged_event(tmp_path, simulated_at_url):
    with served(service_env(tmp_path, simulated_at_url), tmp_path) as (base, master):
        with Burst(base, "w") as burst:
            time.sleep(1.5)
            os.kill(workers_of(master)[0], signal.SIGKILL)
            time.sleep(1.5)
        assert answers(base, 10) < 10
        assert len(burst.acknowledged) > 20
    missing = set(burst.acknowledged) - stored_sessions(tmp_path)
    assert not missing, f"{len(missing)} acknowledged events are not stored"


def test_kill_9_of_the_master_loses_no_acknowledged_event_and_a_restart_serves_again(tmp_path, simulated_at_url):
    env = service_env(tmp_path, simulated_at_url)
    with served(env, tmp_path) as (base, master):
        with Burst(base, "m") as burst:
            time.sleep(1.5)
            orphans = workers_of(master)
            master.send_signal(signal.SIGKILL)
            master.wait()
            time.sleep(1.0)
        for pid in orphans:  # what a supervisor would clean up before starting the service again
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert len(burst.acknowledged) > 20
    missing = set(burst.acknowledged) - stored_sessions(tmp_path)
    assert not missing, f"{len(missing)} acknowledged events are not stored"
    env["PORT"] = str(free_port())
    started = time.monotonic()
    with served(env, tmp_path, migrate=False) as (base, _):
        assert answers(base, 10) < 10
        assert time.monotonic() - started < 20
        listed = requests.get(f"{base}/voice/calls?limit=1", headers=KEY, timeout=5).json()
        assert listed["calls"]


@pytest.mark.parametrize("mode, phone, code", [
    ("down", "254712345678", "at_unreachable"),
    ("refusing", "254700000401", "at_rejected"),
    ("erroring", "254700000500", "at_rejected"),
    ("hanging", "254700000504", "at_timeout"),
])
def test_a_failing_at_answers_each_dialout_within_the_bound_and_callbacks_go_on(tmp_path, simulated_at_url, mode, phone,
                                                                                   code):
    url = f"http://127.0.0.1:{free_port()}" if mode == "down" else simulated_at_url
    env = service_env(tmp_path, url, AT_TIMEOUT_SECONDS="3")
    with served(env, tmp_path) as (base, _):
        def dial():
            started = time.monotonic()
            response = requests.post(f"{base}/voice/invoke-call", data={"phone": phone}, headers=KEY, timeout=20)
            return response, time.monotonic() - started

        with ThreadPoolExecutor(max_workers=6) as pool:
            dials = [pool.submit(dial) for _ in range(6)]
            slowest_callback = 0.0
            for n in range(20):
                started = time.monotonic()
                response = requests.post(base + INSTRUCT, data=dict(ANSWERED, sessionId=f"ATVId_cb{n}"), timeout=5)
                assert response.status_code == 200 and ET.fromstring(response.content).tag == "Response"
                slowest_callback = max(slowest_callback, time.monotonic() - started)
            results = [f.result() for f in dials]
    assert slowest_callback < 2, f"a callback waited {slowest_callback:.2f} s behind failing dial-outs"
    for response, took in results:
        assert took < 12
        if response.status_code == 503:
            assert response.json()["error"] == "busy"  # beyond the in-flight cap: refused at once
            continue
        assert response.status_code == 500 and response.json()["error"] == code


def test_a_locked_database_gives_503_on_events_xml_on_instruct_and_recovers(tmp_path, simulated_at_url):
    with served(service_env(tmp_path, simulated_at_url, DATABASE_TIMEOUT_SECONDS="0.5"), tmp_path) as (base, _):
        locker = sqlite3.connect(tmp_path / "voice.sqlite3", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            event = requests.post(base + EVENTS, data=dict(EVENT, sessionId="ATVId_l1"),
                                  timeout=10)
            assert event.status_code == 503 and event.headers["Retry-After"]
            menu = requests.post(base + INSTRUCT, data=dict(ANSWERED, sessionId="ATVId_l2"), timeout=10)
            assert menu.status_code == 200 and ET.fromstring(menu.content).find("GetDigits") is not None
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        again = requests.post(base + EVENTS, data=dict(EVENT, sessionId="ATVId_l1"),
                              timeout=10)
        assert again.text == "OK"
    assert "ATVId_l1" in stored_sessions(tmp_path)


def test_every_answered_instruct_callback_is_stored_through_a_graceful_stop(tmp_path, simulated_at_url):
    sessions = [f"ATVId_gs{n}" for n in range(300)]

    def post(session):
        response = requests.post(base + INSTRUCT, data=dict(ANSWERED, sessionId=session), timeout=10)
        assert response.status_code == 200 and ET.fromstring(response.content).tag == "Response"

    with served(service_env(tmp_path, simulated_at_url), tmp_path) as (base, master):
        with ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(post, sessions))
        master.send_signal(signal.SIGTERM)  # what a deploy does; served() then waits for the exit
        master.wait(timeout=20)
    assert set(sessions) <= stored_sessions(tmp_path)

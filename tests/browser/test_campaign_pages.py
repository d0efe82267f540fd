"""The campaign pages in a real browser: headless Chromium against the app under gunicorn, a hostile contact list, a
new campaign previewed then confirmed, pause then resume, and the counts moving without a reload.

The campaign moves by changes made to its database here, as the worker's settling would make them (no worker runs,
so nothing else moves it). Set VOICE_SCREENSHOTS=docs/console to write the pages' screenshots there.
"""

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
import sqlalchemy as sa
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.common.by import By

from tests.browser import test_console
from tests.browser.test_console import chromium_without_javascript, csp_violations, screenshot, sign_in, wait
from tests.gunicorn_helpers import free_port, served, service_env
from tests.helpers import KEY
from voice.campaigns.rules import STATUSES

VIEWER_KEY = "viewer-key-0123456789"
browser = test_console.browser  # the same headless Chromium fixture
HOSTILE = "<img src=x onerror=window.pwned=1>"
SURVEY = "satisfied"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The service as `make run` serves it (simulated AT, SQLite, no worker); its base URL and its database."""
    folder = tmp_path_factory.mktemp("campaign-pages")
    env = service_env(folder, "unused", VOICE_SIMULATE="auto", VOICE_SIMULATED_AT_PORT=free_port(),
                      SECRET_KEY="browser-secret", VOICE_API_KEYS=f"board:{VIEWER_KEY}:viewer", WEB_CONCURRENCY="2",
                      VOICE_CONSOLE_SIGNIN_LIMIT="100 per minute", VOICE_ALLOWED_COUNTRY_CODES="254")
    for name in ("AT_USERNAME", "AT_API_KEY", "AT_VOICE_NUMBER", "AT_VOICE_API_URL", "AT_WEBRTC_API_URL"):
        env.pop(name)
    with served(env, folder) as (url, _):
        engine = sa.create_engine(env["DATABASE_URL"])
        yield url, engine
        engine.dispose()


def create(base, name, contacts, **spec):
    """A campaign created through the API; its id."""
    response = requests.post(base + "/voice/campaigns", json={"name": name, "contacts": contacts, **spec},
                             headers=KEY, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["campaign"]["id"]


def settle(engine, campaign_id, count, status="completed", answers=None):
    """Move `count` pending contacts of the campaign to `status`, each with an ended attempt, as the worker would."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with engine.begin() as db:
        ids = db.execute(sa.text("SELECT id FROM campaign_contacts WHERE campaign_id = :c AND status = 'pending' "
                                 "ORDER BY id LIMIT :n"), {"c": campaign_id, "n": count}).scalars().all()
        for n, contact_id in enumerate(ids):
            answer = answers[n % len(answers)] if answers else None
            db.execute(sa.text("UPDATE campaign_contacts SET status = :s, attempts = 1, next_attempt_at = NULL, "
                               "last_state = 'Completed', answers = :a WHERE id = :i"),
                       {"s": status, "a": json.dumps({SURVEY: answer}) if answer else None, "i": contact_id})
            db.execute(sa.text("INSERT INTO campaign_attempts (campaign_id, contact_id, number, status, claimed_at, "
                               "dialled_at, ended_at, state, duration, amount, currency, outcome) VALUES (:c, :i, 1, "
                               "'ended', :t, :t, :t, 'Completed', 20, 4, 'KES', :s)"),
                       {"c": campaign_id, "i": contact_id, "s": status, "t": now - timedelta(minutes=n * 37 % 39)})
        # The campaign started 40 minutes ago, so its calls were spread over them.
        db.execute(sa.text("UPDATE campaigns SET answer_keys = :k, created_at = :t, start_at = :t WHERE id = :c"),
                   {"k": f'["{SURVEY}"]', "c": campaign_id, "t": now - timedelta(minutes=40)})


def no_alert(browser, where):
    try:
        alert = browser.switch_to.alert
        pytest.fail(f"{where} opened an alert: {alert.text}")
    except NoAlertPresentException:
        pass


def test_a_new_campaign_is_previewed_then_created(browser, service, tmp_path):
    base, _ = service
    listing = tmp_path / "contacts.csv"
    listing.write_text("phone,name,visit\n+254712345678,Amina,Monday\n+254700000102,Baraka,Tuesday\n"
                       "+254712345678,Amina,Monday\n12345,Juma,Friday\n+447700900123,Dalia,Monday\n"
                       "+254700000109,Chebet,Monday\n")
    sign_in(browser, base)
    browser.find_element(By.ID, "nav-campaigns").click()
    browser.find_element(By.ID, "new-campaign").click()
    browser.find_element(By.NAME, "contacts").send_keys(str(listing))
    browser.find_element(By.NAME, "name").send_keys("Clinic survey")
    browser.find_element(By.NAME, "retry").clear()
    browser.find_element(By.NAME, "retry").send_keys("1m 2m")
    browser.find_element(By.NAME, "budget_amount").send_keys("500")
    browser.find_element(By.NAME, "budget_currency").send_keys("KES")
    browser.find_element(By.ID, "preview-button").click()
    wait(browser, lambda b: b.find_elements(By.ID, "preview-summary"))
    assert browser.find_element(By.ID, "accepted").text == "3"
    reasons = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#refused tbody tr")]
    assert len(reasons) == 3 and "duplicate" in reasons[0] and "7 to 15 digits" in reasons[1] and "not allowed" in reasons[2]
    screenshot(browser, "campaign-new")
    browser.find_element(By.ID, "confirm-button").click()
    wait(browser, lambda b: b.find_elements(By.ID, "campaign-name"))
    assert browser.find_element(By.ID, "campaign-name").text == "Clinic survey"
    assert "3 contacts accepted, 3 refused" in browser.find_element(By.TAG_NAME, "main").text
    assert "KES 0.00 of 500.00" in browser.find_element(By.ID, "campaign-cost").text
    assert csp_violations(browser) == []


def test_pause_then_resume(browser, service):
    base, _ = service
    campaign_id = create(base, "Payment reminder", ["+254712345671", "+254712345672"])
    sign_in(browser, base)
    browser.get(f"{base}/voice/console/campaigns/{campaign_id}")
    browser.find_element(By.CSS_SELECTOR, "#pause button").click()
    wait(browser, lambda b: b.find_element(By.ID, "campaign-status").text == "paused")
    assert "paused: operator" in browser.find_element(By.ID, "paused-reason").text
    browser.find_element(By.CSS_SELECTOR, "#resume button").click()
    wait(browser, lambda b: b.find_element(By.ID, "campaign-status").text == "running")
    assert requests.get(f"{base}/voice/campaigns/{campaign_id}", headers=KEY, timeout=5).json()["status"] == "running"
    sign_in(browser, base, label="board", key=VIEWER_KEY)
    browser.get(f"{base}/voice/console/campaigns/{campaign_id}")
    assert not browser.find_elements(By.CSS_SELECTOR, "#pause, #cancel, #resume")
    assert csp_violations(browser) == []


def test_the_counts_move_without_a_reload_while_it_runs(browser, service):
    base, engine = service
    campaign_id = create(base, "Satisfaction survey", [f"+2547123450{n:02d}" for n in range(40)],
                         budget={"amount": 400, "currency": "KES"}, window="08:00-20:00")
    settle(engine, campaign_id, 12, answers=["1", "1", "2", "1", "3"])
    settle(engine, campaign_id, 3, status="unreached")
    sign_in(browser, base)
    browser.get(f"{base}/voice/console/campaigns/{campaign_id}")
    wait(browser, lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-charts") == "3")
    assert browser.find_element(By.ID, "campaign-done").text == "15 of 40"
    browser.execute_script("window.sameDocument = true;")
    settle(engine, campaign_id, 10, answers=["2", "1"])
    wait(browser, lambda b: b.find_element(By.ID, "campaign-done").text == "25 of 40", seconds=15)
    assert browser.execute_script("return window.sameDocument;") is True  # updated in place, not reloaded
    completed = ("var c = Chart.getChart(document.getElementById('chart-statuses'));"
                 f"return c.data.datasets[0].data[{STATUSES.index('completed')}];")
    wait(browser, lambda b: b.execute_script(completed) == 22, seconds=5)  # the chart follows the new data
    answers = ("return Chart.getChart(document.querySelector('canvas[data-question=\"satisfied\"]'))"
               ".data.datasets[0].data.reduce(function (a, b) { return a + b; }, 0);")
    wait(browser, lambda b: b.execute_script(answers) == 22, seconds=5)
    attempts = "return Chart.getChart(document.getElementById('chart-attempts')).data.datasets[0].data;"
    # Attempts over time are refreshed less often (every 15 s): their part counts every attempt.
    wait(browser, lambda b: sum(b.execute_script(attempts)) == 25, seconds=25)
    assert browser.execute_script("return window.sameDocument;") is True
    for chart in ("chart-statuses", "chart-attempts"):
        assert browser.execute_script("var c = document.getElementById(arguments[0]); "
                                      "return !!Chart.getChart(c) && c.width > 0;", chart), chart
    screenshot(browser, "campaign")
    browser.get(base + "/voice/console/campaigns")
    screenshot(browser, "campaigns")
    assert csp_violations(browser) == []


def test_a_hostile_contact_list_shows_as_text(browser, service, tmp_path):
    base, engine = service
    campaign_id = create(base, HOSTILE, [{"phone": "+254712000001", "vars": {"name": HOSTILE, "note": "<script>window.pwned=2</script>"}},
                                         {"phone": "+254712000002", "vars": {"name": "Baraka"}}])
    settle(engine, campaign_id, 1, answers=['"><svg onload=window.pwned=3>'])
    sign_in(browser, base)
    for path in ("/voice/console/campaigns", f"/voice/console/campaigns/{campaign_id}"):
        browser.get(base + path)
        time.sleep(0.5)
        no_alert(browser, path)
        assert browser.execute_script("return window.pwned;") is None, path
        assert not browser.find_elements(By.CSS_SELECTOR, "main img, main svg, main script"), path
    assert browser.find_element(By.ID, "campaign-name").text == HOSTILE  # as the text it is
    variables = browser.find_element(By.CSS_SELECTOR, "#contact-list tbody tr .vars").text
    assert HOSTILE in variables and "<script>window.pwned=2</script>" in variables
    assert '"><svg onload=window.pwned=3>' in browser.find_element(By.ID, "answer-tables").text
    wait(browser, lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-charts") == "3")
    # A hostile file in the new campaign's preview: its refused rows are shown as text too.
    listing = tmp_path / "hostile.csv"
    listing.write_text(f'phone,name\n"<script>window.pwned=4</script>",x\n+254712000003,"{HOSTILE}"\n')
    browser.get(base + "/voice/console/campaigns/new")
    browser.find_element(By.NAME, "contacts").send_keys(str(listing))
    browser.find_element(By.ID, "preview-button").click()
    refused = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#refused tbody tr"))
    assert "<script>window.pwned=4</script>" in refused[0].text
    no_alert(browser, "the preview")
    assert browser.execute_script("return window.pwned;") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")
    assert csp_violations(browser) == []


def test_the_campaign_page_works_without_javascript(service):
    base, _ = service
    campaign_id = create(base, "No script", ["+254712345690"])
    driver = chromium_without_javascript()
    try:
        sign_in(driver, base)
        driver.get(f"{base}/voice/console/campaigns/{campaign_id}")
        assert "0 of 1" in driver.find_element(By.ID, "campaign-figures").text
        assert "+254712345690" in driver.find_element(By.ID, "contact-list").text
        driver.find_element(By.CSS_SELECTOR, "#pause button").click()
        # The form posts and the campaign's page comes back: wait for it rather than read the old one.
        wait(driver, lambda browser: [found.text for found in browser.find_elements(By.ID, "campaign-status")]
             == ["paused"])
    except TimeoutException:
        pytest.fail("the page did not work without JavaScript: " + driver.current_url)
    finally:
        driver.quit()

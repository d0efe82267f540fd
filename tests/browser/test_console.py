"""The console in a real browser: headless Chromium against the app under gunicorn with the simulated AT.

Set VOICE_SCREENSHOTS=docs/console to write a screenshot of each page there.
"""

import os
import shutil
import time
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.gunicorn_helpers import ROOT, free_port, served, service_env
from tests.helpers import API_KEY, EVENTS, KEY

VIEWER_KEY = "viewer-key-0123456789"
DEFAULT_STEPS = ("welcome", "hours", "agent", "voicemail", "goodbye", "agent_dials")
HOSTILE = {"sessionId": "ATVId_hostile", "isActive": "0", "direction": "Inbound", "callSessionState": "Completed",
           "callerNumber": "<script>window.pwned=1</script>", "destinationNumber": "+254711000000",
           "dtmfDigits": '"><img src=x onerror="window.pwned=2">', "recordingUrl": "javascript:window.pwned=3",
           "hangupCause": "<img src=x onerror=window.pwned=4>", "durationInSeconds": "5"}


def chromium():
    """Paths of Debian's chromium and chromedriver; skip without them here, fail in CI (.ci/run installs them)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed: .ci/run must install them")
        pytest.skip("no chromium/chromedriver (Debian: apt-get install chromium chromium-driver)")
    return binary, driver


def chromium_without_javascript():
    """A headless Chromium with scripts off (as a strict reader would have it); the caller quits it."""
    binary, driver_path = chromium()
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The service as `make run` serves it on a fresh clone: simulated AT, SQLite, a viewer key beside the admin's."""
    folder = tmp_path_factory.mktemp("browser")
    env = service_env(folder, "unused", VOICE_SIMULATE="auto", VOICE_SIMULATED_AT_PORT=free_port(), SECRET_KEY="browser-secret",
                      VOICE_API_KEYS=f"board:{VIEWER_KEY}:viewer", VOICE_SIMULATED_AT_DIGITS="3",
                      VOICE_SIMULATED_AT_ANSWER_SECONDS="3", WEB_CONCURRENCY="2",
                      VOICE_CONSOLE_SIGNIN_LIMIT="100 per minute")  # each test signs in anew
    for name in ("AT_USERNAME", "AT_API_KEY", "AT_VOICE_NUMBER", "AT_VOICE_API_URL", "AT_WEBRTC_API_URL"):
        env.pop(name)
    with served(env, folder) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = chromium()
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(browser, check, seconds=20):
    """Wait until `check(browser)` is truthy (a page replaced meanwhile is tried again); its value."""
    return WebDriverWait(browser, seconds, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,)).until(check)


def sign_in(browser, base, label="default", key=API_KEY):
    browser.delete_all_cookies()
    browser.get(base + "/voice/console/")
    assert "/voice/console/sign-in" in browser.current_url
    browser.find_element(By.NAME, "label").send_keys(label)
    browser.find_element(By.NAME, "key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#sign-in button").click()
    wait(browser, lambda b: b.find_elements(By.ID, "sign-out"))


def screenshot(browser, name):
    folder = os.environ.get("VOICE_SCREENSHOTS")
    if folder:
        target = ROOT / folder if not Path(folder).is_absolute() else Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(target / f"{name}.png"))


def csp_violations(browser):
    """Messages of the browser log that say the Content-Security-Policy blocked something."""
    return [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]


def dial(base, phone="254712345678"):
    response = requests.post(base + "/voice/invoke-call", data={"phone": phone}, headers=KEY, timeout=15)
    assert response.status_code == 200, response.text
    return response.json()["response"]["entries"][0]["sessionId"]


def test_signing_in_and_out(browser, base):
    browser.delete_all_cookies()
    browser.get(base + "/voice/console/calls")
    assert "/voice/console/sign-in" in browser.current_url
    screenshot(browser, "sign-in")
    browser.find_element(By.NAME, "label").send_keys("default")
    browser.find_element(By.NAME, "key").send_keys("a wrong key")
    browser.find_element(By.CSS_SELECTOR, "#sign-in button").click()
    error = wait(browser, lambda b: b.find_elements(By.ID, "sign-in-error"))
    assert "do not match" in error[0].text
    sign_in(browser, base)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Calls"
    browser.find_element(By.ID, "sign-out").click()
    wait(browser, lambda b: "/voice/console/sign-in" in b.current_url)
    browser.get(base + "/voice/console/calls")
    assert "/voice/console/sign-in" in browser.current_url


def test_a_simulated_call_appears_live_and_moves_to_completed_without_a_reload(browser, base):
    sign_in(browser, base)
    browser.execute_script("window.sameDocument = true;")
    session = dial(base)
    live = f'#live tr[data-session="{session}"]'
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, live))
    running = browser.find_element(By.CSS_SELECTOR, live + " .running")
    screenshot(browser, "calls-live")
    first = running.text
    time.sleep(1.2)
    assert browser.find_element(By.CSS_SELECTOR, live + " .running").text != first or not browser.find_elements(
        By.CSS_SELECTOR, live)  # the running duration ticks
    done = f'#recent tr[data-session="{session}"] .state'
    wait(browser, lambda b: any(e.text == "Completed" for e in b.find_elements(By.CSS_SELECTOR, done)), seconds=40)
    assert not browser.find_elements(By.CSS_SELECTOR, live)
    assert browser.execute_script("return window.sameDocument;") is True  # updated in place, not reloaded
    screenshot(browser, "calls")
    assert csp_violations(browser) == []


def test_a_calls_timeline_shows_the_key_pressed_and_a_recording(browser, base):
    sign_in(browser, base)
    session = dial(base, "254712345670")
    deadline = time.monotonic() + 40
    while requests.get(f"{base}/voice/calls/{session}", headers=KEY, timeout=5).json()["call"]["state"] != "Completed":
        assert time.monotonic() < deadline, "the simulated call did not complete"
        time.sleep(0.5)
    browser.get(f"{base}/voice/console/calls/{session}")
    timeline = browser.find_element(By.ID, "timeline").text
    assert "Pressed 3" in timeline and "Call ended" in timeline
    kept = browser.find_element(By.CSS_SELECTOR, "#timeline .recording-kept")  # no worker here: noted, not yet copied
    assert kept.text.startswith("Recording 1: pending") and "/recordings/" in kept.text
    browser.find_element(By.CSS_SELECTOR, "#timeline details summary").click()
    assert "sessionId" in browser.find_element(By.CSS_SELECTOR, "#timeline details pre").text
    browser.execute_script("document.getElementById('timeline').scrollIntoView();")
    screenshot(browser, "call")
    assert csp_violations(browser) == []


def test_the_overview_draws_its_charts(browser, base):
    sign_in(browser, base)
    browser.get(base + "/voice/console/overview?window=7d")
    wait(browser, lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-charts") == "3")
    for chart in ("chart-calls", "chart-causes", "chart-costs"):
        drawn = browser.execute_script(
            "var c = document.getElementById(arguments[0]); return !!Chart.getChart(c) && c.width > 0;", chart)
        assert drawn, chart
    screenshot(browser, "overview")
    assert csp_violations(browser) == []


def test_the_flow_diagram_shows_every_step_of_the_default_flow(browser, base):
    sign_in(browser, base)
    browser.get(base + "/voice/console/flow")
    image = browser.find_element(By.ID, "flow-diagram")
    wait(browser, lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", image))
    screenshot(browser, "flow")
    browser.get(base + "/voice/console/flow.svg")
    texts = {element.text for element in browser.find_elements(By.CSS_SELECTOR, "text")}
    for step in DEFAULT_STEPS:
        assert any(text.startswith(step) for text in texts), (step, texts)
    assert "agent (Python)" in texts and any(text.startswith("press ") for text in texts)


def test_placing_a_call_works_and_a_viewer_cannot(browser, base):
    sign_in(browser, base)
    browser.find_element(By.ID, "nav-place").click()
    browser.find_element(By.NAME, "phone").send_keys("254712345679")
    screenshot(browser, "place")
    browser.find_element(By.CSS_SELECTOR, "#place-call button").click()
    wait(browser, lambda b: "Calling +254712345679" in b.find_element(By.TAG_NAME, "main").text)
    wait(browser, lambda b: "+254712345679" in b.find_element(By.ID, "tables").text)
    sign_in(browser, base, label="board", key=VIEWER_KEY)
    assert not browser.find_elements(By.ID, "nav-place")
    browser.get(base + "/voice/console/place")
    assert "admin or dialer role" in browser.find_element(By.TAG_NAME, "main").text


def test_hostile_payloads_execute_nothing(browser, base):
    response = requests.post(base + EVENTS, data=HOSTILE, timeout=5)
    assert response.text == "OK"
    sign_in(browser, base)
    for path in ("/voice/console/calls", "/voice/console/calls/ATVId_hostile", "/voice/console/overview"):
        browser.get(base + path)
        time.sleep(0.5)
        try:
            alert = browser.switch_to.alert
            pytest.fail(f"{path} opened an alert: {alert.text}")
        except NoAlertPresentException:
            pass
        assert browser.execute_script("return window.pwned;") is None, path
        assert not browser.find_elements(By.CSS_SELECTOR, "a[href^='javascript:'], [src^='javascript:']"), path
        for audio in browser.find_elements(By.TAG_NAME, "audio"):
            assert audio.get_attribute("src").startswith(("https://", "http://")), path
        assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script:not(#chart-data)"), path
    browser.get(base + "/voice/console/calls/ATVId_hostile")
    assert "<script>window.pwned=1</script>" in browser.find_element(By.ID, "call-figures").text  # as the text it is


def test_pages_work_without_javascript_but_for_live_updates(base, tmp_path):
    """With scripts off (as a strict reader would), each page still renders its content from the server."""
    driver = chromium_without_javascript()
    try:
        sign_in(driver, base)
        for path, marker in (("/voice/console/calls", "recent"), ("/voice/console/overview", "totals"),
                             ("/voice/console/flow", "steps")):
            driver.get(base + path)
            assert driver.find_element(By.ID, marker).text, path
    except TimeoutException:
        pytest.fail("signing in needs JavaScript")
    finally:
        driver.quit()

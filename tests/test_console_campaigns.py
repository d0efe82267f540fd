"""The console's campaign pages through Flask's test client: roles, CSRF, pause / resume / cancel, the new campaign's
preview and confirmation, hostile names, the contacts' filters and pages, the charts' data, the downloads."""

import io
import json
import re

import pytest
import sqlalchemy as sa

from tests.helpers import API_KEY
from tests.test_console import sign_in, token_of
from voice.campaigns.models import Attempt, Campaign, Contact, add_costs
from voice.store.db import db, utcnow

pytestmark = pytest.mark.both_databases

KEYS = {"admin": API_KEY, "dialer": "dialer-key-0123456789", "other": "other-dialer-key-0123456789",
        "viewer": "viewer-key-0123456789"}
LABELS = {"admin": "default", "dialer": "acme", "other": "globex", "viewer": "board"}
SETTINGS = {"SECRET_KEY": "test-secret-key", "VOICE_ALLOWED_COUNTRY_CODES": "254",
            "VOICE_API_KEYS": f"acme:{KEYS['dialer']}:dialer,globex:{KEYS['other']}:dialer,board:{KEYS['viewer']}:viewer"}
HOSTILE = "<img src=x onerror=alert(1)>"
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
NEW = "/voice/console/campaigns/new"


@pytest.fixture
def app(make_app):
    return make_app(**SETTINGS)


def console(app, role="admin"):
    """A test client signed in to the console with the key of `role`."""
    client = app.test_client()
    assert sign_in(client, LABELS[role], KEYS[role]).status_code == 302
    return client


def create(app, role="admin", **spec):
    """A campaign created through the API with the key of `role`; its JSON."""
    spec.setdefault("contacts", ["+254712345678", "+254712345679"])
    response = app.test_client().post("/voice/campaigns", json={"name": "Reminders", **spec},
                                      headers={"X-API-Key": KEYS[role]})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["campaign"]


def in_store(app, work):
    with app.app_context():
        result = work()
        db.session.commit()
        return result


def status_of(app, campaign_id):
    return in_store(app, lambda: db.session.get(Campaign, campaign_id).status)


def post(client, path, page_path, **data):
    """POST a console form with the CSRF token of `page_path`."""
    return client.post(path, data={"csrf_token": token_of(client.get(page_path)), **data})


def text(response):
    return response.get_data(as_text=True)


def chart_data(page):
    """The charts' data a campaign's page hands its script (single-quoted JSON in data-chart)."""
    return json.loads(re.search(r"data-chart='([^']*)'", page).group(1))


# --- who sees what ---------------------------------------------------------------------------------------------


def test_the_pages_need_a_session(app):
    campaign = create(app)
    client = app.test_client()
    for path in ("/voice/console/campaigns", f"/voice/console/campaigns/{campaign['id']}", NEW,
                 f"/voice/console/campaigns/{campaign['id']}/results.csv"):
        response = client.get(path)
        assert response.status_code == 302 and response.location.startswith("/voice/console/sign-in"), path


def test_each_role_sees_the_campaigns_the_api_shows_it(app):
    mine, theirs = create(app, "dialer", name="Acme's"), create(app, "other", name="Globex's")
    for role, shown in (("admin", {mine["id"], theirs["id"]}), ("viewer", {mine["id"], theirs["id"]}),
                        ("dialer", {mine["id"]})):
        page = text(console(app, role).get("/voice/console/campaigns"))
        assert {int(n) for n in re.findall(r'data-campaign="(\d+)"', page)} == shown, role
        assert ('id="new-campaign"' in page) == (role != "viewer")
    dialer = console(app, "dialer")
    assert dialer.get(f"/voice/console/campaigns/{theirs['id']}").status_code == 404  # as the API: not there
    assert dialer.get(f"/voice/console/campaigns/{theirs['id']}/results.csv").status_code == 404
    assert post(dialer, f"/voice/console/campaigns/{theirs['id']}/pause", "/voice/console/campaigns").status_code == 404
    assert status_of(app, theirs["id"]) == "running"
    viewer = console(app, "viewer")
    page = text(viewer.get(f"/voice/console/campaigns/{mine['id']}"))
    assert "Acme&#39;s" in page and 'id="pause"' not in page and 'id="cancel"' not in page
    assert viewer.get(NEW).status_code == 403
    assert post(viewer, f"/voice/console/campaigns/{mine['id']}/pause", "/voice/console/campaigns").status_code == 403
    assert status_of(app, mine["id"]) == "running"


def test_the_campaigns_page_shows_progress_status_cost_against_budget_and_next_attempt(app):
    campaign = create(app, budget={"amount": 50, "currency": "KES"},
                      contacts=["+254712345678", "+254712345679", "+254712345670", "+254712345671"])

    def work():
        contacts = list(db.session.execute(sa.select(Contact).where(Contact.campaign_id == campaign["id"])).scalars())
        contacts[0].status, contacts[1].status = "completed", "failed"
        db.session.add(Attempt(campaign_id=campaign["id"], contact_id=contacts[0].id, number=1, status="ended",
                               claimed_at=utcnow(), amount=12.5, currency="KES", outcome="completed"))
        add_costs({(campaign["id"], "KES"): 12.5})  # as settling adds each call's cost

    in_store(app, work)
    page = text(console(app).get("/voice/console/campaigns"))
    row = page[page.index(f'data-campaign="{campaign["id"]}"'):]
    row = row[:row.index("</tr>")]
    assert '<progress value="2" max="4">' in row and "2 of 4" in row and "running" in row
    assert "KES 12.50 of 50.00" in row and '<meter min="0" max="50.0" value="12.5"' in row
    assert campaign["nextAttemptAt"][:16].replace("T", " ") in row


# --- pause, resume, cancel -------------------------------------------------------------------------------------


def test_pause_resume_and_cancel_change_the_campaign_as_the_api_does(app):
    campaign = create(app, "dialer")
    page = f"/voice/console/campaigns/{campaign['id']}"
    client = console(app, "dialer")
    paused = post(client, page + "/pause", page)
    assert paused.status_code == 302 and status_of(app, campaign["id"]) == "paused"
    shown = text(client.get(page))
    assert "Paused: calls in progress finish." in shown and "(paused: operator)" in shown and 'id="resume"' in shown
    assert post(client, page + "/resume", page).status_code == 302 and status_of(app, campaign["id"]) == "running"
    refused = post(client, page + "/resume", page)  # running already: the service's 409, on the page
    assert refused.status_code == 409 and "this needs it paused" in text(refused)
    assert post(client, page + "/cancel", page).status_code == 302 and status_of(app, campaign["id"]) == "cancelled"
    contacts = app.test_client().get(f"/voice/campaigns/{campaign['id']}", headers={"X-API-Key": KEYS["dialer"]})
    assert contacts.get_json()["counts"]["cancelled"] == 2
    finished = text(client.get(page))
    assert 'id="pause"' not in finished and 'id="cancel"' not in finished


def test_actions_need_the_csrf_token(app):
    campaign = create(app)
    client = console(app)
    for action in ("pause", "cancel"):
        refused = client.post(f"/voice/console/campaigns/{campaign['id']}/{action}")
        assert refused.status_code == 400 and "form expired" in text(refused).lower()
        refused = client.post(f"/voice/console/campaigns/{campaign['id']}/{action}", data={"csrf_token": "forged"})
        assert refused.status_code == 400
    assert status_of(app, campaign["id"]) == "running"
    unsigned = client.post(NEW, data={"contacts": (io.BytesIO(b"phone\n+254712345670\n"), "list.csv"), "confirm": "1"},
                           content_type="multipart/form-data")
    assert unsigned.status_code == 400
    assert in_store(app, lambda: db.session.execute(sa.select(sa.func.count()).select_from(Campaign)).scalar()) == 1


def test_a_campaign_paused_for_its_budget_resumes_with_a_larger_one(app):
    campaign = create(app, budget={"amount": 10, "currency": "KES"})

    def work():
        contact = db.session.execute(sa.select(Contact).where(Contact.campaign_id == campaign["id"])).scalars().first()
        db.session.add(Attempt(campaign_id=campaign["id"], contact_id=contact.id, number=1, status="ended",
                               claimed_at=utcnow(), amount=10, currency="KES", outcome="completed"))
        add_costs({(campaign["id"], "KES"): 10})  # as settling adds each call's cost
        db.session.get(Campaign, campaign["id"]).status = "paused"
        db.session.get(Campaign, campaign["id"]).paused_reason = "budget"

    in_store(app, work)
    page = f"/voice/console/campaigns/{campaign['id']}"
    client = console(app)
    assert 'name="budget_amount"' in text(client.get(page))
    refused = post(client, page + "/resume", page)
    assert refused.status_code == 409 and "budget" in text(refused) and status_of(app, campaign["id"]) == "paused"
    assert post(client, page + "/resume", page, budget_amount="25", budget_currency="KES").status_code == 302
    assert status_of(app, campaign["id"]) == "running"
    assert "KES 10.00 of 25.00" in text(client.get(page))


# --- a new campaign --------------------------------------------------------------------------------------------


def upload(client, content, token=None, **fields):
    """Send the new campaign's form with `content` (bytes) as its file; the response."""
    data = {"csrf_token": token or token_of(client.get(NEW)), "retry": "30m 2h", "max_concurrent": "5",
            "per_minute": "30", "days": ALL_DAYS, **fields}
    if content is not None:
        data["contacts"] = (io.BytesIO(content), "list.csv")
    return client.post(NEW, data=data, content_type="multipart/form-data")


LIST = (b"phone,name\n+254712345678,Amina\n12,Baraka\n+254712345678,Amina again\n+254712345670,Chege\n"
        b"+447700900123,Dalia\n+254712345671,\"" + HOSTILE.encode() + b"\"\n")


def test_the_preview_shows_the_accepted_count_and_every_refused_row_with_its_reason(app):
    client = console(app)
    preview = upload(client, LIST, name="Clinic")
    page = text(preview)
    assert preview.status_code == 200
    assert re.search(r'id="accepted">3<', page) and re.search(r'id="refused-count">3<', page)
    refused = page[page.index('id="refused"'):page.index("</table>", page.index('id="refused"'))]
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", refused)
    assert [(int(row), phone) for row, phone, _ in rows] == [(2, "12"), (3, "+254712345678"), (5, "+447700900123")]
    assert "7 to 15 digits" in rows[0][2] and "duplicate" in rows[1][2] and "not allowed" in rows[2][2]
    assert in_store(app, lambda: db.session.execute(sa.select(sa.func.count()).select_from(Campaign)).scalar()) == 0


def test_confirming_creates_the_campaign_as_the_api_would_without_sending_the_file_again(app):
    client = console(app, "dialer")
    page = text(upload(client, LIST, name="Clinic", step="goodbye", window_from="08:00", window_to="20:00",
                       days=["mon", "tue"], budget_amount="500", budget_currency="kes", retry="15m 1h"))
    staged = re.search(r'name="staged" type="hidden" value="([^"]+)"', page).group(1)
    assert 'id="confirm-button"' in page
    confirmed = upload(client, None, token=token_of(client.get(NEW)), confirm="1", staged=staged,
                       staged_name="list.csv", name="Clinic", step="goodbye", window_from="08:00",
                       window_to="20:00", days=["mon", "tue"], budget_amount="500", budget_currency="kes",
                       retry="15m 1h")
    assert confirmed.status_code == 302
    campaign_id = int(confirmed.location.rsplit("/", 1)[1])
    shown = app.test_client().get(f"/voice/campaigns/{campaign_id}", headers={"X-API-Key": KEYS["dialer"]}).get_json()
    assert (shown["name"], shown["contacts"], shown["createdBy"], shown["step"]) == ("Clinic", 3, "acme", "goodbye")
    assert shown["window"]["days"] == ["mon", "tue"] and shown["window"]["from"] == "08:00"
    assert shown["budget"] == {"amount": 500.0, "currency": "KES"} and shown["retry"] == "15m 1h"
    assert "3 contacts accepted, 3 refused" in text(client.get(confirmed.location))
    variables = app.test_client().get(f"/voice/campaigns/{campaign_id}/contacts", headers={"X-API-Key": KEYS["dialer"]})
    assert variables.get_json()["contacts"][2]["vars"] == {"name": HOSTILE}


@pytest.mark.parametrize("fields, field, words", [
    ({"window_from": "25:00", "window_to": "20:00"}, "window", "window.from"),
    ({"retry": "soon"}, "retry", "retry"),
    ({"budget_amount": "lots", "budget_currency": "KES"}, "budget", "budget"),
    ({"step": "no_such_step"}, "step", "not a step"),
    ({"max_concurrent": "0"}, "max_concurrent", "maxConcurrent"),
    ({"not_after": "2000-01-01T00:00"}, "not_after", "notAfter"),
    ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
])
def test_a_bad_setting_is_shown_next_to_its_field(app, fields, field, words):
    response = upload(console(app), LIST, **fields)
    assert response.status_code == 400
    error = re.search(rf'<span class="field-error" id="error-{field}">([^<]*)</span>', text(response))
    assert error and words in error.group(1)
    assert 'id="confirm-button"' not in text(response)


@pytest.mark.parametrize("content, words", [
    (None, "Choose a CSV file"),
    (b"name,visit\nAmina,Monday\n", "needs a &#39;phone&#39; column"),
    (b"phone\n\xff\xfe\n", "not UTF-8"),
])
def test_a_file_that_cannot_be_read_is_shown_next_to_the_file(app, content, words):
    response = upload(console(app), content)
    assert response.status_code == 400 and words in re.search(
        r'id="error-contacts">([^<]*)<', text(response)).group(1)


def test_a_list_with_nobody_to_call_cannot_be_confirmed(app):
    page = text(upload(console(app), b"phone\n12\n+447700900123\n"))
    assert re.search(r'id="accepted">0<', page) and 'id="confirm-button"' not in page


def test_a_large_list_passes_the_form_size_limit(app):
    # Far over the 64 KB that MAX_CONTENT_LENGTH allows other requests; within VOICE_CAMPAIGN_UPLOAD_MB.
    content = "phone,note\n" + "".join(f"+2547{n:08d},{'x' * 40}\n" for n in range(3000))
    page = text(upload(console(app), content.encode()))
    assert re.search(r'id="accepted">3000<', page)


# --- hostile text ----------------------------------------------------------------------------------------------


def test_hostile_names_variables_and_answers_are_escaped(app):
    campaign = create(app, name=HOSTILE, contacts=[{"phone": "+254712345678", "vars": {"name": "<script>x()</script>"}}])
    in_store(app, lambda: db.session.execute(sa.update(Contact).where(Contact.campaign_id == campaign["id"]).values(
        status="completed", answers={"satisfied": '"><svg onload=alert(2)>'})))
    in_store(app, lambda: db.session.execute(sa.update(Campaign).where(Campaign.id == campaign["id"]).values(
        answer_keys=["satisfied"])))
    client = console(app)
    for path in ("/voice/console/campaigns", f"/voice/console/campaigns/{campaign['id']}"):
        page = text(client.get(path))
        assert "<img src=x" not in page and "<script>x()" not in page and "<svg" not in page, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in page, path
    page = text(client.get(f"/voice/console/campaigns/{campaign['id']}"))
    assert "&lt;script&gt;x()&lt;/script&gt;" in page and "&#34;&gt;&lt;svg onload=alert(2)&gt;" in page
    data = chart_data(page)
    assert "\\u003csvg" in re.search(r"data-chart='([^']*)'", page).group(1)  # no markup, even inside the attribute
    assert data["answers"]["satisfied"]["labels"] == ['"><svg onload=alert(2)>']  # data, drawn as text on a canvas


def test_the_pages_carry_a_strict_csp_and_no_inline_script_or_style(app):
    campaign = create(app)
    client = console(app)
    for path in ("/voice/console/campaigns", f"/voice/console/campaigns/{campaign['id']}", NEW):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        scripts = re.findall(r"<script([^>]*)>", text(response))
        assert all("src=" in attributes or 'type="application/json"' in attributes for attributes in scripts), path
        assert " style=" not in text(response) and " on" not in re.sub(r"[^<]*(<[^>]*>)?", r"\1", text(response))


# --- the campaign's page ---------------------------------------------------------------------------------------


def many(app, count):
    """A campaign of `count` contacts, the even ones completed; its id."""
    campaign = create(app, contacts=[f"+2547123{n:05d}" for n in range(count)])
    in_store(app, lambda: db.session.execute(sa.update(Contact).where(
        Contact.campaign_id == campaign["id"], Contact.row % 2 == 0).values(status="completed")))
    return campaign["id"]


def phones(page):
    return re.findall(r"<td>(\+2547123\d{5})</td>", page)


def test_contacts_come_a_page_at_a_time_and_by_status(app):
    campaign_id = many(app, 120)
    client = console(app)
    first = text(client.get(f"/voice/console/campaigns/{campaign_id}"))
    assert phones(first) == [f"+2547123{n:05d}" for n in range(50)]
    following = re.search(r'id="next-contacts" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = text(client.get(following))
    assert phones(second) == [f"+2547123{n:05d}" for n in range(50, 100)]
    third = text(client.get(re.search(r'id="next-contacts" href="([^"]+)"', second).group(1).replace("&amp;", "&")))
    assert phones(third) == [f"+2547123{n:05d}" for n in range(100, 120)] and 'id="next-contacts"' not in third
    done = text(client.get(f"/voice/console/campaigns/{campaign_id}?status=completed"))
    assert phones(done) == [f"+2547123{n:05d}" for n in range(1, 100, 2)]  # rows 2, 4, ... (numbers 1, 3, ...)
    following = re.search(r'id="next-contacts" href="([^"]+)"', done).group(1).replace("&amp;", "&")
    assert "status=completed" in following
    assert phones(text(client.get(following))) == [f"+2547123{n:05d}" for n in range(101, 120, 2)]
    bad = client.get(f"/voice/console/campaigns/{campaign_id}?status=<b>&after=x")
    assert bad.status_code == 200 and "status must be one of" in text(bad) and "<b>" not in text(bad)


def test_a_missing_campaign_is_a_404_page(app):
    client = console(app)
    for path in ("/voice/console/campaigns/999", "/voice/console/campaigns/abc", "/voice/console/campaigns/99999999999",
                 "/voice/console/campaigns/%C2%B2", "/voice/console/campaigns/%C2%B2/over-time"):
        response = client.get(path)
        assert response.status_code == 404 and "No campaign" in text(response), path


def test_digits_that_are_not_ascii_are_not_numbers(app):
    """`²` is a digit to str.isdigit() and not to int(): the page treats it as any other text, never a 500."""
    campaign = create(app)
    client = console(app)
    for path in ("/voice/console/campaigns?page=%C2%B2", f"/voice/console/campaigns/{campaign['id']}?after=%C2%B2"):
        assert client.get(path).status_code == 200, path


def test_the_charts_data_counts_statuses_attempts_over_time_and_answers(app):
    campaign = create(app, contacts=["+254712345678", "+254712345679", "+254712345670"])

    def work():
        contacts = list(db.session.execute(sa.select(Contact).where(Contact.campaign_id == campaign["id"])
                                           .order_by(Contact.id)).scalars())
        for contact, answer in zip(contacts, ("1", "1", "2")):
            contact.status, contact.answers = "completed", {"satisfied": answer}
            db.session.add(Attempt(campaign_id=campaign["id"], contact_id=contact.id, number=1, status="ended",
                                   claimed_at=utcnow(), outcome="completed"))  # after the campaign began
        db.session.add(Attempt(campaign_id=campaign["id"], contact_id=contacts[0].id, number=2, status="withdrawn",
                               claimed_at=utcnow()))
        db.session.get(Campaign, campaign["id"]).answer_keys = ["satisfied"]

    in_store(app, work)
    client = console(app)
    page = text(client.get(f"/voice/console/campaigns/{campaign['id']}"))
    data = chart_data(page)
    assert dict(zip(data["statuses"]["labels"], data["statuses"]["counts"]))["completed"] == 3
    assert data["answers"]["satisfied"] == {"labels": ["1", "2"], "counts": [2, 1]}
    # Attempts over time are a part of their own, fetched by the page once it is shown (and a page without JS).
    over_time = f"/voice/console/campaigns/{campaign['id']}/over-time"
    assert f'hx-get="{over_time}" hx-trigger="load"' in page and f'href="{over_time}"' in page
    for headers in ({"HX-Request": "true"}, {}):
        part = text(client.get(over_time, headers=headers))
        attempts = chart_data(part)
        assert sum(attempts["attempts"]) == 3 and sum(attempts["answered"]) == 3  # withdrawn not counted
        assert ("<html" in part) is not bool(headers) and 'id="attempt-buckets"' in part


def test_the_live_part_refreshes_itself_only_while_the_campaign_runs(app):
    campaign = create(app)
    client = console(app)
    page = f"/voice/console/campaigns/{campaign['id']}"
    fragment = text(client.get(page, headers={"HX-Request": "true"}))
    assert fragment.lstrip().startswith("{#") is False and "<html" not in fragment
    assert 'id="campaign-live"' in fragment and 'hx-trigger="every 3s"' in fragment
    assert 'hx-trigger="every 15s"' in text(client.get(page + "/over-time", headers={"HX-Request": "true"}))
    in_store(app, lambda: db.session.execute(sa.update(Contact).where(Contact.campaign_id == campaign["id"])
                                             .values(status="completed")))
    assert re.search(r'id="campaign-done">2 of 2<', text(client.get(page, headers={"HX-Request": "true"})))
    post(client, page + "/cancel", page)
    assert "every 3s" not in text(client.get(page))
    assert "hx-trigger" not in text(client.get(page + "/over-time", headers={"HX-Request": "true"}))


def test_the_downloads_are_the_apis_csv(app):
    campaign = create(app, "dialer")
    client = console(app, "dialer")
    for name in ("results", "attempts"):
        mine = client.get(f"/voice/console/campaigns/{campaign['id']}/{name}.csv")
        api = app.test_client().get(f"/voice/campaigns/{campaign['id']}/{name}.csv",
                                    headers={"X-API-Key": KEYS["dialer"]})
        assert mine.status_code == 200 and mine.mimetype == "text/csv" and mine.data == api.data
        assert f'filename="campaign-{campaign["id"]}-{name}.csv"' in mine.headers["Content-Disposition"]
    assert client.get(f"/voice/console/campaigns/{campaign['id']}/results.csv").data.count(b"\n") == 3

"""Key roles: the README's route x role table, walked cell by cell, and what a dialer may see."""

import re
from pathlib import Path

import pytest

from tests.helpers import API_KEY, EVENTS, KEY, WEBHOOK_TOKEN

README = Path(__file__).resolve().parent.parent / "README.md"
KEYS = {"admin": API_KEY, "dialer": "dialer-key-0123456789", "viewer": "viewer-key-0123456789"}
LABELS = {"admin": "default", "dialer": "acme", "viewer": "board"}
SETTINGS = {"VOICE_API_KEYS": f"acme:{KEYS['dialer']}:dialer,board:{KEYS['viewer']}:viewer", "SECRET_KEY": "test-secret"}


def table():
    """(method, path, {role: cell}) for every route the README's 'Who may do what' table names."""
    text = README.read_text()
    section = text[text.index("## Who may do what"):]
    section = section[:section.index("\n## ", 3)]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) != 4:
            continue
        routes = re.findall(r"`(GET|POST|DELETE) ([^`]+)`", cells[0])
        rows += [(method, path, dict(zip(("admin", "dialer", "viewer"), cells[1:]))) for method, path in routes]
    return rows


ROWS = table()
# The table's placeholders as the app's rules write them, and a value for each in a request.
RULES = {"<sessionId>": "<session_id>", "<n>": "<int:n>", "<endpointId>": "<int:endpoint_id>", "<eventId>": "<event_id>"}
VALUES = {"<n>": "1", "<endpointId>": "1", "<eventId>": "evt_0"}


def rule_of(path):
    """A path of the table as the app's rule."""
    for placeholder, rule in RULES.items():
        path = path.replace(placeholder, rule)
    return path


def url_of(path, session):
    """A path of the table with its placeholders filled in."""
    for placeholder, value in dict(VALUES, **{"<sessionId>": session}).items():
        path = path.replace(placeholder, value)
    return path


def test_the_table_covers_every_route_of_the_app(make_app):
    app = make_app(**SETTINGS)
    listed = {(method, rule_of(path)) for method, path, _ in ROWS}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in ("webhooks", "api", "history", "ops", "console", "endpoints") or rule.endpoint == "console.static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if rule.endpoint in ("console.sign_in", "console.sign_out", "console.home"):
                continue  # signing in and out is for everyone; the console's root only redirects
            assert (method, rule.rule) in listed, f"{method} {rule.rule} is not in the README's table"
    assert "prune" not in " ".join(rule.rule for rule in app.url_map.iter_rules())  # prune is shell-only


@pytest.fixture
def served(make_app, simulated_at):
    """The app with a key of each role, and a call the dialer placed (its sessionId)."""
    app = make_app(**SETTINGS)
    client = app.test_client()
    placed = client.post("/voice/invoke-call", data={"phone": "254712345678"}, headers={"X-API-Key": KEYS["dialer"]})
    session = placed.json["response"]["entries"][0]["sessionId"]
    client.post(EVENTS, data={"sessionId": session, "isActive": "1", "direction": "Outbound",
                              "callerNumber": "+254712345678", "destinationNumber": "+254711000000",
                              "callSessionState": "Answered"})
    return app, session


def console_client(app, role):
    """A test client signed in to the console with the key of `role`."""
    client = app.test_client()
    page = client.get("/voice/console/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/voice/console/sign-in", data={"label": LABELS[role], "key": KEYS[role], "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    # Signing in starts a new session, with a new CSRF token (on every page's sign-out form).
    page = client.get("/voice/console/calls").get_data(as_text=True)
    return client, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize("method, path, cells", ROWS, ids=[f"{m} {p}" for m, p, _ in ROWS])
@pytest.mark.parametrize("role", ["admin", "dialer", "viewer"])
def test_each_cell_of_the_table_holds(served, method, path, cells, role):
    app, session = served
    url = url_of(path, session)
    cell = cells[role]
    if path.startswith("/voice/console/"):
        client, token = console_client(app, role)
        response = client.open(url, method=method, data={"csrf_token": token, "phone": "12"} if method == "POST" else None)
    elif cell == "webhook token":
        response = app.test_client().open(url + f"?token={WEBHOOK_TOKEN}", method=method,
                                          data={"sessionId": "ATVId_role", "isActive": "1"})
    elif cell == "open":
        response = app.test_client().open(url, method=method)
    else:
        response = app.test_client().open(url, method=method, headers={"X-API-Key": KEYS[role]})
    if cell == "no":
        assert response.status_code == 403, (role, method, path, response.status_code)
        if not path.startswith("/voice/console/"):
            assert response.json["error"] == "forbidden" and "role" in response.json["message"]
    else:
        assert cell in ("yes", "own calls", "own campaigns", "open", "webhook token"), cell
        assert response.status_code not in (401, 403), (role, method, path, response.status_code)


def test_without_a_key_every_keyed_route_is_401(served):
    app, session = served
    client = app.test_client()
    for method, path, cells in ROWS:
        if cells["admin"] in ("yes",) and not path.startswith("/voice/console/"):
            response = client.open(url_of(path, session), method=method)
            assert response.status_code == 401, (method, path)


def test_a_dialer_sees_only_the_calls_it_placed(served):
    app, mine = served
    client = app.test_client()
    admin, dialer, viewer = ({"X-API-Key": KEYS[role]} for role in ("admin", "dialer", "viewer"))
    other = client.post("/voice/invoke-call", data={"phone": "254712345670"}, headers=admin).json
    theirs = other["response"]["entries"][0]["sessionId"]
    client.post(EVENTS, data={"sessionId": "ATVId_inbound", "isActive": "1", "direction": "Inbound",
                              "callerNumber": "+254712000000", "destinationNumber": "+254711000000"})
    assert [c["sessionId"] for c in client.get("/voice/calls", headers=dialer).json["calls"]] == [mine]
    assert len(client.get("/voice/calls", headers=viewer).json["calls"]) == 3
    assert client.get("/voice/calls/stats", headers=dialer).json["calls"] == 1
    for session in (theirs, "ATVId_inbound"):
        refused = client.get(f"/voice/calls/{session}", headers=dialer)
        assert refused.status_code == 404 and refused.json["error"] == "not_found"  # as if it did not exist
        transfer = client.post(f"/voice/calls/{session}/transfer", data={"phone": "254712000001"}, headers=dialer)
        assert transfer.status_code in (404, 409) and transfer.status_code != 403
    assert client.get(f"/voice/calls/{mine}", headers=dialer).status_code == 200


def test_a_dialer_sees_only_its_calls_in_the_console_too(served):
    app, mine = served
    app.test_client().post("/voice/invoke-call", data={"phone": "254712345670"}, headers=KEY)
    client, _ = console_client(app, "dialer")
    shown = set(re.findall(r'data-session="([^"]+)"', client.get("/voice/console/calls").get_data(as_text=True)))
    assert shown == {mine}
    admin, _ = console_client(app, "admin")
    assert len(set(re.findall(r'data-session="([^"]+)"', admin.get("/voice/console/calls").get_data(as_text=True)))) == 2


@pytest.mark.parametrize("entry", ["acme:key-1234567890:root", "acme:key-1234567890:"])
def test_an_unknown_role_is_part_of_the_key_not_a_role(make_app, entry):
    # `label:key:xyz` with xyz not a role is read as a key holding a colon, so it never grants a made-up role.
    app = make_app(VOICE_API_KEYS=entry)
    assert dict((label, role) for label, _, role in app.extensions["voice_settings"].api_keys)["acme"] == "admin"

"""The web application through Flask's test client: sign-in, roles, CSRF, masking, figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook

from outreach.input import campaigns
from outreach.reporting import audit, reports
from outreach.sending import ops
from outreach.web import create_app
from tests.web_helpers import PASSWORD, World, make_world, whole_number_patterns

FAIL = "+84965500001"


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = make_world(tmp_path)
    ops.launch(w.db, campaigns.load(w.mock_file), operator="olga",
               gateway_options={"mock": {"script": {FAIL: ["invalid"]}}})
    with w.db.engine.begin() as conn:  # the twilio campaign known to the database, not sent
        from outreach.ledger import runs
        import datetime as dt

        runs.sync_campaign(conn, campaigns.load(w.twilio_file),
                           now=dt.datetime.now(dt.timezone.utc))
    return w


@pytest.fixture
def app(world: World):  # type: ignore[no-untyped-def]
    return create_app(world.db, secret_key="k" * 32)


def csrf(client: FlaskClient, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def login(client: FlaskClient, user: str, password: str = PASSWORD) -> None:
    r = client.post("/login", data={"username": user, "password": password,
                                    "csrf_token": csrf(client)})
    assert r.status_code == 302, r.get_data(as_text=True)[:300]


GET_PAGES = ["/", "/campaigns/thu-mock", "/campaigns/thu-mock/progress.json",
             "/campaigns/thu-mock/report.json", "/campaigns/thu-mock/bao-cao.html",
             "/campaigns/thu-mock/bao-cao.xlsx", "/campaigns/thu-mock/chua-nhan", "/tu-choi",
             "/nhat-ky", "/campaigns/that-twilio"]
POSTS = ["/campaigns/thu-mock/launch", "/campaigns/that-twilio/submit",
         "/campaigns/that-twilio/approve", "/campaigns/thu-mock/pause", "/logout"]


def test_no_page_without_login(app) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    for path in GET_PAGES:
        r = c.get(path)
        if path.endswith(".json"):
            assert r.status_code == 401, path
        else:
            assert r.status_code == 302 and "/login" in r.headers["Location"], path
    for path in POSTS:
        r = c.post(path)
        assert r.status_code in (302, 400, 401), path
        assert r.status_code != 200
    assert c.get("/healthz").status_code == 200


def test_wrong_password_and_disabled_account(app, world: World) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    r = c.post("/login", data={"username": "olga", "password": "sai-mat-khau-roi",
                               "csrf_token": csrf(c)})
    assert r.status_code == 401 and "không đúng" in r.get_data(as_text=True)
    login(c, "olga")
    assert c.get("/").status_code == 200
    from outreach import users

    with world.db.engine.begin() as conn:
        users.set_active(conn, "olga", False)
    assert c.get("/").status_code == 302  # the session ends at once
    c2 = app.test_client()
    r = c2.post("/login", data={"username": "olga", "password": PASSWORD, "csrf_token": csrf(c2)})
    assert r.status_code == 401
    with world.db.engine.connect() as conn:
        logins = [(e.details["user"], e.details["ok"]) for e in audit.entries(conn, action="login")]
    assert logins == [("olga", False), ("olga", True), ("olga", False)][::-1]


def test_csrf_token_is_required(app) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    r = c.post("/login", data={"username": "olga", "password": PASSWORD})
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    login(c, "anna")
    token = csrf(c, "/campaigns/that-twilio")
    for path in POSTS:
        r = c.post(path)
        assert r.status_code == 400, path
        r = c.post(path, data={"csrf_token": "x" + token[1:]})
        assert r.status_code == 400, path
    # another session's token is refused too
    other = app.test_client()
    login(other, "olga")
    assert c.post("/campaigns/that-twilio/submit",
                  data={"csrf_token": csrf(other, "/")}).status_code == 400
    assert c.post("/campaigns/that-twilio/submit", data={"csrf_token": token}).status_code == 302


def test_roles_are_enforced(app, world: World) -> None:  # type: ignore[no-untyped-def]
    viewer = app.test_client()
    login(viewer, "vera")
    token = csrf(viewer, "/")
    for path in POSTS[:-1]:
        assert viewer.post(path, data={"csrf_token": token}).status_code == 403, path
    assert viewer.get("/campaigns/thu-mock/chua-nhan?whole=1").status_code == 403
    assert viewer.get("/nhat-ky").status_code == 403
    page = viewer.get("/campaigns/thu-mock").get_data(as_text=True)
    assert "btn-launch" not in page and "btn-approve" not in page and "btn-submit" not in page
    op = app.test_client()
    login(op, "olga")
    t = csrf(op, "/")
    assert op.post("/campaigns/that-twilio/submit", data={"csrf_token": t}).status_code == 302
    assert op.post("/campaigns/that-twilio/approve", data={"csrf_token": t}).status_code == 403
    assert op.get("/nhat-ky").status_code == 403
    admin = app.test_client()
    login(admin, "adam")
    assert admin.get("/nhat-ky").status_code == 200


def test_approver_cannot_approve_own_request_in_the_web(app, world: World) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "anna")
    t = csrf(c, "/")
    c.post("/campaigns/that-twilio/submit", data={"csrf_token": t})
    r = c.post("/campaigns/that-twilio/approve", data={"csrf_token": t}, follow_redirects=True)
    assert "different person" in r.get_data(as_text=True)
    from outreach.sending import approvals

    with world.db.engine.connect() as conn:
        assert approvals.latest(conn, "that-twilio", "approved") is None


def test_whole_numbers_never_in_a_viewers_pages(app, world: World) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "vera")
    patterns = whole_number_patterns(world.phones)
    for path in GET_PAGES:
        r = c.get(path)
        if r.status_code == 403:
            continue
        assert r.status_code == 200, path
        if path.endswith(".xlsx"):
            continue  # a workbook of counts; no number column (checked below)
        body = r.get_data(as_text=True)
        for p in patterns:
            assert not p.search(body), (path, p.pattern)
    page = c.get("/campaigns/thu-mock/chua-nhan").get_data(as_text=True)
    assert "096****001" in page  # the failed one, masked
    wb = load_workbook(__import__("io").BytesIO(c.get("/campaigns/thu-mock/bao-cao.xlsx").data))
    cells = " ".join(str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True)
                     for v in row if v is not None)
    assert not any(p.search(cells) for p in patterns)


def test_an_operator_sees_whole_numbers_and_the_view_is_audited(app, world: World) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "olga")
    page = c.get("/campaigns/thu-mock/chua-nhan").get_data(as_text=True)
    assert FAIL not in page and "096****001" in page
    page = c.get("/campaigns/thu-mock/chua-nhan?whole=1").get_data(as_text=True)
    assert FAIL in page and "ghi vào nhật ký" in page
    with world.db.engine.connect() as conn:
        views = audit.entries(conn, action="view-numbers")
    assert [(e.operator, e.campaign_id, e.details["rows"]) for e in views] == [
        ("olga", "thu-mock", 1)]


def test_every_figure_on_the_campaign_page_equals_the_json_report(app, world: World) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "vera")
    html = c.get("/campaigns/thu-mock").get_data(as_text=True)
    with reports.report_connection(world.db.engine) as conn:
        data = reports.campaign_report(conn, "thu-mock")
    figures = dict(re.findall(r'data-figure="([a-z_]+)" data-value="([^"]*)"', html))
    assert set(figures) >= {"recipients", "reached", "not_reached", "deliveries", "delivered",
                            "failures", "awaiting", "not_sent", "attempted", "delivery_rate",
                            "segments", "cost_vnd", "opted_out"}
    for key, value in figures.items():
        want = data["by_status"]["opted_out"] if key == "opted_out" else data[key]
        assert json.loads(value.replace("&#34;", '"')) == want, key
    assert (data["deliveries"], data["failures"], data["awaiting"]) == (6, 1, 5)
    # breakdowns: each row's cells equal the report's outcome of that key
    for dim in ("by_district", "by_carrier", "by_channel", "by_day"):
        section = html.split(f'id="{dim}"', 1)[1].split("</section>", 1)[0]
        for key, counts in data[dim].items():
            row = section.split(f'data-key="{key}"', 1)[1].split("</tr>", 1)[0]
            cells = dict(re.findall(r'data-col="([a-z_]+)" data-value="(\d+)"', row))
            o = reports.outcome(counts)
            assert {k: int(v) for k, v in cells.items()} == {
                k: o[k] for k in ("deliveries", "delivered", "failures", "awaiting", "not_sent")}
    section = html.split('id="by_ward"', 1)[1].split("</section>", 1)[0]
    for district, wards in data["by_ward"].items():
        for ward, counts in wards.items():
            row = section.split(f'data-key="{district}/{ward}"', 1)[1].split("</tr>", 1)[0]
            cells = dict(re.findall(r'data-col="([a-z_]+)" data-value="(\d+)"', row))
            assert int(cells["deliveries"]) == sum(counts.values())
            assert int(cells["failures"]) == reports.outcome(counts)["failures"]
    assert sum(len(w) for w in data["by_ward"].values()) == 2  # An Hòa, Lê Bình
    assert data["text_sha256"] in html and data["text"] in html
    prog = c.get("/campaigns/thu-mock/progress.json").get_json()
    assert (prog["deliveries"], prog["done"], prog["pending"], prog["failures"]) == (6, 6, 0, 1)
    assert prog["run"]["status"] == "completed"


def test_downloads_are_the_official_and_xlsx_reports(app, world: World) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "vera")
    r = c.get("/campaigns/thu-mock/bao-cao.html")
    assert r.headers["Content-Disposition"] == 'attachment; filename="bao-cao-thu-mock.html"'
    html = r.get_data(as_text=True)
    spec = campaigns.load(world.mock_file)
    assert spec.text_sha256 in html and spec.text in html and "126/KH-UBND" in html
    wb = load_workbook(__import__("io").BytesIO(c.get("/campaigns/thu-mock/bao-cao.xlsx").data))
    summary = {row[0]: row[1] for row in wb["summary"].iter_rows(min_row=2, values_only=True)}
    assert (summary["deliveries"], summary["failures"], summary["text_sha256"]) == (
        6, 1, spec.text_sha256)
    with world.db.engine.connect() as conn:
        kinds = sorted(e.details["what"] for e in audit.entries(conn, action="download"))
    assert kinds == ["official-html", "xlsx"]


def test_trusted_proxy_header_signs_in_only_from_the_proxy(world: World) -> None:
    app = create_app(world.db, secret_key="k" * 32, trusted_header="X-Remote-User",
                     trusted_proxies=["10.1.2.3"])
    c = app.test_client()
    r = c.get("/", headers={"X-Remote-User": "vera"}, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert r.status_code == 200 and 'data-user="vera"' in r.get_data(as_text=True)
    r = c.get("/", headers={"X-Remote-User": "adam"}, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert r.status_code == 302  # the header from anyone else is ignored
    r = c.get("/", headers={"X-Remote-User": "nobody"}, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert r.status_code == 302  # an unknown account is not created


def test_launch_refused_in_the_web_without_approval(app, world: World) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "olga")
    r = c.post("/campaigns/that-twilio/launch", data={"csrf_token": csrf(c, "/")},
               follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Chưa được phép" in page and "needs the approval of a second person" in page
    with reports.report_connection(world.db.engine) as conn:
        assert reports.campaign_report(conn, "that-twilio")["deliveries"] == 0


def test_web_serve_defaults_to_loopback_and_checks_the_secret(world: World,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import outreach.web as webapp
    from outreach.cli import main

    seen: dict = {}
    monkeypatch.setattr(webapp, "serve", lambda db, host, port, **kw: seen.update(
        host=host, port=port, **kw))
    monkeypatch.setenv("OUTREACH_WEB_SECRET_KEY", "short")
    r = CliRunner().invoke(main, ["--database-url", str(world.db.url), "web", "serve"])
    assert r.exit_code == 2 and "at least 32 characters" in r.output
    monkeypatch.setenv("OUTREACH_WEB_SECRET_KEY", "s" * 40)
    r = CliRunner().invoke(main, ["--database-url", str(world.db.url), "web", "serve",
                                  "--trusted-header", "X-Remote-User"])
    assert r.exit_code == 0, r.output
    assert (seen["host"], seen["port"], seen["trusted_header"], seen["trusted_proxies"]) == (
        "127.0.0.1", 8000, "X-Remote-User", ("127.0.0.1", "::1"))
    assert "s" * 40 not in r.output


def test_a_missing_campaign_file_is_one_clear_message(app, world: World) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "vera")
    world.mock_file.rename(world.mock_file.with_suffix(".moved"))
    r = c.get("/campaigns/thu-mock")
    page = r.get_data(as_text=True)
    assert r.status_code == 404 and "Không đọc được tệp chiến dịch" in page
    assert "thu-mock.toml" in page and "Traceback" not in page
    assert c.get("/campaigns/khong-co").status_code == 404

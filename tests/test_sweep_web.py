"""The dashboard's answers for an unknown campaign (a Vietnamese 404 naming the known ones, JSON
for the JSON routes, no traceback) and its Vietnamese percentage."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from outreach.input import campaigns
from outreach.sending import ops
from outreach.web import create_app
from tests.test_web import login
from tests.web_helpers import World, make_world

KNOWN = "Không có chiến dịch nope trong cơ sở dữ liệu này; các chiến dịch: that-twilio, thu-mock."
UNKNOWN_PAGES = ["/campaigns/nope", "/campaigns/nope/chua-nhan", "/campaigns/nope/bao-cao.html",
                 "/campaigns/nope/bao-cao.xlsx", "/campaigns/nope/chua-nhan?whole=1"]
UNKNOWN_JSON = ["/campaigns/nope/report.json", "/campaigns/nope/progress.json"]


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = make_world(tmp_path)
    ops.launch(w.db, campaigns.load(w.mock_file), operator="olga")
    ops.launch(w.db, campaigns.load(w.twilio_file), operator="olga", gateway="outbox")
    return w


@pytest.fixture
def app(world: World):  # type: ignore[no-untyped-def]
    return create_app(world.db, secret_key="k" * 32)


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.mark.parametrize("path", UNKNOWN_PAGES)
def test_an_unknown_campaigns_page_is_the_vietnamese_404_without_a_traceback(
        app, path: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "olga")
    with caplog.at_level(logging.DEBUG):
        r = c.get(path)
    page = r.get_data(as_text=True)
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert "<h1>Lỗi 404</h1>" in page and KNOWN in text_of(page)
    assert "Internal Server Error" not in page and "Not Found" not in page
    assert "Traceback" not in caplog.text and not [x for x in caplog.records if x.exc_info]


@pytest.mark.parametrize("path", UNKNOWN_JSON)
def test_an_unknown_campaigns_json_is_a_json_404_in_vietnamese(
        app, path: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "vera")
    with caplog.at_level(logging.DEBUG):
        r = c.get(path)
    assert r.status_code == 404 and r.mimetype == "application/json"
    assert r.get_json() == {"error": KNOWN}
    assert not [x for x in caplog.records if x.exc_info]


def test_the_actions_of_an_unknown_campaign_are_a_404_too(  # type: ignore[no-untyped-def]
        app) -> None:
    from tests.test_web import csrf

    c = app.test_client()
    login(c, "adam")
    token = csrf(c, "/")
    for action in ("launch", "submit", "approve", "pause"):
        r = c.post(f"/campaigns/nope/{action}", data={"csrf_token": token})
        assert r.status_code == 404 and KNOWN in text_of(r.get_data(as_text=True)), action


def test_nobody_signed_in_learns_the_campaign_names(app) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    r = c.get("/campaigns/nope/chua-nhan")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    r = c.get("/campaigns/nope/report.json")
    assert r.status_code == 401 and "thu-mock" not in r.get_data(as_text=True)


def test_an_unknown_page_keeps_its_vietnamese_404(app) -> None:  # type: ignore[no-untyped-def]
    c = app.test_client()
    login(c, "vera")
    r = c.get("/khong-co-trang-nay")
    assert r.status_code == 404 and "Không tìm thấy trang." in r.get_data(as_text=True)
    assert "The requested URL" not in r.get_data(as_text=True)


def test_a_refusal_under_a_page_is_its_message_not_a_500(  # type: ignore[no-untyped-def]
        app, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach.reporting import reports

    def refuse(*_a, **_k):  # type: ignore[no-untyped-def]
        raise ops.OperatorError("không đọc được báo cáo")

    monkeypatch.setattr(reports, "campaign_report", refuse)
    c = app.test_client()
    login(c, "vera")
    r = c.get("/campaigns/thu-mock/report.json")
    assert r.status_code == 400 and r.get_json() == {"error": "Không đọc được báo cáo."}
    r = c.get("/campaigns/thu-mock/chua-nhan")
    assert r.status_code == 400 and "Không đọc được báo cáo." in r.get_data(as_text=True)


def test_the_progress_percentage_is_written_the_vietnamese_way(  # type: ignore[no-untyped-def]
        app) -> None:
    c = app.test_client()
    login(c, "vera")
    page = c.get("/campaigns/thu-mock").get_data(as_text=True)
    assert '(<span data-live="percent">100,0%</span>)' in page
    assert "100.0" not in text_of(page)
    p = c.get("/campaigns/thu-mock/progress.json").get_json()
    assert p["percent"] == 100.0 and p["percent_text"] == "100,0%"

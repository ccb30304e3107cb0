"""An output tour: the read commands an operator uses day to day, run through the real CLI over
one small world (a campaign with rejected list rows, an opt-out, a run paused by its error rate
after a few deliveries, citizens' replies, carrier broadcasts asked for), read in Vietnamese
with no English prose, and in English with ``--lang en``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from outreach.cli import main
from outreach.clock import FakeClock
from outreach.gateways.mock import MockGateway
from outreach.ledger.db import Database
from outreach.receipts import inbound
from outreach.sending import ops
from tests.helpers import english_words, fresh_db, in_window, load, numbers, write_campaign

CID = "test-campaign"
PHONES = numbers(60)
#: Rows of the list that are not phone numbers: rejected at import.
BAD = ["12345", "không có số"]
CARRIERS = """
[carriers]
operators = ["Viettel", "VinaPhone"]
area = ["92"]
start_date = 2024-07-25
end_date = 2024-07-30
daily_start = "08:00"
daily_end = "20:00"
reply_by = 2024-07-19
results_by = 2024-08-01
report_deadline = 2024-08-03
warn_days = 5
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Database, Path]:
    """``test-campaign``: 60 numbers and 2 rejected rows; the first number opted out; the
    gateway accepts the next five, then every request fails to connect, so run 1 is paused by
    its error rate; two replies from citizens (an opt-out keyword and a message)."""
    tmp = tmp_path_factory.mktemp("tour")
    path = write_campaign(tmp, phones=[*PHONES, *BAD], extra=CARRIERS)
    db = fresh_db(tmp)
    r = CliRunner().invoke(main, ["--database-url", db.url, "--lang", "en", "--operator", "lan",
                                  "optout", "add", PHONES[0]], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    clock = FakeClock(in_window())
    mock = MockGateway(script={p: ["accept"] for p in PHONES[1:6]}, default="timeout_before",
                       sleep=clock.sleep)
    rep = ops.launch(db, load(path), gateways={"sms": mock}, clock=clock).report
    assert rep is not None and rep.stopped == "error-rate"
    with db.engine.begin() as conn:
        for i, (n, text) in enumerate(((PHONES[2], "TC"), (PHONES[3], "Cảm ơn cán bộ"))):
            inbound.record_inbound(conn, inbound.Inbound(
                channel="sms", gateway="mock", provider_message_id=f"IN{i}", sender=n, text=text,
                received_at=in_window() + dt.timedelta(hours=1 + i)))
    return db, path


def run(db: Database, lang: str, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["--database-url", db.url, "--lang", lang, "--wide", *args],
                           catch_exceptions=False, input="")
    return r.exit_code, r.stdout + r.stderr


def one(text: str) -> str:
    return " ".join(text.split())


def vi(db: Database, *args: str) -> str:
    code, out = run(db, "vi", *args)
    assert code == 0, out
    assert "Traceback" not in out and english_words(out) == [], out
    return one(out)


def en(db: Database, *args: str) -> str:
    code, out = run(db, "en", *args)
    assert code == 0, out
    return one(out)


def commands(path: Path) -> dict[str, tuple[str, ...]]:
    f = str(path)
    return {
        "check": ("campaign", "check", f),
        "dry-run": ("campaign", "launch", f, "--dry-run", "--gateway", "outbox"),
        "report": ("report", CID),
        "deliveries": ("deliveries", "list", CID),
        "not-reached": ("deliveries", "list", CID, "--not-reached"),
        "lookup": ("deliveries", "lookup", PHONES[6]),
        "runs": ("runs", "list", CID),
        "optout": ("optout", "list"),
        "inbox": ("inbox", "list", "--all"),
        "carriers": ("carriers", "status", CID, "--today", "2024-07-30"),
        "audit": ("audit", "list"),
    }


#: A phrase each command must show, in Vietnamese and in English.
PHRASES = {
    "check": ("bị loại: thiếu chữ số", "rejected: too-short"),
    "dry-run": ("CHẠY THỬ, không gửi tin nào", "DRY RUN, nothing sent"),
    "report": ("30/07/2024 60 ", "2024-07-30 60 "),
    "deliveries": ("không kết nối được tới nhà cung cấp", "connect-failed"),
    "not-reached": ("Người nhận chưa nhận được tin", "connect-failed"),
    "lookup": ("bộ gửi tin", "dispatcher"),
    "runs": ("tạm dừng", "paused"),
    "optout": ("người dân nhắn từ khóa từ chối", "Suppression list"),
    "inbox": ("Hộp thư phản hồi", "Inbox"),
    "carriers": ("VinaPhone: THIẾU KẾT QUẢ", "VinaPhone: RESULTS MISSING"),
    "audit": ("thêm số từ chối nhận tin", "optout-add"),
}


@pytest.mark.parametrize("name", list(PHRASES))
def test_tour_in_vietnamese(world: tuple[Database, Path], name: str) -> None:
    db, path = world
    text = vi(db, *commands(path)[name])
    assert PHRASES[name][0] in text, text


@pytest.mark.parametrize("name", list(PHRASES))
def test_tour_in_english(world: tuple[Database, Path], name: str) -> None:
    db, path = world
    text = en(db, *commands(path)[name])
    assert PHRASES[name][1] in text, text
    assert english_words(text), text  # English prose, not Vietnamese


def test_report_shows_reason_labels_in_vietnamese(
        world: tuple[Database, Path]) -> None:
    db, _ = world
    text = vi(db, "report", CID)
    assert "không kết nối được tới nhà cung cấp: chưa gửi" in text
    assert "số trong danh sách từ chối nhận tin" in text
    assert "connect-failed" not in text and "suppressed" not in text
    english = en(db, "report", CID)
    assert "connect-failed" in english and "Failure reasons" in english


def test_report_json_and_csv_keep_codes(world: tuple[Database, Path]) -> None:
    db, _ = world
    code, out = run(db, "vi", "report", CID, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert {r["error_reason"] for r in data["failure_reasons"]} >= {"connect-failed"}
    code, out = run(db, "vi", "report", CID, "--format", "csv", "--by", "reasons")
    assert code == 0 and "connect-failed" in out


def test_official_html_report_in_vietnamese(world: tuple[Database, Path], tmp_path: Path) -> None:
    db, _ = world
    out = tmp_path / "bao-cao.html"
    text = vi(db, "report", CID, "--official", "--out", str(out))
    assert "bao-cao.html" in text
    html = out.read_text(encoding="utf-8")
    assert "Không kết nối được tới nhà cung cấp" in html
    assert "BÁO CÁO" in html


def web_client(db: Database, user: str) -> FlaskClient:
    """A test client of the web application signed in as ``user`` (the accounts of
    :func:`tests.web_helpers.add_accounts`, added once)."""
    from outreach import users
    from outreach.web import create_app
    from tests.test_web import login
    from tests.web_helpers import add_accounts

    with db.engine.connect() as conn:
        known = users.get(conn, user)
    if known is None:
        add_accounts(db)
    client = create_app(db, secret_key="k" * 32).test_client()
    login(client, user)
    return client


def test_dashboard_shows_reason_labels_and_the_run_reason_in_vietnamese(
        world: tuple[Database, Path]) -> None:
    client = web_client(world[0], "vera")
    page = client.get(f"/campaigns/{CID}").get_data(as_text=True)
    assert "Không kết nối được tới nhà cung cấp; tin chưa được gửi" in page
    assert "Số điện thoại trong danh sách từ chối nhận tin" in page
    assert "lần gửi gần nhất bị lỗi (ngưỡng 50%)" in page
    assert "sends failed" not in page and ">connect-failed<" not in page
    missing = client.get(f"/campaigns/{CID}/chua-nhan").get_data(as_text=True)
    assert "Không kết nối được tới nhà cung cấp; tin chưa được gửi" in missing


def test_official_reason_wording_falls_back_to_the_console_label() -> None:
    from outreach import i18n
    from outreach.reporting import official

    before = i18n.current()
    i18n.set_language("en")
    try:
        assert official.reason_vi("connect-failed") == official.REASON_VI["connect-failed"]
        assert official.reason_vi("network") == "Lỗi mạng"
        assert official.reason_vi("too-long:channels[0].text").startswith("Quá dài so với giới hạn của cổng gửi")
        assert official.reason_vi("provider-own-code") == "provider-own-code"
        assert official.run_reason_vi("paused by the operator") == "cán bộ vận hành đã tạm dừng"
        assert i18n.current() == "en"
    finally:
        i18n.set_language(before)


def test_dashboard_opt_outs_and_audit_log_in_vietnamese(world: tuple[Database, Path]) -> None:
    client = web_client(world[0], "adam")
    page = client.get("/tu-choi").get_data(as_text=True)
    assert "người dân nhắn từ khóa từ chối" in page and "cán bộ vận hành nhập" in page
    assert "tin trả lời của người dân qua mock" in page
    assert ">citizen-request<" not in page and ">reply:mock<" not in page
    log = client.get("/nhat-ky").get_data(as_text=True)
    assert "thêm số từ chối nhận tin" in log and "bắt đầu gửi" in log
    assert ">optout-add<" not in log
    assert "đợt gửi: 1" in log and "lý do: người dân yêu cầu" in log  # details in words
    assert "{&#34;" not in log and '{"' not in log  # not the stored JSON

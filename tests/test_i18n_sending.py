"""The sending stage in Vietnamese (``--lang vi``): why a run paused or waits (error rate, send
window, daily cap), the runs table, the deliveries table with reason labels, the schedule and
scheduler commands, database errors; ``--lang en`` is unchanged; the database, JSON and CSV
keep the English reasons and the reason codes."""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import i18n
from outreach.cli import main
from outreach.clock import VN_TZ, FakeClock
from outreach.gateways.mock import MockGateway
from outreach.ledger.db import Database
from outreach.ledger.models import Run
from outreach.sending import ops, reasons
from outreach.sending.engine import RunEngine
from tests.helpers import (english_words, fresh_db, in_window, load, numbers, seed_run,
                           write_campaign)

CAP = '[schedule]\nsend_time = "08:00"\ndaily_cap = 3\n'


def run(db: Database, lang: str, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["--database-url", db.url, "--lang", lang, "--wide", *args],
                           catch_exceptions=False)
    return r.exit_code, r.stdout + r.stderr


def one(text: str) -> str:
    return " ".join(text.split())


def vi(db: Database, *args: str, code: int = 0) -> str:
    """A command's output in Vietnamese: its exit code, no English prose, no traceback (click's
    usage lines name English metavars and are left out)."""
    got, out = run(db, "vi", *args)
    assert got == code, out
    lines = [x for x in out.splitlines() if not x.startswith(("Cách dùng:", "Chạy '"))]
    text = "\n".join(lines)
    assert "Traceback" not in text and english_words(text) == [], text
    return one(text)


def en(db: Database, *args: str, code: int = 0) -> str:
    got, out = run(db, "en", *args)
    assert got == code, out
    return one(out)


def status_reason(db: Database, run_id: int = 1) -> tuple[str, str]:
    with db.engine.connect() as conn:
        row = conn.execute(Run.__table__.select().where(Run.id == run_id)).mappings().one()
    return row["status"], row["status_reason"]


# -- a run paused by its error rate ---------------------------------------------------------------

@pytest.fixture
def failing(tmp_path: Path) -> Database:
    """Run 1 of ``test-campaign`` (60 recipients) paused by its error rate: every request
    failed to connect (``connect-failed``)."""
    spec = load(write_campaign(tmp_path, n=60))
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    mock = MockGateway(default="timeout_before", sleep=clock.sleep)
    rep = ops.launch(db, spec, gateways={"sms": mock}, clock=clock).report
    assert rep is not None and rep.stopped == "error-rate"
    return db


def test_error_rate_pause_is_stored_in_english_and_shown_in_vietnamese(failing: Database) -> None:
    status, stored = status_reason(failing)
    assert status == "paused"
    assert stored.startswith("100% of the last ") and "sends failed (threshold 50%)" in stored
    text = vi(failing, "runs", "list", "test-campaign")
    assert "Các đợt gửi" in text or "đợt gửi" in text
    assert "tạm dừng" in text
    assert "100% trong " in text and "lần gửi gần nhất bị lỗi (ngưỡng 50%)" in text
    assert ("đợt gửi được tạm dừng thay vì gửi hỏng cả danh sách — hãy kiểm tra cổng gửi rồi "
            "chạy `outreach campaign resume`") in text
    english = en(failing, "runs", "list", "test-campaign")
    assert "paused" in english and "sends failed (threshold 50%)" in english
    assert "burning through the list" in english
    # the JSON keeps the stored English reason and the status code
    code, out = run(failing, "vi", "runs", "list", "test-campaign", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert rows[0]["status"] == "paused" and rows[0]["reason"] == stored


def test_deliveries_list_shows_reason_labels_and_keeps_codes_in_json_and_csv(
        failing: Database, tmp_path: Path) -> None:
    text = vi(failing, "deliveries", "list", "test-campaign", "--status", "failed")
    assert "thất bại" in text or "lỗi" in text
    assert "không kết nối được tới nhà cung cấp: chưa gửi" in text
    assert "connect-failed" not in text
    english = en(failing, "deliveries", "list", "test-campaign", "--status", "failed")
    assert "connect-failed" in english and "không kết nối" not in english
    code, out = run(failing, "vi", "deliveries", "list", "test-campaign", "--status", "failed",
                    "--format", "json")
    assert code == 0
    assert {d["error_reason"] for d in json.loads(out)} == {"connect-failed"}
    csv = tmp_path / "failed.csv"
    vi(failing, "deliveries", "list", "test-campaign", "--status", "failed", "--export", str(csv))
    assert "connect-failed" in csv.read_text(encoding="utf-8-sig")


def test_deliveries_lookup_shows_the_reason_label_and_vietnamese_times(failing: Database) -> None:
    # a number whose send failed (which ones were tried before the pause depends on the
    # threads: the others went back to the queue)
    from outreach.ledger.models import Delivery

    with failing.engine.connect() as conn:
        address = conn.execute(Delivery.__table__.select().with_only_columns(Delivery.address)
                               .where(Delivery.status == "failed").order_by(Delivery.id)
                               .limit(1)).scalar_one()
    national = "0" + address[3:]
    text = vi(failing, "deliveries", "lookup", national)
    assert f"{national[:3]}****{national[-3:]}" in text and "lỗi" in text
    assert "(không kết nối được tới nhà cung cấp: chưa gửi)" in text
    assert " ngày 30/07/2024" in text and "2024-07-30" not in text
    english = en(failing, "deliveries", "lookup", national)
    assert "connect-failed" in english and "2024-07-30" in english


def test_resume_refusal_names_the_paused_run_in_vietnamese(failing: Database, tmp_path: Path) -> None:
    """A second launch is refused with the paused run's reason translated."""
    text = vi(failing, "campaign", "launch", str(tmp_path / "test-campaign.toml"),
              "--gateway", "mock", "--override-window", "--yes", code=1)
    assert "đã có đợt gửi #1" in text
    assert "tạm dừng: 100% trong " in text and "lần gửi gần nhất bị lỗi" in text


# -- the send window and the daily cap ------------------------------------------------------------

def test_window_closed_reason_in_vietnamese(tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=2))
    db = fresh_db(tmp_path)
    late = dt.datetime(2024, 7, 30, 23, 0, tzinfo=VN_TZ)
    run_id = seed_run(db, spec, late)
    i18n.set_language("vi")  # a Vietnamese operator's process stores the English reason too
    try:
        with RunEngine(db, spec, run_id, {"sms": MockGateway()}, clock=FakeClock(late)) as eng:
            kind, why, nxt = eng.check(late)
    finally:
        i18n.set_language("en")
    assert kind == "window" and nxt == dt.datetime(2024, 7, 31, 7, 0, tzinfo=VN_TZ)
    assert why == "outside the daily send window 07:00–22:00 Asia/Ho_Chi_Minh (now 23:00)"
    status, stored = status_reason(db, run_id)
    assert status == "waiting"
    assert stored == ("send window closed: outside the daily send window 07:00–22:00 "
                      "Asia/Ho_Chi_Minh (now 23:00)")
    text = vi(db, "runs", "list")
    assert ("khung giờ gửi đã đóng: ngoài khung giờ gửi hằng ngày 07:00–22:00 "
            "Asia/Ho_Chi_Minh (bây giờ là 23:00)") in text
    assert "30/07/2024" in text
    assert stored in en(db, "runs", "list")


def test_daily_cap_stop_of_a_launch_in_vietnamese(tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=10, schedule=CAP))
    db = fresh_db(tmp_path)
    rep = ops.launch(db, spec, gateways={"sms": MockGateway()}, clock=FakeClock(in_window())).report
    assert rep is not None and rep.stopped == "daily-cap"
    assert status_reason(db) == ("waiting", "daily cap of 3 messages reached")
    text = vi(db, "runs", "list")
    assert "đã đạt giới hạn 3 tin nhắn mỗi ngày" in text and "chờ khung giờ gửi" in text
    i18n.set_language("vi")
    try:
        assert reasons.run_reason(rep.reason) == "đã đạt giới hạn 3 tin mỗi ngày"
        assert i18n._(rep.stopped) == "giới hạn mỗi ngày"
    finally:
        i18n.set_language("en")
    assert reasons.run_reason(rep.reason) == "daily cap of 3 reached"


def test_lateness_reason_with_vietnamese_time_and_numbers() -> None:
    stored = reasons.english(
        "the run was due at {due} and is {late} min late, past the lateness limit of {limit} "
        "min; not sent late silently (resume with --allow-late to send anyway)",
        due="2024-07-30 08:00", late=1500, limit=120)
    i18n.set_language("vi")
    try:
        shown = reasons.run_reason(stored)
    finally:
        i18n.set_language("en")
    assert shown == ("đợt gửi đến hạn lúc 08:00 ngày 30/07/2024 và đã trễ 1.500 phút, quá giới "
                     "hạn trễ 120 phút; không tự gửi muộn (tiếp tục với --allow-late để vẫn gửi)")
    assert reasons.run_reason(stored) == stored
    assert reasons.run_reason("a gateway's own words") == "a gateway's own words"


def test_every_stored_reason_template_is_known_and_translated() -> None:
    """Every ``reasons.english(N_("…"))`` in the sending stage names a template of
    :data:`reasons.RUN_REASONS` (else it would be shown in English), and each has a
    Vietnamese translation with the same placeholders."""
    root = Path(__file__).resolve().parent.parent / "outreach"
    used = set()
    for path in [*root.glob("sending/*.py"), *root.glob("ledger/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "english" and node.args):
                for arg in ast.walk(node.args[0]):
                    if isinstance(arg, ast.Call) and getattr(arg.func, "id", "") == "N_":
                        used.add(arg.args[0].value)  # type: ignore[attr-defined]
    assert len(used) >= 30
    assert used - set(reasons.RUN_REASONS) == set()
    i18n.set_language("vi")
    try:
        import re

        for t in reasons.RUN_REASONS:
            tr = i18n._(t)
            assert tr != t, t
            assert sorted(re.findall(r"\{\w+\}", tr)) == sorted(re.findall(r"\{\w+\}", t)), t
        for code in reasons.LABELS:
            assert english_words(reasons.label(code)) == [], code
    finally:
        i18n.set_language("en")


def test_prefixed_codes_have_labels() -> None:
    i18n.set_language("vi")
    try:
        assert (reasons.label("too-long:channels[0].text (170/160 chars)")
                == "quá dài so với giới hạn của cổng gửi: channels[0].text (170/160 chars)")
        assert reasons.label("missing-field:ward") == "thiếu cột dữ liệu của người nhận này: ward"
        assert reasons.label("suppressed") == "số trong danh sách từ chối nhận tin"
        assert reasons.label("provider-42") == "provider-42"
    finally:
        i18n.set_language("en")
    assert reasons.label("suppressed") == "suppressed"


# -- schedules ------------------------------------------------------------------------------------

def test_schedule_commands_in_vietnamese(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    ended = write_campaign(tmp_path, n=2, cid="da-xong", schedule=CAP)
    text = vi(db, "schedule", "add", str(ended), code=1)
    assert "chiến dịch da-xong đã kết thúc ngày 30/09/2024: không còn lượt gửi hằng ngày nào để " \
           "lập lịch" in text
    assert "ended on" in en(db, "schedule", "add", str(ended), code=1)
    path = write_campaign(tmp_path, n=2, cid="hang-ngay", start="2026-01-01", end="2099-12-31",
                          schedule=CAP)
    text = vi(db, "schedule", "add", str(path))
    assert "hang-ngay" in text and "01/01/2026" in text and "31/12/2099" in text
    listed = vi(db, "schedule", "list")
    assert "hang-ngay" in listed and " ngày " in listed and "UTC" in listed
    assert "lịch gửi của hang-ngay" in vi(db, "schedule", "pause", "hang-ngay")
    text = vi(db, "schedule", "pause", "khong-co", code=1)
    assert "chiến dịch khong-co không có lịch gửi (xem `outreach schedule list`)" in text
    assert "has no schedule" in en(db, "schedule", "pause", "khong-co", code=1)
    out = vi(db, "scheduler", "run", "--once")
    assert re.search(r"^\[\d\d:\d\d:\d\d ngày \d\d/\d\d/\d{4}\] không có gì đến hạn", out, re.M), out
    out = en(db, "scheduler", "run", "--once")
    assert re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+07\] nothing due", out, re.M), out


def test_scheduler_tick_lines_in_vietnamese(tmp_path: Path) -> None:
    from outreach.sending import scheduling
    from outreach.sending.engine import RunReport

    res = scheduling.TickResult("c1", "created", dt.date(2024, 7, 30), 7,
                                report=RunReport(7, counts={"sent": 1234, "queued": 5},
                                                 stopped="daily-cap",
                                                 reason="daily cap of 1234 reached",
                                                 resume_at=dt.datetime(2024, 7, 31, 1, 0,
                                                                       tzinfo=dt.timezone.utc)),
                                detail="1239 deliveries, 5 skipped: already sent today")
    i18n.set_language("vi")
    try:
        line = res.describe()
    finally:
        i18n.set_language("en")
    assert line == ("c1 30/07/2024 đợt gửi #7: đã tạo — đang chờ 5, đã gửi 1.234; dừng (giới "
                    "hạn mỗi ngày): đã đạt giới hạn 1.234 tin mỗi ngày, tiếp tục sau 08:00 ngày "
                    "31/07/2024 (1.239 tin nhắn, bỏ qua 5 tin: hôm nay đã gửi)")
    assert english_words(line) == []
    assert res.describe().startswith("c1 2024-07-30 run #7: created — queued 5, sent 1,234; "
                                     "stopped (daily-cap): daily cap of 1234 reached")


# -- database errors ------------------------------------------------------------------------------

def test_database_errors_name_the_file_and_the_cause_in_vietnamese(tmp_path: Path) -> None:
    broken = tmp_path / "hong.db"
    broken.write_bytes(b"this is not a database file at all" * 200)
    db = Database.__new__(Database)
    db.url = f"sqlite:///{broken}"
    text = vi(db, "runs", "list", code=1)
    assert str(broken) in text and "bị hỏng" in text
    missing = Database.__new__(Database)
    missing.url = f"sqlite:///{tmp_path / 'khong-co' / 'x.db'}"
    text = vi(missing, "runs", "list", code=1)
    assert "thư mục" in text and "không tồn tại" in text and str(tmp_path / "khong-co") in text
    assert "does not exist" in en(missing, "runs", "list", code=1)


# -- workers --------------------------------------------------------------------------------------

def test_worker_lines_in_vietnamese(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_HOME", str(tmp_path / "home"))
    spec = load(write_campaign(tmp_path, n=3))
    db = fresh_db(tmp_path)
    seed_run(db, spec, in_window())
    text = vi(db, "worker", "--gateway", "outbox", "--exit-when-done", "--idle", "0.05")
    assert "đợt gửi #1: hoàn thành" in text
    assert "không còn đợt gửi nào cần gửi" in text
    assert status_reason(db)[0] == "completed"
    other = load(write_campaign(tmp_path, phones=numbers(2, start=100), cid="c2"))
    assert seed_run(db, other, in_window()) == 2
    english = en(db, "worker", "--gateway", "outbox", "--exit-when-done", "--idle", "0.05")
    assert "run #2: completed" in english and "no run left to send" in english

"""Citizens' replies, opt-outs and the operator commands around them in Vietnamese
(``--lang vi``): inbox, optout, webhooks, users, secrets, privacy, report, message and
gateways read in Vietnamese, errors included, with times as ``08:00 ngày 30/07/2024``;
``--lang en`` is unchanged; JSON and CSV keep codes and ISO UTC times."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import i18n
from outreach.cli import main
from outreach.ledger.db import Database
from outreach.receipts import inbound
from tests.helpers import english_words, fresh_db, numbers
from tests.test_inbound import T0, seed_ledger

SENDERS = numbers(3, start=400)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    """Campaign ``c1`` (run 1 running) with three SMS replies: TC (opt-out) on 30/07/2024,
    "Cảm ơn, số tôi là <number>" on 31/07 and "tu choi" (opt-out) on 01/08, each at 08:00
    Vietnamese time."""
    d = fresh_db(tmp_path)
    seed_ledger(d, SENDERS)
    texts = ("TC", f"Cảm ơn, số tôi là {SENDERS[1]}", "tu choi")
    with d.engine.begin() as conn:
        for i, (n, text) in enumerate(zip(SENDERS, texts)):
            inbound.record_inbound(conn, inbound.Inbound(
                channel="sms", gateway="twilio", provider_message_id=f"SM{i}", sender=n,
                text=text, received_at=T0 + dt.timedelta(days=i)))
    return d


def run(db: Database, lang: str, *args: str, first: tuple[str, ...] = ()) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--database-url", db.url, "--lang", lang, "--wide", *first,
                                  *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def one(text: str) -> str:
    return " ".join(text.split())


def vi_ok(db: Database, *args: str, first: tuple[str, ...] = ()) -> str:
    code, out, err = run(db, "vi", *args, first=first)
    assert code == 0, out + err
    assert english_words(out + err) == [], out + err
    return one(out + err)


def vi_error(db: Database, *args: str, code: int = 1) -> str:
    """The error lines of a failing command (click's usage lines name the English metavars of
    the whole CLI and are left out)."""
    got, out, err = run(db, "vi", *args)
    assert got == code, out + err
    lines = [x for x in (out + err).splitlines()
             if not x.startswith(("Cách dùng:", "Chạy '"))]
    text = "\n".join(lines)
    assert "Traceback" not in text and english_words(text) == [], text
    return one(text)


def en(db: Database, *args: str, code: int = 0) -> str:
    got, out, err = run(db, "en", *args)
    assert got == code, out + err
    return one(out + err)


# -- inbox -----------------------------------------------------------------------------------------

def test_inbox_list_in_vietnamese_with_vietnamese_times(db: Database) -> None:
    text = vi_ok(db, "inbox", "list", "--all")
    assert "Hộp thư phản hồi (3)" in text
    assert "thời điểm nhận" in text and "người gửi" in text and "tin xác nhận" in text
    assert "08:00 ngày 30/07/2024" in text and "08:00 ngày 01/08/2024" in text
    assert "từ chối nhận tin" in text and "chờ gửi" in text and "tin nhắn" in text
    assert "2024-07-30T01:00:00" not in text
    only_messages = vi_ok(db, "inbox", "list")
    assert "Hộp thư phản hồi (1)" in only_messages and "08:00 ngày 31/07/2024" in only_messages


def test_inbox_list_in_english_is_unchanged_and_json_keeps_codes_and_utc(db: Database) -> None:
    text = en(db, "inbox", "list", "--all")
    assert "Inbox (3)" in text and "received_at" in text and "confirmation" in text
    assert "08:00 30/07/2024" in text and "optout" in text and "pending" in text
    code, out, _ = run(db, "vi", "inbox", "list", "--all", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [r["received_at"] for r in rows] == ["2024-07-30T01:00:00+00:00",
                                                "2024-07-31T01:00:00+00:00",
                                                "2024-08-01T01:00:00+00:00"]
    assert [r["kind"] for r in rows] == ["optout", "message", "optout"]
    assert rows[0]["confirmation"] == "pending"


def test_inbox_numbers_masked_unless_show_numbers(db: Database) -> None:
    masked = vi_ok(db, "inbox", "list")
    assert "096****401" in masked and SENDERS[1] not in masked
    whole = vi_ok(db, "inbox", "list", first=("--show-numbers",))
    assert SENDERS[1] in whole and "****" not in whole


def test_inbox_counts_in_vietnamese(db: Database) -> None:
    text = vi_ok(db, "inbox", "counts")
    assert ("phản hồi 3; từ chối nhận tin 2 (từ chối nhận tin 2, đăng ký nhận lại 0, "
            "bỏ quan tâm 0, tin nhắn 1)") in text
    assert "Phản hồi theo từ khóa" in text and "Phản hồi theo chiến dịch" in text
    assert "Phản hồi theo ngày" in text and "30/07/2024" in text and "2024-07-30" not in text
    english = en(db, "inbox", "counts")
    assert "replies 3; opt-outs 2 (optout 2, optin 0, unfollow 0, message 1)" in english
    assert "Replies by day" in english and "2024-07-30" in english


def test_inbox_export_in_vietnamese_and_the_file_keeps_utc(db: Database, tmp_path: Path) -> None:
    out = tmp_path / "inbox.csv"
    text = vi_ok(db, "inbox", "export", str(out), "--all")
    assert f"đã ghi 3 phản hồi vào {out} (số điện thoại đầy đủ" in text
    body = out.read_text(encoding="utf-8-sig")
    assert "2024-07-30T01:00:00+00:00" in body and SENDERS[0] in body
    assert "3 replies written to" in en(db, "inbox", "export", str(tmp_path / "e.csv"), "--all")


# -- optout ----------------------------------------------------------------------------------------

def test_optout_list_in_vietnamese_with_vietnamese_times(db: Database) -> None:
    text = vi_ok(db, "optout", "list")
    assert "Danh sách từ chối nhận tin (2)" in text and "mọi kênh" in text
    assert "sms: người dân nhắn 'TC' lúc 08:00 ngày 30/07/2024 (phản hồi #1)" in text
    assert "096****400" in text and SENDERS[0] not in text
    assert " ngày " in text.split("(phản hồi #1)")[1].split("│")[1]
    whole = vi_ok(db, "optout", "list", first=("--show-numbers",))
    assert SENDERS[0] in whole and "096****400" not in whole


def test_optout_list_in_english_and_json_unchanged(db: Database) -> None:
    text = en(db, "optout", "list")
    assert "Suppression list (2)" in text and "│ all " in text
    assert "sms reply 'TC' at 2024-07-30T01:00:00+00:00 (inbound #1)" in text
    code, out, _ = run(db, "vi", "optout", "list", "--format", "json")
    entry = json.loads(out)[0]
    assert code == 0 and entry["channels"] == "all" and entry["reason"] == "reply-keyword"
    assert dt.datetime.fromisoformat(entry["created_at"]).utcoffset() == dt.timedelta(0)


def test_optout_errors_in_vietnamese(db: Database) -> None:
    text = vi_error(db, "optout", "add", "123")
    assert "'123' không phải số di động" in text and "không thay đổi gì" in text


# -- webhooks and the inbound settings -------------------------------------------------------------

def test_webhooks_serve_errors_in_vietnamese(db: Database, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    text = vi_error(db, "webhooks", "serve", code=2)
    assert "TWILIO_AUTH_TOKEN chưa đặt" in text
    bad = tmp_path / "bad.toml"
    bad.write_text('[scope]\nsms_keyword = "zalo"\n', encoding="utf-8")
    monkeypatch.setenv("OUTREACH_INBOUND_FILE", str(bad))
    text = vi_error(db, "webhooks", "serve", "--no-twilio")
    assert f"{bad}: scope.sms_keyword phải là một trong all, sms, nhận được 'zalo'" in text
    english = en(db, "webhooks", "serve", "--no-twilio", code=1)
    assert f"{bad}: scope.sms_keyword must be one of all, sms, got 'zalo'" in english


def test_inbound_settings_errors_in_vietnamese(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[keywords\n", encoding="utf-8")
    clash = tmp_path / "clash.toml"
    clash.write_text('[keywords]\noptout = ["DK"]\noptin = ["dk"]\n', encoding="utf-8")
    i18n.set_language("vi")
    try:
        with pytest.raises(inbound.InboundConfigError) as bad_toml:
            inbound.load_settings(broken)
        with pytest.raises(inbound.InboundConfigError) as both:
            inbound.load_settings(clash)
        with pytest.raises(inbound.InboundConfigError) as missing:
            inbound.load_settings(tmp_path / "none.toml")
    finally:
        i18n.set_language("en")
    assert f"{broken}: không phải tệp TOML hợp lệ (dòng 1, cột 10)" in str(bad_toml.value)
    assert "từ khóa 'dk' vừa là optout vừa là optin" in str(both.value)
    assert "không đọc được tệp cấu hình phản hồi (không có tệp này)" in str(missing.value)
    for exc in (bad_toml, both, missing):
        assert english_words(str(exc.value).replace(str(tmp_path), "")) == [], exc.value
    with pytest.raises(inbound.InboundConfigError, match="keyword 'dk' is both optout and optin"):
        inbound.load_settings(clash)


# -- users and secrets -----------------------------------------------------------------------------

def test_users_in_vietnamese(db: Database) -> None:
    assert "đã thêm tài khoản" in vi_ok(db, "users", "add", "lan", "--role", "viewer",
                                        "--no-password")
    assert "lan" in vi_ok(db, "users", "list")
    assert "Không có" not in vi_ok(db, "users", "disable", "lan")
    assert "không có tài khoản 'nobody'" in vi_error(db, "users", "disable", "nobody")
    assert "tên tài khoản 'x y': 2–64 ký tự" in vi_error(db, "users", "add", "X Y", "--role",
                                                         "viewer", "--no-password")
    assert "tài khoản 'lan' đã có" in vi_error(db, "users", "add", "lan", "--role", "viewer",
                                               "--no-password")
    assert "no user 'nobody'" in en(db, "users", "disable", "nobody", code=1)


def test_secrets_in_vietnamese(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUTREACH_SECRET_KEY", raising=False)
    assert "cơ sở dữ liệu không lưu thông tin bí mật nào" in vi_ok(db, "secrets", "status")
    text = vi_error(db, "secrets", "rotate")
    assert "OUTREACH_SECRET_KEY chưa đặt: mã truy cập của nhà cung cấp được mã hóa" in text
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "not-a-key")
    assert "OUTREACH_SECRET_KEY: khóa thứ 1 không phải khóa Fernet" in vi_error(
        db, "secrets", "rotate")
    assert "key #1 is not a Fernet key" in en(db, "secrets", "rotate", code=1)


# -- privacy ---------------------------------------------------------------------------------------

def test_privacy_in_vietnamese(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUTREACH_PURGE_KEY", raising=False)
    text = vi_ok(db, "privacy", "purge", "--older-than", "1", "--dry-run")
    assert "giữ c1: đợt gửi #1 đang ở trạng thái đang chạy" in text
    text = vi_error(db, "privacy", "purge", "--older-than", "1")
    assert "chưa có khóa để xóa dữ liệu: hãy đặt OUTREACH_PURGE_KEY" in text
    monkeypatch.setenv("OUTREACH_PURGE_KEY", "short")
    assert "khóa trong OUTREACH_PURGE_KEY dài 5 byte; cần ít nhất 16" in vi_error(
        db, "privacy", "purge", "--older-than", "1")
    text = vi_ok(db, "privacy", "check")
    assert "các bảng (số dòng; số dòng còn dữ liệu cá nhân):" in text
    assert "`inbound_messages` 3 dòng, 3 còn dữ liệu cá nhân; chưa xóa" in text
    assert "purge --older-than 90 sẽ không xóa gì" in text
    assert "không bị xóa khi dọn dữ liệu" in text
    english = en(db, "privacy", "check")
    assert "tables (rows; rows still holding personal data):" in english
    assert "kept c1: run #1 is running" in english


# -- report and message ----------------------------------------------------------------------------

def test_report_replies_line_in_vietnamese(db: Database, tmp_path: Path) -> None:
    text = vi_ok(db, "report", "c1")
    assert ("phản hồi của người dân 3 (từ chối nhận tin 2, tin nhắn 1); "
            "từ khóa: TC 1, TU CHOI 1") in text
    assert ("replies from citizens 3 (optout 2, message 1); keywords: TC 1, TU CHOI 1"
            in en(db, "report", "c1"))
    assert "--official cần --out TỆP.docx" in vi_error(db, "report", "c1", "--official",
                                                       code=2)
    assert "--official ghi tệp .docx, .pdf hoặc .html" in vi_error(
        db, "report", "c1", "--official", "--out", str(tmp_path / "r.txt"), code=2)


def test_message_inspect_in_vietnamese(db: Database) -> None:
    text = vi_ok(db, "message", "inspect", "Xin chào")
    assert "phần tin" in text
    assert vi_error(db, "message", "inspect", "")


# -- gateways --------------------------------------------------------------------------------------

@pytest.mark.parametrize("gateway, env, expected", [
    ("twilio", {}, "Twilio cần mã tài khoản (TWILIO_ACCOUNT_SID)"),
    ("twilio", {"TWILIO_ACCOUNT_SID": "AC123"},
     "TWILIO_ACCOUNT_SID phải là 'AC' và 32 chữ số thập lục phân"),
    ("zalo", {}, "thiếu mã ứng dụng Zalo: hãy đặt ZALO_APP_ID"),
    ("smpp", {}, "SMPP cần OUTREACH_SMPP_HOST, OUTREACH_SMPP_SYSTEM_ID và OUTREACH_SMPP_PASSWORD"),
    ("smpp", {"OUTREACH_SMPP_HOST": "127.0.0.1", "OUTREACH_SMPP_SYSTEM_ID": "x",
              "OUTREACH_SMPP_PASSWORD": "p", "OUTREACH_SMPP_WINDOW": "0"},
     "OUTREACH_SMPP_WINDOW phải từ 1 đến 1000"),
    ("esms", {}, "eSMS cần OUTREACH_ESMS_API_KEY và OUTREACH_ESMS_SECRET_KEY"),
    ("nope", {}, "không có cổng gửi 'nope'; các cổng gửi có:"),
])
def test_gateways_check_errors_in_vietnamese(db: Database, monkeypatch: pytest.MonkeyPatch,
                                            gateway: str, env: dict[str, str],
                                            expected: str) -> None:
    for var in ("TWILIO_ACCOUNT_SID", "ZALO_APP_ID", "OUTREACH_SMPP_HOST",
                "OUTREACH_ESMS_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert expected in vi_error(db, "gateways", "check", gateway)


def test_gateways_check_in_english_unchanged(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("ZALO_APP_ID", raising=False)
    assert ("twilio: missing-account-sid: Twilio needs an account SID (TWILIO_ACCOUNT_SID)"
            in en(db, "gateways", "check", "twilio", code=1))
    assert "Zalo app id missing: set ZALO_APP_ID" in en(db, "gateways", "check", "zalo", code=1)
    assert "│ ok │ True │" in en(db, "gateways", "check", "mock")


def test_gateways_check_facts_in_vietnamese(db: Database) -> None:
    text = vi_ok(db, "gateways", "check", "mock")
    assert "cổng gửi mock" in text and "│ kiểm tra đạt │ có │" in text

"""Operator commands found speaking codes or showing whole numbers (optout, deliveries lookup,
gateways check, carriers, users, approve): numbers masked unless --show-numbers, reasons and
roles in words, real values or Vietnamese placeholders in hints; English unchanged where it
already read as words."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from outreach import i18n, users
from outreach.carriers import registry, results
from outreach.cli import main
from outreach.ledger.db import Database
from tests.conftest import CAMPAIGN_FILE
from tests.fakes.twilio_server import FakeTwilio, twilio_server  # noqa: F401  (fixture)
from tests.helpers import english_words
from tests.test_reports import CID, db  # noqa: F401  (fixture)

F = str(CAMPAIGN_FILE)


def run(db: Database, lang: str, *args: str, env: dict[str, str] | None = None
        ) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--database-url", db.url, "--lang", lang, "--wide", *args],
                           catch_exceptions=False, env=env)
    return r.exit_code, " ".join(r.stdout.split()), " ".join(r.stderr.split())


def vi(db: Database, *args: str, code: int = 0) -> str:
    """Standard output and error of a Vietnamese command on one line, without click's usage
    lines (they name the English metavars of the whole CLI)."""
    r = CliRunner().invoke(main, ["--database-url", db.url, "--lang", "vi", "--wide", *args],
                           catch_exceptions=False)
    assert r.exit_code == code, r.stdout + r.stderr
    lines = [x for x in (r.stdout + r.stderr).splitlines()
             if not x.startswith(("Cách dùng:", "Chạy '"))]
    assert "Traceback" not in r.stderr
    return " ".join(" ".join(lines).split())


# -- 1, 2: numbers masked, reasons in words ------------------------------------------------------

@pytest.mark.parametrize("args, masked, reason_vi, reason_en", [
    (("optout", "add", "02923555123"), "'029*****123'",
     "số cố định: không nhận được tin nhắn SMS", "landline"),
    (("optout", "add", "090555001234"), "'090******234'", "thừa chữ số", "too-long"),
    (("optout", "add", "0905550"), "'090*550'", "không phải số điện thoại Việt Nam hợp lệ",
     "invalid"),
    (("optout", "add", "abc"), "'abc'", "là chữ, không phải số điện thoại", "not-a-number"),
    (("optout", "remove", "02923555123"), "'029*****123'",
     "số cố định: không nhận được tin nhắn SMS", "landline"),
])
def test_optout_refusals_mask_the_number_and_give_the_reason_in_words(
        db: Database, args: tuple[str, ...], masked: str, reason_vi: str,
        reason_en: str) -> None:
    text = vi(db, *args, code=1)
    assert f"Lỗi: {masked} không phải số di động ({reason_vi}); không thay đổi gì" in text
    assert english_words(text) == [], text
    code, out, err = run(db, "en", *args)
    assert code == 1 and f"Error: {masked} is not a mobile number ({reason_en}); nothing " \
        "was changed" in err
    if masked != "'abc'":
        assert args[-1] not in out + err
    code, out, err = run(db, "vi", "--show-numbers", *args)  # whole only when asked for
    assert code == 1 and f"'{args[-1]}' không phải số di động ({reason_vi})" in err


def test_lookup_refusal_masks_the_number_and_gives_the_reason_in_words(db: Database) -> None:
    text = vi(db, "deliveries", "lookup", "02923555123", code=2)
    assert ("'029*****123' không phải số di động (số cố định: không nhận được tin nhắn SMS)"
            in text) and "02923555123" not in text
    code, _, err = run(db, "en", "deliveries", "lookup", "02923555123")
    assert code == 2 and "'029*****123' is not a mobile number (landline)" in err
    code, _, err = run(db, "vi", "--show-numbers", "deliveries", "lookup", "02923555123")
    assert code == 2 and "'02923555123' không phải số di động" in err


def test_optout_import_names_skipped_rows_with_the_reason_in_words(db: Database,
                                                                  tmp_path: Path) -> None:
    f = tmp_path / "opt.csv"
    f.write_text("phone\n0905550001\nabc\n", encoding="utf-8")
    code, out, err = run(db, "vi", "optout", "import", str(f))
    assert code == 0 and f"{f}:3: bỏ qua (là chữ, không phải số điện thoại)" in err
    code, out, err = run(db, "en", "optout", "import", str(f))
    assert code == 0 and f"{f}:3: skipped (not-a-number)" in err


# -- 3: gateways check ---------------------------------------------------------------------------

@pytest.mark.parametrize("gateway, expected_vi, code_en", [
    ("twilio", "twilio: Twilio cần mã tài khoản (TWILIO_ACCOUNT_SID)", "missing-account-sid"),
    ("zalo", "zalo: thiếu mã ứng dụng Zalo: hãy đặt ZALO_APP_ID", "app-id"),
    ("smpp", "smpp: SMPP cần OUTREACH_SMPP_HOST, OUTREACH_SMPP_SYSTEM_ID và "
     "OUTREACH_SMPP_PASSWORD", "configuration"),
    ("esms", "esms: eSMS cần OUTREACH_ESMS_API_KEY và OUTREACH_ESMS_SECRET_KEY",
     "missing-credentials"),
    ("nosuch", "nosuch: không có cổng gửi 'nosuch'; các cổng gửi có:", "unknown-gateway"),
])
def test_gateways_check_errors_without_english_codes(db: Database,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     gateway: str, expected_vi: str,
                                                     code_en: str) -> None:
    for var in ("OUTREACH_SMPP_HOST", "OUTREACH_ESMS_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    text = vi(db, "gateways", "check", gateway, code=1)
    assert f"Lỗi: {expected_vi}" in text and code_en + ":" not in text
    code, _, err = run(db, "en", "gateways", "check", gateway)
    assert code == 1 and f"{gateway}: {code_en}:" in err  # English: as it always was


def test_gateways_check_facts_in_words(db: Database) -> None:
    text = vi(db, "gateways", "check", "outbox")
    assert "│ cổng gửi │ outbox │" in text and "│ kiểm tra đạt │ có │" in text
    assert "│ gateway " not in text and "│ ok " not in text
    code, out, _ = run(db, "en", "gateways", "check", "outbox")
    assert code == 0 and "│ gateway │ outbox │" in out and "│ ok │ True │" in out


# -- 4: carriers list ----------------------------------------------------------------------------

def test_carriers_list_shows_no_format_placeholder(db: Database) -> None:
    text = vi(db, "carriers", "list")
    assert "{place}" not in text
    assert "Viettel <địa phương>" in text and "VNPT <địa phương>" in text
    assert "(đầu mối phụ trách khu vực <địa phương>)" in text
    assert ("<địa phương>: địa phương của chiến dịch (carriers.letter.place), được ghi vào "
            "từng công văn đề nghị") in text
    code, out, _ = run(db, "en", "carriers", "list")
    assert code == 0 and "{place}" not in out and "Viettel <place>" in out
    assert "<place>: the campaign's place (carriers.letter.place), written into each" in out
    code, out, _ = run(db, "vi", "carriers", "list", "--format", "json")  # data as stored
    assert json.loads(out)[0]["contact"]["unit"] == "Viettel {place}"
    assert registry.unit_for("Viettel {place}", "Cần Thơ") == "Viettel Cần Thơ"
    assert registry.unit_for("Viettel {place}", None) == "Viettel"
    assert registry.unit_for("iTel (khu vực {place})", "") == "iTel (khu vực)"


# -- 5: hints with the real values or Vietnamese placeholders ------------------------------------

def test_carriers_request_hint_names_what_is_known(db: Database, tmp_path: Path) -> None:
    text = vi(db, "carriers", "request", F, "--out", str(tmp_path / "a"), "--no-pdf")
    assert ("tiếp theo: gửi công văn, rồi chạy `outreach carriers mark cantho-2024-pcmbn "
            "--carrier TÊN requested --number SỐ --date NGÀY` (hoặc chạy lại với --email)"
            in text)
    text = vi(db, "carriers", "request", F, "--out", str(tmp_path / "b"), "--no-pdf",
              "--carrier", "viettel", "--number", "12/STTTT-TTBCXB")
    assert ("`outreach carriers mark cantho-2024-pcmbn --carrier Viettel requested --number "
            "12/STTTT-TTBCXB --date NGÀY`") in text
    code, out, _ = run(db, "en", "carriers", "request", F, "--out", str(tmp_path / "c"),
                       "--no-pdf")
    assert code == 0 and ("next: send the letters, then `outreach carriers mark "
                          "cantho-2024-pcmbn --carrier NAME requested --number N --date DATE` "
                          "(or re-run with --email)") in out


def test_deliveries_list_of_a_campaign_never_launched_names_its_file(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "mk-test.toml").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    text = vi(db, "deliveries", "list", "mk-test", code=1)
    assert ("chiến dịch mk-test chưa từng được gửi trong cơ sở dữ liệu này (`outreach campaign "
            "launch campaigns/mk-test.toml`)") in text
    code, _, err = run(db, "en", "deliveries", "list", "mk-test")
    assert code == 1 and ("campaign mk-test was never launched in this database (`outreach "
                          "campaign launch campaigns/mk-test.toml`)") in err
    text = vi(db, "deliveries", "list", "nothere", code=1)  # no file: the placeholder, in Vietnamese
    assert "(`outreach campaign launch TỆP.toml`)" in text


def test_approve_hint_names_the_account(db: Database) -> None:
    assert run(db, "vi", "--operator", "olga", "campaign", "submit", F)[0] == 0
    text = vi(db, "--operator", "anna", "campaign", "approve", CID, code=1)
    assert ("'anna' không phải tài khoản người phê duyệt hoặc quản trị đang hoạt động "
            "(`outreach users add anna --role approver`)") in text
    code, _, err = run(db, "en", "--operator", "anna", "campaign", "approve", CID)
    assert code == 1 and ("'anna' is not an active approver or admin account (`outreach users "
                          "add anna --role approver`)") in err
    env = {"PW": "a-long-password"}
    assert run(db, "vi", "users", "add", "dan", "--role", "operator", "--password-env", "PW",
               env=env)[0] == 0
    text = vi(db, "--operator", "dan", "campaign", "approve", CID, code=1)
    assert ("(dan có vai trò cán bộ vận hành; người phê duyệt mới duyệt được: `outreach "
            "--operator TÊN campaign approve cantho-2024-pcmbn`)") in text
    assert run(db, "vi", "users", "add", "anna", "--role", "approver", "--password-env", "PW",
               env=env)[0] == 0
    assert run(db, "vi", "users", "disable", "anna")[0] == 0
    text = vi(db, "--operator", "anna", "campaign", "approve", CID, code=1)
    assert "(`outreach users enable anna`)" in text
    assert run(db, "vi", "users", "enable", "anna")[0] == 0
    text = vi(db, "--operator", "anna", "campaign", "approve", CID)
    assert "đã duyệt cantho-2024-pcmbn" in text
    text = vi(db, "--operator", "olga", "campaign", "approve", CID, code=1)  # nothing pending
    assert "chưa có yêu cầu phê duyệt" in text and "users add" not in text


# -- 6: the carrier sheet ------------------------------------------------------------------------

def test_carrier_sheet_in_the_interface_language(db: Database, tmp_path: Path) -> None:
    vi(db, "carriers", "request", F, "--out", str(tmp_path / "vi"), "--no-pdf", "--carrier",
       "Viettel")
    stem = tmp_path / "vi" / "cantho-2024-pcmbn-viettel"
    with open(stem.with_suffix(".csv"), encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:10] == ["chiến dịch", "nhà mạng", "số công văn", "phương án",
                                  "nội dung", "bảng mã", "số ký tự", "số đơn vị mã",
                                  "số phần tin", "vừa một tin nhắn"]
    assert list(rows[0])[-1] == "thư điện tử"
    assert [(r["phương án"], r["bảng mã"], r["vừa một tin nhắn"]) for r in rows] == [
        ("nguyên văn có dấu", "UCS-2", "không"), ("nguyên văn không dấu", "GSM-7", "không")]
    sheet = openpyxl.load_workbook(stem.with_suffix(".xlsx"))["Tin nhắn"]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:4] == ("chiến dịch", "nhà mạng", "số công văn", "phương án")
    assert values[1][3] == "nguyên văn có dấu" and values[1][9] == "không"
    run(db, "en", "carriers", "request", F, "--out", str(tmp_path / "en"), "--no-pdf",
        "--carrier", "Viettel")
    with open(tmp_path / "en" / "cantho-2024-pcmbn-viettel.csv", encoding="utf-8-sig",
              newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:4] == ["campaign", "carrier", "letter_number", "option"]
    assert [(r["option"], r["fits_one_sms"]) for r in rows] == [("prescribed", "no"),
                                                                ("unaccented", "no")]


# -- 7: a results file that cannot be opened -----------------------------------------------------

def test_results_file_that_cannot_be_opened_says_why_in_vietnamese(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "t" / "missing.csv"
    text = vi(db, "carriers", "result", F, str(missing), "--carrier", "Viettel", code=1)
    assert f"{missing}: không mở được: không tìm thấy tệp" in text
    assert "No such file" not in text and "dòng không dùng được" not in text
    code, _, err = run(db, "en", "carriers", "result", F, str(missing), "--carrier", "Viettel")
    assert code == 1 and f"{missing}: cannot open: file not found" in err
    assert results.read(missing, scopes=[], start=dt.date(2024, 7, 25), end=dt.date(
        2024, 7, 30))[1][0].reason == "cannot open: file not found"
    i18n.set_language("vi")
    assert results.open_error(tmp_path) == "đây là một thư mục, không phải tệp"

    def refused(*_a: object, **_k: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results, "open", refused, raising=False)
    assert results.open_error(missing) == "không có quyền đọc tệp"
    i18n.set_language("en")
    assert results.open_error(missing) == "no permission to read it"


# -- 8: roles in words ---------------------------------------------------------------------------

def test_users_roles_in_words_codes_in_json(db: Database) -> None:
    env = {"PW": "a-long-password"}
    code, out, _ = run(db, "vi", "users", "add", "bob", "--role", "approver",
                       "--password-env", "PW", env=env)
    assert code == 0 and "đã thêm tài khoản bob (vai trò người phê duyệt)" in out
    text = vi(db, "users", "list")
    assert "┃ tài khoản ┃ tên ┃ vai trò ┃ đang hoạt động ┃" in text
    assert "│ bob │ │ Người phê duyệt │ có │" in text
    assert "approver" not in text and "đang nhận tin" not in text
    code, out, _ = run(db, "en", "users", "list")
    assert code == 0 and "│ bob │ │ approver │ yes │" in out and "active" in out
    code, out, _ = run(db, "vi", "users", "list", "--format", "json")
    assert json.loads(out)[0]["role"] == "approver"
    from outreach import web

    assert web.ROLE_VI is users.ROLE_VI  # one table for the dashboard and the console
    i18n.set_language("en")
    assert users.role_label("admin") == "admin"
    i18n.set_language("vi")
    assert users.role_label("admin") == "Quản trị"
    assert users.role_label("operator", in_sentence=True) == "cán bộ vận hành"
    i18n.set_language("en")


def test_twilio_check_refusal_in_vietnamese(twilio_server: FakeTwilio) -> None:  # noqa: F811
    from outreach.cli.gateways import check_error
    from outreach.gateways import base
    from outreach.gateways.twilio import TwilioGateway

    twilio_server.account_status = "suspended"
    for lang, expected in (
            ("vi", "twilio: tài khoản Twilio đang ở trạng thái suspended (mã 20005)"),
            ("en", "twilio: account-inactive (code 20005): Twilio account is suspended")):
        i18n.set_language(lang)
        with pytest.raises(base.AuthenticationError) as info:
            TwilioGateway(**twilio_server.gateway_options()).check()
        assert check_error("twilio", info.value) == expected
    i18n.set_language("en")

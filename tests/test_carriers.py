"""Carrier broadcasts: the [carriers] section, request letters and sheets, e-mail, follow-up,
the operators' figures and their place in the reports (plan 126/KH-UBND, section II.6.b)."""

from __future__ import annotations

import csv
import datetime as dt
import email
import json
import re
import socket
from email.message import Message
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from docx import Document

from outreach.input import campaigns
from outreach.reporting import official, reports
from outreach.input import text as textmod
from outreach.carriers import areas, ledger, registry, results
from outreach.ledger.db import Database
from outreach.ledger.models import AuditEntry, CarrierRequest, CarrierResult
from tests.conftest import CAMPAIGN_FILE, PLAN_TEXT
from tests.test_official_report import _Tables
from tests.test_reports import CID, cli, db, seed, seeded  # noqa: F401  (fixtures)

UNACCENTED = ("Toan dan tich cuc tham gia phong, chong mua ban nguoi. Khi phat hien dau hieu lien "
              "quan den mua ban nguoi hay thong bao ngay cho co quan Cong an noi gan nhat hoac Tong "
              "dai quoc gia 111 de duoc tu van, ho tro, huong dan kip thoi")
SHORT = ("Toan dan tich cuc phong, chong mua ban nguoi. Phat hien dau hieu mua ban nguoi, hay bao "
         "ngay Cong an noi gan nhat hoac Tong dai 111 de duoc tu van, ho tro.")
ALL = ["Viettel", "VinaPhone", "MobiFone", "Vietnamobile", "Gmobile", "iTel", "Reddi"]
CANTHO_DISTRICTS = {"916": "Quận Ninh Kiều", "917": "Quận Ô Môn", "918": "Quận Bình Thủy",
                    "919": "Quận Cái Răng", "923": "Quận Thốt Nốt", "924": "Huyện Vĩnh Thạnh",
                    "925": "Huyện Cờ Đỏ", "926": "Huyện Phong Điền", "927": "Huyện Thới Lai"}


def campaign_with(tmp_path: Path, extra: str = "", *, replace: dict[str, str] | None = None) -> Path:
    """The plan's campaign file with ``replace`` applied and ``extra`` TOML appended."""
    text = CAMPAIGN_FILE.read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "cantho-2024-pcmbn.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


SHORT_TOML = f"""
[carriers.short_text]
text = "{SHORT}"
sha256 = "{textmod.text_sha256(SHORT)}"
approved_by = "Ủy ban nhân dân thành phố Cần Thơ"
approved_on = 2024-07-10
approval_ref = "Công văn số 999/UBND-KT (tổng hợp)"
"""
CONTACTS_TOML = """
[carriers.contacts.Viettel]
unit = "Viettel Cần Thơ"
email = "viettel-ct@carrier.test"
verified = true

[carriers.contacts.VNPT]
email = "vnpt-ct@carrier.test"
"""


def docx_text(path: Path) -> tuple[list[str], list[list[list[str]]]]:
    doc = Document(str(path))
    paras = [p.text for p in doc.paragraphs]
    tables = [[[c.text for c in row.cells] for row in t.rows] for t in doc.tables]
    for t in doc.tables:  # the header and the signature block are tables too
        for row in t.rows:
            for c in row.cells:
                paras += [p.text for p in c.paragraphs]
    return paras, tables


# --- the campaign file ------------------------------------------------------------------------

def test_plan_campaign_asks_every_operator_for_the_city_before_the_report_deadline() -> None:
    spec = campaigns.load(CAMPAIGN_FILE)
    plan = spec.carriers
    assert plan.operators == tuple(ALL)
    assert plan.area == ("92",)
    assert (plan.start_date, plan.end_date) == (dt.date(2024, 7, 25), dt.date(2024, 7, 30))
    assert plan.report_deadline == dt.date(2024, 8, 3)  # plan III.1
    assert plan.reply_by < plan.start_date <= plan.end_date <= plan.results_by < plan.report_deadline
    assert plan.short_text is None  # nobody approved a shorter text: the file only proposes one
    assert json.loads(json.dumps(spec.to_json()))["carriers"]["area"] == ["92"]


@pytest.mark.parametrize("replace,extra,field,reason", [
    ({'warn_days = 5 ': 'warn_day = 5 '}, "", "carriers.warn_day", "unknown field"),
    ({'signer_title = "PHÓ GIÁM ĐỐC"': 'signer = "x"'}, "", "carriers.letter.signer",
     "unknown field"),
    ({'"Reddi"]': '"Reddi", "Beeline"]'}, "", "carriers.operators", "unknown operator 'Beeline'"),
    ({'"Reddi"]': '"Reddi", "Mobicast"]'}, "", "carriers.operators", "listed twice"),
    ({'area = ["92"]': 'area = ["99"]'}, "", "carriers.area", "no administrative unit has the code"),
    ({'area = ["92"]': 'area = [92]'}, "", "carriers.area", "official administrative codes"),
    ({"end_date = 2024-07-30": "end_date = 2024-10-30"}, "", "carriers.start_date",
     "inside the campaign's [window]"),
    ({"results_by = 2024-08-01": "results_by = 2024-08-03"}, "", "carriers.results_by",
     "before carriers.report_deadline"),
    ({"reply_by = 2024-07-19": "reply_by = 2024-07-26"}, "", "carriers.reply_by",
     "before the broadcast starts"),
    ({'daily_end = "20:00"': 'daily_end = "23:00"'}, "", "carriers.daily_end",
     "inside the daily send window"),
    ({}, "\n[carriers.contacts.Viettel]\nmail = \"x@y.test\"\n", "carriers.contacts.Viettel.mail",
     "unknown field"),
    ({}, SHORT_TOML.replace(SHORT, SHORT.replace("Toan dan", "Toàn dân"), 1),
     "carriers.short_text.text", "without diacritics"),
    ({}, SHORT_TOML.replace(SHORT, SHORT + " Cam on ban da doc tin nhan nay.", 1),
     "carriers.short_text.text", "at most 160"),
    ({}, SHORT_TOML.replace(textmod.text_sha256(SHORT), "0" * 64), "carriers.short_text.sha256",
     "edited after approval"),
    ({}, SHORT_TOML.replace('approved_by = "Ủy ban nhân dân thành phố Cần Thơ"\n', ""),
     "carriers.short_text.approved_by", "is required"),
])
def test_bad_carriers_section_names_file_field_and_reason(tmp_path: Path, replace: dict[str, str],
                                                          extra: str, field: str,
                                                          reason: str) -> None:
    path = campaign_with(tmp_path, extra, replace=replace)
    with pytest.raises(campaigns.CampaignError) as e:
        campaigns.load(path)
    assert e.value.field == field
    assert reason in e.value.reason
    assert str(path) in str(e.value)


def test_operators_and_aliases_come_from_the_data_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert [c.key for c in registry.carriers()] == ALL
    assert registry.find_carrier("vnpt").key == "VinaPhone"
    assert registry.find_carrier("WINTEL").key == "Gmobile"
    assert registry.find_carrier("Mobicast").key == "Reddi"
    assert registry.find_carrier("Beeline") is None
    edited = json.loads((Path(registry.__file__).parent / "data" / "carriers.json")
                        .read_text(encoding="utf-8"))
    edited["carriers"][0]["contact"]["email"] = "dau-moi@viettel.test"
    f = tmp_path / "carriers.json"
    f.write_text(json.dumps(edited, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv(registry.CARRIERS_FILE_ENV, str(f))
    assert registry.find_carrier("Viettel").contact.email == "dau-moi@viettel.test"
    f.write_text('{"carriers": [{"brand": "x"}]}', encoding="utf-8")
    with pytest.raises(registry.CarrierDataError, match=r"carriers\[0\]: needs a 'key'"):
        registry.carriers()


def test_areas_by_official_code_in_force_on_the_day() -> None:
    july = dt.date(2024, 7, 30)
    city = areas.lookup("92", july)
    assert (city.name, city.level) == ("Thành phố Cần Thơ", "province")
    assert {a.code: a.name for a in areas.children(city, july)} == CANTHO_DISTRICTS
    # 80 communes in the 9 districts in 2024 (domain-facts, "Cần Thơ 2024")
    assert sum(len(areas.children(d, july)) for d in areas.children(city, july)) == 80
    assert areas.find("Q. Ninh Kieu", [city], july).code == "916"
    assert areas.find("Cái Khế", [city], july).district == "Quận Ninh Kiều"
    assert areas.find("Hoàn Kiếm", [city], july) is None  # Hà Nội: outside the area
    with pytest.raises(areas.AreaError, match="'916'.*2025-08-01"):
        areas.lookup("916", dt.date(2025, 8, 1))  # no districts from 1 July 2025
    assert areas.lookup("92", dt.date(2025, 8, 1)).name == "Thành phố Cần Thơ"


# --- request letters and sheets -------------------------------------------------------------

def test_request_letters_and_sheets_for_every_operator(db: Database, tmp_path: Path) -> None:
    out = tmp_path / "letters"
    code, stdout, err = cli(db, "carriers", "request", str(CAMPAIGN_FILE), "--out", str(out),
                            "--number", "123/STTTT-TTBCXB", "--date", "2024-07-05")
    assert code == 0, err
    assert "the prescribed text is 227 characters (4 SMS with diacritics, 2 unaccented)" in \
        " ".join(stdout.split())
    sha = textmod.text_sha256(PLAN_TEXT)
    for carrier in ALL:
        stem = out / f"cantho-2024-pcmbn-{carrier.lower()}"
        paras, tables = docx_text(stem.with_suffix(".docx"))
        assert f"“{PLAN_TEXT}”" in paras  # byte for byte
        assert f"“{UNACCENTED}”" in paras
        body = "\n".join(paras)
        assert "Số: 123/STTTT-TTBCXB" in body
        assert "Cần Thơ, ngày 05 tháng 7 năm 2024" in body
        assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in body and "Độc lập - Tự do - Hạnh phúc" in body
        assert "Kế hoạch số 126/KH-UBND ngày 25/06/2024" in body
        assert f"227 ký tự; gửi có dấu là 4 tin nhắn (mã UCS-2); mã kiểm tra SHA-256: {sha}" in body
        assert "(227 ký tự, mã GSM-7, 2 tin nhắn ghép" in body
        assert "tối đa 160 ký tự một tin" in body
        assert "Chưa có nội dung rút gọn được phê duyệt" in body
        assert "Thành phố Cần Thơ (mã 92)" in body
        assert "từ ngày 25/07/2024 đến ngày 30/07/2024, trong khung giờ 08:00–20:00" in body
        assert "trước ngày 19/07/2024" in body and "trước ngày 01/08/2024" in body
        assert "trước ngày 03/08/2024" in body
        area_table = next(t for t in tables if t[0] == ["Mã", "Đơn vị hành chính", "Cấp"])
        assert {r[0]: r[1] for r in area_table[2:]} == CANTHO_DISTRICTS
        assert area_table[1][:2] == ["92", "Thành phố Cần Thơ"]

        with open(stem.with_suffix(".csv"), encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [(r["option"], r["encoding"], r["characters"], r["segments"], r["fits_one_sms"])
                for r in rows] == [("prescribed", "UCS-2", "227", "4", "no"),
                                   ("unaccented", "GSM-7", "227", "2", "no")]
        assert rows[0]["text"].encode("utf-8") == PLAN_TEXT.encode("utf-8")
        assert rows[0]["sha256"] == sha
        assert rows[1]["text"] == UNACCENTED
        assert rows[1]["sha256"] == textmod.text_sha256(UNACCENTED)
        assert {r["carrier"] for r in rows} == {carrier}
        assert rows[0]["area_codes"] == "92" and rows[0]["letter_number"] == "123/STTTT-TTBCXB"
        assert (rows[0]["start_date"], rows[0]["end_date"], rows[0]["results_by"],
                rows[0]["report_deadline"]) == ("2024-07-25", "2024-07-30", "2024-08-01",
                                                "2024-08-03")

        wb = openpyxl.load_workbook(stem.with_suffix(".xlsx"))
        assert wb.sheetnames == ["Tin nhắn", "Địa bàn", "Thông tin", "Báo cáo kết quả"]
        texts = [r[4] for r in wb["Tin nhắn"].iter_rows(min_row=2, values_only=True)]
        assert texts == [PLAN_TEXT, UNACCENTED]
        assert len(list(wb["Báo cáo kết quả"].iter_rows(min_row=2))) == 6 * 9  # days × districts
        pdf = stem.with_suffix(".pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and len(pdf) > 5000
    with db.engine.connect() as conn:
        reqs = conn.execute(CarrierRequest.__table__.select()).all()
        audits = conn.execute(AuditEntry.__table__.select()
                              .where(AuditEntry.action == "carrier-letter")).all()
    assert sorted(r.carrier for r in reqs) == sorted(ALL)
    assert {(r.status, r.letter_number, r.letter_date, r.text_sha256) for r in reqs} == {
        ("drafted", "123/STTTT-TTBCXB", dt.date(2024, 7, 5), sha)}
    assert len(audits) == 7 and all(a.text_sha256 == sha for a in audits)


def test_an_approved_short_text_is_offered_with_its_own_hash_and_approval(db: Database,
                                                                          tmp_path: Path) -> None:
    path = campaign_with(tmp_path, SHORT_TOML)
    out = tmp_path / "letters"
    code, stdout, err = cli(db, "carriers", "request", str(path), "--out", str(out), "--carrier",
                            "VinaPhone", "--no-pdf", "--format", "json")
    assert code == 0, err
    data = json.loads(stdout)
    assert [o["option"] for o in data["options"]] == ["prescribed", "unaccented", "short"]
    short = data["options"][2]
    assert (short["text"], short["characters"], short["segments"], short["fits_one"]) == \
        (SHORT, 155, 1, True)
    assert short["sha256"] == textmod.text_sha256(SHORT)
    paras, _ = docx_text(out / "cantho-2024-pcmbn-vinaphone.docx")
    body = "\n".join(paras)
    assert f"“{SHORT}”" in paras
    assert ("b) Nhắn nội dung rút gọn đã được phê duyệt (Ủy ban nhân dân thành phố Cần Thơ, ngày "
            "10/07/2024 (Công văn số 999/UBND-KT (tổng hợp))): 155 ký tự, mã GSM-7, 1 tin nhắn; "
            f"SHA-256: {textmod.text_sha256(SHORT)}") in body
    assert "Kính gửi: VNPT Cần Thơ" in body
    assert not (out / "cantho-2024-pcmbn-vinaphone.pdf").exists()  # --no-pdf
    with db.engine.connect() as conn:
        req = ledger.get(conn, CID, "VinaPhone")
    assert req.short_sha256 == textmod.text_sha256(SHORT)


def test_request_for_a_campaign_without_carriers_says_so(db: Database, tmp_path: Path) -> None:
    from tests.helpers import write_campaign

    path = write_campaign(tmp_path)
    code, _, err = cli(db, "carriers", "request", str(path))
    assert code == 1
    assert "no [carriers] section" in err and "Traceback" not in err


# --- e-mail ---------------------------------------------------------------------------------

class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Any:
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("OUTREACH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("OUTREACH_SMTP_PORT", str(port))
    monkeypatch.setenv("OUTREACH_SMTP_FROM", "so-tttt@department.test")
    monkeypatch.setenv("OUTREACH_SMTP_SECURITY", "none")
    try:
        yield inbox
    finally:
        controller.stop()


def test_letters_go_by_email_with_their_attachments(db: Database, tmp_path: Path,
                                                    smtp: _Inbox) -> None:
    path = campaign_with(tmp_path, CONTACTS_TOML)
    out = tmp_path / "letters"
    code, stdout, err = cli(db, "carriers", "request", str(path), "--out", str(out), "--email",
                            "--carrier", "Viettel", "--carrier", "VinaPhone", "--carrier",
                            "MobiFone", "--number", "45/STTTT-TTBCXB", "--date", "2024-07-05")
    assert code == 0, err
    assert "MobiFone: no e-mail address" in " ".join(err.split())
    assert sorted(r for rcpts, _ in smtp.messages for r in rcpts) == [
        "viettel-ct@carrier.test", "vnpt-ct@carrier.test"]
    for rcpts, msg in smtp.messages:
        assert msg["From"] == "so-tttt@department.test"
        carrier = "viettel" if rcpts == ["viettel-ct@carrier.test"] else "vinaphone"
        files = {p.get_filename(): p.get_payload(decode=True) for p in msg.walk()
                 if p.get_filename()}
        stem = f"cantho-2024-pcmbn-{carrier}"
        assert sorted(files) == sorted(f"{stem}.{x}" for x in ("docx", "pdf", "csv", "xlsx"))
        assert files[f"{stem}.docx"] == (out / f"{stem}.docx").read_bytes()
        paras, _ = docx_text(_save(tmp_path, files[f"{stem}.docx"]))
        assert f"“{PLAN_TEXT}”" in paras
        body = next(p for p in msg.walk() if p.get_content_type() == "text/plain"
                    and not p.get_filename()).get_payload(decode=True).decode("utf-8")
        assert "công văn số 45/STTTT-TTBCXB" in body
        assert "126/KH-UBND" in str(email.header.make_header(email.header.decode_header(
            msg["Subject"])))
    with db.engine.connect() as conn:
        st = {r.carrier: r for r in conn.execute(CarrierRequest.__table__.select())}
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).date()
    assert (st["Viettel"].status, st["Viettel"].requested_by, st["Viettel"].requested_on) == \
        ("requested", "email", today)
    assert st["VinaPhone"].status == "requested"
    assert st["MobiFone"].status == "drafted"


def _save(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "attached.docx"
    p.write_bytes(data)
    return p


def test_email_not_configured_or_refused_is_one_line(db: Database, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = campaign_with(tmp_path, CONTACTS_TOML)
    code, _, err = cli(db, "carriers", "request", str(path), "--out", str(tmp_path / "l"),
                       "--email", "--carrier", "Viettel", "--no-pdf")
    assert code == 1
    assert "e-mail is not configured: set OUTREACH_SMTP_HOST and OUTREACH_SMTP_FROM" in err
    monkeypatch.setenv("OUTREACH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("OUTREACH_SMTP_PORT", str(_free_port()))  # nobody listens
    monkeypatch.setenv("OUTREACH_SMTP_FROM", "so@department.test")
    monkeypatch.setenv("OUTREACH_SMTP_USER", "so")
    monkeypatch.setenv("OUTREACH_SMTP_PASSWORD", "s3cret-never-shown")
    monkeypatch.setenv("OUTREACH_SMTP_SECURITY", "none")
    code, out, err = cli(db, "carriers", "request", str(path), "--out", str(tmp_path / "l"),
                         "--email", "--carrier", "Viettel", "--no-pdf")
    assert code == 1
    assert "SMTP 127.0.0.1:" in err and "ConnectionRefusedError" in err
    assert "s3cret" not in err + out
    with db.engine.connect() as conn:
        assert ledger.get(conn, CID, "Viettel").status == "drafted"  # not marked requested


# --- follow-up ------------------------------------------------------------------------------

def test_status_moves_forward_only_and_every_change_is_audited(db: Database,
                                                               tmp_path: Path) -> None:
    f = str(CAMPAIGN_FILE)
    assert cli(db, "carriers", "request", f, "--out", str(tmp_path / "l"), "--no-pdf")[0] == 0
    steps = [("requested", "2024-07-06", "--by", "post"), ("confirmed", "2024-07-15"),
             ("broadcast", "2024-07-30")]
    for status, day, *more in steps:
        code, out, err = cli(db, "carriers", "mark", f, "--carrier", "viettel", status, "--date",
                             day, *more, operator="chuyen-vien")
        assert code == 0, err
    assert "Viettel confirmed → broadcast on 2024-07-30" in " ".join(out.split())
    code, _, err = cli(db, "carriers", "mark", f, "--carrier", "Viettel", "requested")
    assert code == 1
    assert "Viettel is already broadcast: a status only moves forward" in " ".join(err.split())
    code, _, err = cli(db, "carriers", "mark", f, "--carrier", "Reddi", "declined", "--date",
                       "2024-07-18", "--note", "không có thuê bao tại địa bàn")
    assert code == 0, err
    code, _, err = cli(db, "carriers", "mark", f, "--carrier", "Reddi", "confirmed")
    assert code == 1 and "declined on 2024-07-18" in err
    code, _, err = cli(db, "carriers", "mark", f, "--carrier", "Beeline", "confirmed")
    assert code == 1 and "unknown operator 'Beeline'" in err
    code, _, err = cli(db, "carriers", "mark", f, "--carrier", "Viettel", "confirmed", "--date",
                       "30.13.2024")
    assert code == 2 and "not a date" in err
    with db.engine.connect() as conn:
        v = ledger.get(conn, CID, "Viettel")
        log = [(a.operator, a.details) for a in conn.execute(
            AuditEntry.__table__.select().where(AuditEntry.action == "carrier-status")
            .order_by(AuditEntry.id))]
    assert (v.status, v.requested_on, v.confirmed_on, v.broadcast_on, v.requested_by) == (
        "broadcast", dt.date(2024, 7, 6), dt.date(2024, 7, 15), dt.date(2024, 7, 30), "post")
    assert [(d["carrier"], d["from"], d["to"], d["day"]) for _, d in log] == [
        ("Viettel", "drafted", "requested", "2024-07-06"),
        ("Viettel", "requested", "confirmed", "2024-07-15"),
        ("Viettel", "confirmed", "broadcast", "2024-07-30"),
        ("Reddi", "drafted", "declined", "2024-07-18")]
    assert log[0][0] == "chuyen-vien"


def test_status_flags_missing_results_close_to_the_report_deadline(db: Database,
                                                                    tmp_path: Path) -> None:
    f = str(CAMPAIGN_FILE)
    assert cli(db, "carriers", "request", f, "--out", str(tmp_path / "l"), "--no-pdf")[0] == 0
    for c in ALL:
        assert cli(db, "carriers", "mark", f, "--carrier", c, "requested", "--date",
                   "2024-07-06")[0] == 0
    assert cli(db, "carriers", "result", f, "--carrier", "Viettel", "--sent", "250000", "--date",
               "2024-07-30", "--received", "2024-07-31")[0] == 0

    def flags(today: str) -> dict[str, list[str]]:
        code, out, err = cli(db, "carriers", "status", f, "--today", today, "--format", "json")
        assert code == 0, err
        return {r["carrier"]: r["flags"] for r in json.loads(out)["carriers"]}

    early = flags("2024-07-10")
    assert early == {c: [] for c in ALL}
    late = flags("2024-07-29")  # 5 days before 3 August (warn_days = 5)
    assert late["Viettel"] == []
    for c in ALL[1:]:
        assert late[c] == ["no confirmation (due 2024-07-19)",
                           "RESULTS MISSING: the city's report is due 2024-08-03 (in 5 days)"]
    after = flags("2024-08-02")
    assert after["MobiFone"][-2:] == ["results overdue (due 2024-08-01)",
                                      "RESULTS MISSING: the city's report is due 2024-08-03 "
                                      "(in 1 day)"]
    code, out, _ = cli(db, "carriers", "status", f, "--today", "2024-08-02")
    text = " ".join(out.split())
    assert "results missing from VinaPhone, MobiFone, Vietnamobile, Gmobile, iTel, Reddi" in text
    assert "Viettel: letter Số /STTTT-TTBCXB of 2024-07-05" in text
    data = json.loads(cli(db, "carriers", "status", f, "--today", "2024-08-02", "--format",
                          "json")[1])
    viettel = data["carriers"][0]
    assert (viettel["status"], viettel["sent"], viettel["results_on"]) == \
        ("results", 250000, "2024-07-31")


# --- results --------------------------------------------------------------------------------

GOOD_CSV = """BÁO CÁO KẾT QUẢ NHẮN TIN TUYÊN TRUYỀN
Ngày,Mã,Quận/Huyện,Số thuê bao đã nhắn tin,Thành công
29/07/2024,916,Quận Ninh Kiều,"120.500","118.000"
29/07/2024,,Q. Bình Thủy,45000,44000
30/07/2024,919,,"98,700",
30/07/2024,,huyen co do,30200,
Tổng cộng,,,"294.400",
"""
BAD_CSV = """Ngày;Địa bàn;Số thuê bao
29/07/2024;Ninh Kiều;120500
2024-07-31;Ninh Kiều;100
30/07/2024;Hoàn Kiếm;5
30/07/2024;Cái Răng;-3
hôm qua;Cái Răng;10
29/07/2024;Quận Ninh Kiều;7
30/07/2024;Cờ Đỏ;2.5
"""


def test_results_from_csv_with_bad_rows_import_nothing_and_name_each_line(
        db: Database, tmp_path: Path) -> None:
    f = str(CAMPAIGN_FILE)
    bad = tmp_path / "viettel-bad.csv"
    bad.write_text(BAD_CSV, encoding="utf-8")
    code, _, err = cli(db, "carriers", "result", f, "--carrier", "Viettel", str(bad))
    assert code == 1
    lines = [x.replace(str(bad), "") for x in err.strip().splitlines()]
    assert lines == [
        ":3: day 2024-07-31 is outside the broadcast dates 2024-07-25 – 2024-07-30",
        ":4: area 'Hoàn Kiếm' is not an administrative unit of the requested area "
        "(Thành phố Cần Thơ (92))",
        ":5: count '-3' is not a whole number ≥ 0",
        ":6: day 'hôm qua' is not a date (write 30/07/2024 or 2024-07-30)",
        ":7: 2024-07-29 Quận Ninh Kiều already given on line 2",
        ":8: count '2.5' is not a whole number ≥ 0",
        "error: : 6 row(s) cannot be used; nothing imported"]
    with db.engine.connect() as conn:
        assert conn.execute(CarrierResult.__table__.select()).all() == []

    good = tmp_path / "viettel.csv"
    good.write_text(GOOD_CSV, encoding="utf-8-sig")
    code, out, err = cli(db, "carriers", "result", f, "--carrier", "Viettel", str(good),
                         operator="chuyen-vien")
    assert code == 0, err
    assert "4 figure(s) imported (4 new, 0 replaced), 294,400 subscribers" in " ".join(out.split())
    with db.engine.connect() as conn:
        rows = {(r.day.isoformat(), r.area_code): (r.area_name, r.sent, r.delivered, r.source)
                for r in conn.execute(CarrierResult.__table__.select())}
        audit_rows = conn.execute(AuditEntry.__table__.select().where(
            AuditEntry.action == "carrier-result")).all()
    assert rows == {
        ("2024-07-29", "916"): ("Quận Ninh Kiều", 120500, 118000, "viettel.csv:3"),
        ("2024-07-29", "918"): ("Quận Bình Thủy", 45000, 44000, "viettel.csv:4"),
        ("2024-07-30", "919"): ("Quận Cái Răng", 98700, None, "viettel.csv:5"),
        ("2024-07-30", "925"): ("Huyện Cờ Đỏ", 30200, None, "viettel.csv:6")}
    assert audit_rows[0].details["sent"] == 294400 and audit_rows[0].operator == "chuyen-vien"

    wrong_total = tmp_path / "viettel-total.csv"
    wrong_total.write_text(GOOD_CSV.replace('"294.400"', '"294.401"'), encoding="utf-8")
    code, _, err = cli(db, "carriers", "result", f, "--carrier", "Viettel", str(wrong_total))
    assert code == 1
    assert ":7: total 294401 does not equal the sum of the rows (294400)" in err

    nohead = tmp_path / "nohead.csv"
    nohead.write_text("a,b\n1,2\n", encoding="utf-8")
    code, _, err = cli(db, "carriers", "result", f, "--carrier", "Viettel", str(nohead))
    assert code == 1
    assert "nohead.csv:1: no header with a day and a count column" in " ".join(err.split())


def test_results_from_the_xlsx_form_the_request_wrote(db: Database, tmp_path: Path) -> None:
    f = str(CAMPAIGN_FILE)
    out = tmp_path / "l"
    assert cli(db, "carriers", "request", f, "--out", str(out), "--carrier", "MobiFone",
               "--no-pdf")[0] == 0
    form = out / "cantho-2024-pcmbn-mobifone.xlsx"
    wb = openpyxl.load_workbook(form)
    ws = wb["Báo cáo kết quả"]
    expected: dict[tuple[str, str], int] = {}
    for i, row in enumerate(ws.iter_rows(min_row=2), start=1):
        day = dt.datetime.strptime(row[0].value, "%d/%m/%Y").date().isoformat()
        row[3].value = 1000 + i  # a number cell, as Excel saves it
        expected[(day, row[1].value)] = 1000 + i
    wb.save(form)
    code, stdout, err = cli(db, "carriers", "result", f, "--carrier", "mobifone", str(form))
    assert code == 0, err
    total = sum(expected.values())
    assert f"54 figure(s) imported (54 new, 0 replaced), {total:,} subscribers" in \
        " ".join(stdout.split())
    with db.engine.connect() as conn:
        got = {(r.day.isoformat(), r.area_code): r.sent
               for r in conn.execute(CarrierResult.__table__.select())}
    assert got == expected
    # a corrected report replaces the same day and area
    ws = wb["Báo cáo kết quả"]
    ws.delete_rows(3, 53)
    ws.cell(row=2, column=4).value = 7
    wb.save(form)
    code, stdout, err = cli(db, "carriers", "result", f, "--carrier", "MobiFone", str(form))
    assert code == 0, err
    assert "1 figure(s) imported (0 new, 1 replaced)" in " ".join(stdout.split())


def test_results_typed_in_from_a_letter(db: Database, tmp_path: Path) -> None:
    f = str(CAMPAIGN_FILE)
    code, out, err = cli(db, "carriers", "result", f, "--carrier", "iTel", "--sent", "8200",
                         "--date", "30/07/2024", "--area", "926")
    assert code == 0, err
    code, _, err = cli(db, "carriers", "result", f, "--carrier", "iTel", "--sent", "10",
                       "--date", "2024-08-05")
    assert code == 1 and "outside the broadcast dates 2024-07-25 – 2024-07-30" in err
    code, _, err = cli(db, "carriers", "result", f, "--carrier", "iTel", "--sent", "10")
    assert code == 2 and "--sent needs --date" in err
    with db.engine.connect() as conn:
        (row,) = conn.execute(CarrierResult.__table__.select()).all()
    assert (row.carrier, row.day, row.area_code, row.area_name, row.sent) == (
        "iTel", dt.date(2024, 7, 30), "926", "Huyện Phong Điền", 8200)


@pytest.mark.parametrize("value,expected", [
    ("1234567", 1234567), ("1.234.567", 1234567), ("1,234,567", 1234567), ("1 234 567", 1234567),
    ("12.5", None), ("1.234,567", None), ("-3", None), ("", None), ("abc", None)])
def test_count_cells(value: str, expected: int | None) -> None:
    assert results.parse_count(value) == expected


@pytest.mark.parametrize("value,expected", [
    ("2024-07-30", dt.date(2024, 7, 30)), ("30/07/2024", dt.date(2024, 7, 30)),
    ("30/7/2024", dt.date(2024, 7, 30)), ("30.07.2024", dt.date(2024, 7, 30)),
    ("2024-07-30T00:00:00", dt.date(2024, 7, 30)), ("07/30/2024", None), ("30/07", None)])
def test_day_cells(value: str, expected: dt.date | None) -> None:
    assert results.parse_day(value) == expected


# --- reports --------------------------------------------------------------------------------

def _import_two_carriers(db: Database, tmp_path: Path) -> None:
    f = str(CAMPAIGN_FILE)
    assert cli(db, "carriers", "request", f, "--out", str(tmp_path / "l"), "--no-pdf",
               "--number", "77/STTTT-TTBCXB", "--date", "2024-07-05")[0] == 0
    good = tmp_path / "viettel.csv"
    good.write_text(GOOD_CSV, encoding="utf-8")
    assert cli(db, "carriers", "result", f, "--carrier", "Viettel", str(good))[0] == 0
    assert cli(db, "carriers", "result", f, "--carrier", "VinaPhone", "--sent", "99000",
               "--date", "2024-07-30")[0] == 0


def test_report_keeps_carrier_figures_apart_from_per_person_reach(seeded: Database,
                                                                   tmp_path: Path) -> None:
    with reports.report_connection(seeded.engine) as conn:
        before = reports.campaign_report(conn, CID)
    _import_two_carriers(seeded, tmp_path)
    code, out, err = cli(seeded, "report", CID, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    for key in ("recipients", "reached", "deliveries", "delivered", "by_district", "by_carrier"):
        assert data[key] == before[key], key
    cb = data["carrier_broadcasts"]
    assert cb["sent"] == 294400 + 99000
    assert cb["carriers"]["Viettel"]["sent"] == 294400
    assert cb["carriers"]["Viettel"]["delivered"] is None  # not every figure gave it
    assert cb["carriers"]["VinaPhone"]["sent"] == 99000
    assert cb["carriers"]["MobiFone"] == {"status": "drafted", "letter_number": "77/STTTT-TTBCXB",
                                          "letter_date": "2024-07-05", "requested_on": None,
                                          "results_on": None, "sent": 0, "delivered": None}
    assert cb["by_day"] == {"2024-07-29": {"Viettel": 165500},
                            "2024-07-30": {"Viettel": 128900, "VinaPhone": 99000}}
    assert cb["by_area"] == {"Huyện Cờ Đỏ (925)": {"Viettel": 30200},
                             "Quận Bình Thủy (918)": {"Viettel": 45000},
                             "Quận Cái Răng (919)": {"Viettel": 98700},
                             "Quận Ninh Kiều (916)": {"Viettel": 120500},
                             "(không rõ)": {"VinaPhone": 99000}}
    code, out, _ = cli(seeded, "report", CID)
    text = " ".join(out.split())
    assert "Carrier broadcasts (subscribers messaged as each operator reported: counts, not " \
           "people; not in recipients or reached)" in text
    xlsx = tmp_path / "report.xlsx"
    assert cli(seeded, "report", CID, "--format", "xlsx", "--out", str(xlsx))[0] == 0
    sheet = openpyxl.load_workbook(xlsx)["carrier_broadcasts"]
    by_day = [r for r in sheet.iter_rows(min_row=2, values_only=True) if r[1] not in ("", None,
                                                                                    "TOTAL")]
    assert [r for r in by_day if r[0] != "note"] == [
        ("Viettel", "2024-07-29", None, 165500), ("Viettel", "2024-07-30", None, 128900),
        ("VinaPhone", "2024-07-30", None, 99000)]
    total_row = next(line for line in out.splitlines() if "TOTAL" in line and "393,400" in line)
    assert re.fullmatch(r"│ TOTAL\s+(│\s+)+│\s+393,400 │", total_row.strip()), total_row


def test_official_report_carrier_tables_equal_the_imported_figures(seeded: Database,
                                                                   tmp_path: Path) -> None:
    with reports.report_connection(seeded.engine) as conn:
        before = reports.campaign_report(conn, CID)
    _import_two_carriers(seeded, tmp_path)
    html_path = tmp_path / "ket-qua.html"
    code, _, err = cli(seeded, "report", CID, "--official", "--out", str(html_path))
    assert code == 0, err
    html = html_path.read_text(encoding="utf-8")
    assert "8. Tin nhắn do các doanh nghiệp viễn thông di động gửi" in html
    assert "9. Phản hồi của người dân" in html and "10. Ghi chú" in html
    assert "không cộng vào số người nhận" in html
    parser = _Tables()
    parser.feed(html)
    per_carrier = next(t for t in parser.tables if t[0][0] == "Doanh nghiệp")
    assert {r[0]: r[5] for r in per_carrier[1:-1]} == {
        "Viettel": "294.400", "VinaPhone": "99.000", "MobiFone": "Chưa báo cáo",
        "Vietnamobile": "Chưa báo cáo", "Gmobile": "Chưa báo cáo", "iTel": "Chưa báo cáo",
        "Reddi": "Chưa báo cáo"}
    assert per_carrier[1][1] == "77/STTTT-TTBCXB ngày 5/7/2024"
    assert per_carrier[-1][-1] == "393.400"
    by_day = next(t for t in parser.tables if t[0][0] == "Ngày" and "Viettel" in t[0])
    assert by_day == [["Ngày", "Viettel", "VinaPhone", "Cộng"],
                      ["29/7/2024", "165.500", "0", "165.500"],
                      ["30/7/2024", "128.900", "99.000", "227.900"],
                      ["Tổng cộng", "294.400", "99.000", "393.400"]]
    by_area = next(t for t in parser.tables if t[0][0] == "Địa bàn (mã)")
    assert by_area[1:] == [["Huyện Cờ Đỏ (925)", "30.200", "0", "30.200"],
                           ["Quận Bình Thủy (918)", "45.000", "0", "45.000"],
                           ["Quận Cái Răng (919)", "98.700", "0", "98.700"],
                           ["Quận Ninh Kiều (916)", "120.500", "0", "120.500"],
                           ["(không rõ)", "0", "99.000", "99.000"],
                           ["Tổng cộng", "294.400", "99.000", "393.400"]]
    # the per-person figures are the same as without carriers
    totals = next(t for t in parser.tables if t[0] == ["Chỉ tiêu", "Số lượng"])
    figures = dict((r[0], r[1]) for r in totals[1:])
    assert figures["Số người nhận (số thuê bao trong danh sách được gửi)"] == \
        official.vn_int(before["recipients"])
    assert figures["Số người đã nhận được tin nhắn"].startswith(
        official.vn_int(before["reached"]) + " (")


def test_official_report_without_carriers_has_no_carrier_section(seeded: Database,
                                                                 tmp_path: Path) -> None:
    html_path = tmp_path / "ket-qua.html"
    assert cli(seeded, "report", CID, "--official", "--out", str(html_path))[0] == 0
    html = html_path.read_text(encoding="utf-8")
    assert "doanh nghiệp viễn thông di động gửi" not in html
    assert "8. Phản hồi của người dân" in html and "9. Ghi chú" in html

"""The carriers commands in Vietnamese (``--lang vi``): every console message, heading, status
word, flag and error reads in Vietnamese with Vietnamese dates; ``--lang en`` is unchanged; the
status codes stored and exported stay codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from outreach.cli import main
from outreach.carriers import ledger
from outreach.ledger.db import Database
from tests.conftest import CAMPAIGN_FILE
from tests.helpers import english_words
from tests.test_carriers import BAD_CSV, GOOD_CSV
from tests.test_reports import CID, db  # noqa: F401  (fixture)

F = str(CAMPAIGN_FILE)


def run(db: Database, lang: str, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--database-url", db.url, "--lang", lang, "--wide", *args],
                           catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def one(text: str) -> str:
    return " ".join(text.split())


def vi_ok(db: Database, *args: str) -> str:
    code, out, err = run(db, "vi", *args)
    assert code == 0, err
    assert english_words(out + err) == [], out + err
    return one(out + err)


def vi_error(db: Database, *args: str, code: int = 1) -> str:
    """The error line(s) of a failing command (click's usage lines name the English metavars
    CAMPAIGN/OPTIONS of the whole CLI and are left out)."""
    got, out, err = run(db, "vi", *args)
    assert got == code, out + err
    lines = [x for x in err.splitlines() if not x.startswith(("Cách dùng:", "Chạy '"))]
    text = "\n".join(lines)
    assert "Traceback" not in err and english_words(text) == [], text
    return one(text)


def requested(db: Database, tmp_path: Path, lang: str = "vi") -> None:
    assert run(db, lang, "carriers", "request", F, "--out", str(tmp_path / "l"), "--no-pdf")[0] == 0


def test_list_in_vietnamese(db: Database) -> None:
    text = vi_ok(db, "carriers", "list")
    assert "Các nhà mạng di động" in text and "đơn vị đầu mối" in text and "đã xác minh" in text
    code, out, _ = run(db, "en", "carriers", "list")
    assert code == 0 and "Mobile operators" in out and "contact unit" in out


def test_request_in_vietnamese(db: Database, tmp_path: Path) -> None:
    text = vi_ok(db, "carriers", "request", F, "--out", str(tmp_path / "l"), "--no-pdf")
    assert f"{CID}: công văn đề nghị gửi 7 nhà mạng, lưu tại" in text
    assert "Nội dung đề nghị nhà mạng nhắn" in text and "nguyên văn không dấu" in text
    assert "nội dung quy định dài 227 ký tự (4 phần tin có dấu, 2 phần tin không dấu)" in text
    assert "tiếp theo: gửi công văn" in text
    code, out, _ = run(db, "en", "carriers", "request", F, "--out", str(tmp_path / "e"),
                       "--no-pdf")
    assert code == 0
    assert f"{CID}: request letters for 7 operators in" in one(out)
    assert "the prescribed text is 227 characters (4 SMS with diacritics, 2 unaccented)" in one(out)


def test_mark_shows_status_words_and_a_vietnamese_date_but_stores_codes(
        db: Database, tmp_path: Path) -> None:
    requested(db, tmp_path)
    text = vi_ok(db, "carriers", "mark", F, "--carrier", "viettel", "requested", "--date",
                 "2024-07-06", "--by", "post")
    assert f"{CID}: Viettel đã soạn công văn → đã gửi đề nghị ngày 06/07/2024" in text
    with db.engine.connect() as conn:
        assert ledger.get(conn, CID, "Viettel").status == "requested"
    code, out, _ = run(db, "en", "carriers", "mark", F, "--carrier", "viettel", "confirmed",
                       "--date", "2024-07-15")
    assert code == 0 and "Viettel requested → confirmed on 2024-07-15" in one(out)


def test_status_table_flags_and_summary_in_vietnamese(db: Database, tmp_path: Path) -> None:
    requested(db, tmp_path)
    for c in ("Viettel", "VinaPhone"):
        assert run(db, "vi", "carriers", "mark", F, "--carrier", c, "requested", "--date",
                   "2024-07-06", "--by", "post")[0] == 0
    assert run(db, "vi", "carriers", "result", F, "--carrier", "Viettel", "--sent", "250000",
               "--date", "2024-07-30", "--received", "2024-07-31")[0] == 0
    text = vi_ok(db, "carriers", "status", F, "--today", "2024-08-02")
    assert ("nhắn tin 25/07/2024–30/07/2024; xác nhận trước 19/07/2024, báo cáo kết quả trước "
            "01/08/2024; hạn báo cáo của thành phố 03/08/2024 (còn 1 ngày tính từ 02/08/2024)"
            in text)
    assert "Đề nghị gửi nhà mạng" in text and "trạng thái" in text and "cảnh báo" in text
    assert "250.000" in text and "THIẾU" in text
    assert "VinaPhone: chưa xác nhận (hạn 19/07/2024)" in text
    assert "VinaPhone: quá hạn báo cáo kết quả (hạn 01/08/2024)" in text
    assert "VinaPhone: THIẾU KẾT QUẢ: hạn báo cáo của thành phố là 03/08/2024 (còn 1 ngày)" in text
    assert "MobiFone: chưa gửi đề nghị mà đã đến ngày bắt đầu nhắn tin" in text
    assert "Viettel: công văn Số /STTTT-TTBCXB ngày 05/07/2024, gửi qua bưu điện" in text
    assert "chưa có kết quả của VinaPhone, MobiFone" in text
    # the JSON keeps the codes
    code, out, _ = run(db, "vi", "carriers", "status", F, "--today", "2024-08-02", "--format",
                       "json")
    rows = {r["carrier"]: r for r in json.loads(out)["carriers"]}
    assert (rows["Viettel"]["status"], rows["VinaPhone"]["status"]) == ("results", "requested")
    code, out, _ = run(db, "en", "carriers", "status", F, "--today", "2024-07-29")
    text = one(out)
    assert "city's report due 2024-08-03 (5 days from 2024-07-29)" in text
    assert "VinaPhone: RESULTS MISSING: the city's report is due 2024-08-03 (in 5 days)" in text
    assert "Viettel: letter Số /STTTT-TTBCXB of 2024-07-05, sent by post" in text


def test_results_imported_in_vietnamese(db: Database, tmp_path: Path) -> None:
    good = tmp_path / "viettel.csv"
    good.write_text(GOOD_CSV, encoding="utf-8-sig")
    text = vi_ok(db, "carriers", "result", F, "--carrier", "Viettel", str(good))
    assert (f"{CID}: Viettel: đã nhập 4 số liệu (4 mới, 0 thay thế), 294.400 thuê bao đã được "
            "nhắn tin") in text
    code, out, _ = run(db, "en", "carriers", "result", F, "--carrier", "Viettel", str(good))
    assert code == 0
    assert "4 figure(s) imported (0 new, 4 replaced), 294,400 subscribers messaged" in one(out)


def test_bad_results_file_names_each_line_in_vietnamese(db: Database, tmp_path: Path) -> None:
    bad = tmp_path / "viettel-bad.csv"
    bad.write_text(BAD_CSV, encoding="utf-8")
    text = vi_error(db, "carriers", "result", F, "--carrier", "Viettel", str(bad))
    assert ":3: ngày 31/07/2024 nằm ngoài thời gian nhắn tin 25/07/2024 – 30/07/2024" in text
    assert ":4: địa bàn 'Hoàn Kiếm' không phải đơn vị hành chính thuộc địa bàn đề nghị" in text
    assert ":5: số lượng '-3' không phải số nguyên ≥ 0" in text
    assert ":6: ngày 'hôm qua' không hợp lệ (ghi 30/07/2024 hoặc 2024-07-30)" in text
    assert ":7: 29/07/2024 Quận Ninh Kiều đã có ở dòng 2" in text
    assert "lỗi: " in text and "6 dòng không dùng được; chưa nhập gì" in text
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("a,b\n1,2\n", encoding="utf-8")
    text = vi_error(db, "carriers", "result", F, "--carrier", "Viettel", str(nohead))
    assert "nohead.csv:1: không có dòng tiêu đề gồm cột ngày và cột số lượng" in text
    wrong = tmp_path / "total.csv"
    wrong.write_text(GOOD_CSV.replace('"294.400"', '"294.401"'), encoding="utf-8")
    text = vi_error(db, "carriers", "result", F, "--carrier", "Viettel", str(wrong))
    assert ":7: tổng 294401 không bằng cộng các dòng (294400)" in text
    code, _, err = run(db, "en", "carriers", "result", F, "--carrier", "Viettel", str(bad))
    assert code == 1 and "error: " in err and "6 row(s) cannot be used; nothing imported" in err


def test_follow_up_errors_in_vietnamese(db: Database, tmp_path: Path) -> None:
    requested(db, tmp_path)
    assert run(db, "vi", "carriers", "mark", F, "--carrier", "Viettel", "broadcast", "--date",
               "2024-07-30")[0] == 0
    text = vi_error(db, "carriers", "mark", F, "--carrier", "Viettel", "requested")
    assert ("lỗi: Viettel đang ở trạng thái «đã nhắn tin»: trạng thái chỉ được chuyển tiếp "
            "(đã soạn công văn → đã gửi đề nghị → đã xác nhận → đã nhắn tin → kết quả)") in text
    text = vi_error(db, "carriers", "mark", F, "--carrier", "Beeline", "confirmed")
    assert "lỗi: không có nhà mạng 'Beeline' (các nhà mạng: Viettel, VinaPhone" in text
    assert run(db, "vi", "carriers", "mark", F, "--carrier", "Reddi", "declined", "--date",
               "2024-07-18")[0] == 0
    text = vi_error(db, "carriers", "mark", F, "--carrier", "Reddi", "confirmed")
    assert "lỗi: Reddi đã từ chối ngày 18/07/2024: muốn đề nghị lại phải có công văn mới" in text
    text = vi_error(db, "carriers", "result", F, "--carrier", "Reddi", "--sent", "5", "--date",
                    "2024-07-30")
    assert "lỗi: Reddi đã từ chối đề nghị: không có kết quả để nhập" in text
    text = vi_error(db, "carriers", "mark", F, "--carrier", "Viettel", "confirmed", "--date",
                    "30.13.2024", code=2)
    assert "'30.13.2024' không phải ngày hợp lệ (YYYY-MM-DD hoặc DD/MM/YYYY)" in text
    code, _, err = run(db, "en", "carriers", "mark", F, "--carrier", "Viettel", "requested")
    assert code == 1 and "Viettel is already broadcast: a status only moves forward" in one(err)
    code, _, err = run(db, "en", "carriers", "mark", F, "--carrier", "Reddi", "confirmed")
    assert code == 1 and "Reddi declined on 2024-07-18" in err


def test_typed_in_results_errors_in_vietnamese(db: Database) -> None:
    text = vi_error(db, "carriers", "result", F, "--carrier", "Viettel", "--sent", "5", "--date",
                    "2024-09-30")
    assert "lỗi: --date 30/09/2024: nằm ngoài thời gian nhắn tin 25/07/2024 – 30/07/2024" in text
    text = vi_error(db, "carriers", "result", F, "--carrier", "Viettel", "--sent", "5", code=2)
    assert "--sent cần kèm --date D (ngày nhắn tin)" in text
    text = vi_error(db, "carriers", "result", F, "--carrier", "Viettel", "--sent", "5",
                    "--delivered", "9", "--date", "2024-07-30")
    assert "--delivered nằm trong khoảng từ 0 đến --sent" in text
    text = vi_error(db, "carriers", "result", F, "--carrier", "Viettel", "--sent", "5", "--date",
                    "2024-07-30", "--area", "Hoàn Kiếm")
    assert "lỗi: --area 'Hoàn Kiếm': không phải đơn vị hành chính thuộc địa bàn đề nghị" in text
    text = vi_error(db, "carriers", "result", F, "--carrier", "Viettel", code=2)
    assert "cần tệp kết quả, hoặc --sent N --date D" in text
    code, _, err = run(db, "en", "carriers", "result", F, "--carrier", "Viettel", "--sent", "5",
                       "--date", "2024-09-30")
    assert code == 1 and "--date 2024-09-30: outside the broadcast dates 2024-07-25 – " \
        "2024-07-30" in err


def test_campaign_without_carriers_and_mail_errors_in_vietnamese(
        db: Database, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    nocar = tmp_path / "nocar.toml"
    nocar.write_text(CAMPAIGN_FILE.read_text(encoding="utf-8").split("[carriers]")[0],
                     encoding="utf-8")
    text = vi_error(db, "carriers", "status", str(nocar))
    assert "không có mục [carriers]: hãy thêm mục này" in text
    for var in ("OUTREACH_SMTP_HOST", "OUTREACH_SMTP_FROM"):
        monkeypatch.delenv(var, raising=False)
    text = vi_error(db, "carriers", "request", F, "--out", str(tmp_path / "l"), "--no-pdf",
                    "--email")
    assert ("lỗi: chưa cấu hình thư điện tử: hãy đặt OUTREACH_SMTP_HOST và OUTREACH_SMTP_FROM"
            in text)
    monkeypatch.setenv("OUTREACH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("OUTREACH_SMTP_FROM", "sotttt@example.org")
    monkeypatch.setenv("OUTREACH_SMTP_SECURITY", "tls")
    text = vi_error(db, "carriers", "request", F, "--out", str(tmp_path / "l"), "--no-pdf",
                    "--email")
    assert "OUTREACH_SMTP_SECURITY phải là starttls, ssl hoặc none, nhận được 'tls'" in text
    code, _, err = run(db, "en", "carriers", "status", str(nocar))
    assert code == 1 and "no [carriers] section" in err


def test_bad_carriers_file_is_an_error_not_a_crash(db: Database, tmp_path: Path,
                                                  monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "carriers.json"
    bad.write_text('{"carriers": []}', encoding="utf-8")
    monkeypatch.setenv("OUTREACH_CARRIERS_FILE", str(bad))
    text = vi_error(db, "carriers", "list")
    assert "lỗi: " in text and "cần danh sách 'carriers' không rỗng" in text
    assert "lỗi nội bộ" not in text
    code, _, err = run(db, "en", "carriers", "list")
    assert code == 1 and "needs a non-empty list 'carriers'" in err and "internal" not in err


def test_carriers_section_reasons_in_vietnamese(tmp_path: Path) -> None:
    from outreach import i18n
    from outreach.input import campaigns
    from tests.test_carriers import campaign_with

    cases = [({'"Reddi"]': '"Reddi", "Mobicast"]'}, "'Mobicast' bị ghi hai lần"),
             ({"reply_by = 2024-07-19": "reply_by = 2024-07-26"},
              "nhà mạng phải xác nhận trước ngày bắt đầu nhắn tin"),
             ({"end_date = 2024-07-30": "end_date = 2024-10-30"},
              "thời gian nhắn tin (25/07/2024–30/10/2024) phải nằm trong [window] của chiến dịch"),
             ({'area = ["92"]': 'area = ["99"]'},
              "không có đơn vị hành chính nào mang mã '99' vào ngày 25/07/2024")]
    before = i18n.current()
    try:
        for replace, reason in cases:
            path = campaign_with(tmp_path, replace=replace)
            i18n.set_language("vi")
            try:
                campaigns.load(path)
            except campaigns.CampaignError as exc:
                assert reason in exc.reason and english_words(exc.reason) == [], exc.reason
            else:
                raise AssertionError(f"{replace} loaded")
            i18n.set_language("en")
            try:
                campaigns.load(path)
            except campaigns.CampaignError as exc:
                assert english_words(exc.reason) != [], exc.reason
    finally:
        i18n.set_language(before)

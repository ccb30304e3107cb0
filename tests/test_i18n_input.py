"""The INPUT stage in Vietnamese: every refusal of a list file or a campaign file, the import
summary and the launch plan's rejected rows, with ``--lang vi`` free of English prose and with
``--lang en`` as before (file, line and reason kept in both)."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import i18n
from outreach.cli import main
from outreach.input import reasons
from outreach.input import text as textmod
from tests.helpers import english_words, write_campaign


def run(tmp: Path, lang: str, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["--lang", lang, "--wide", "--database-url",
                                    f"sqlite:///{tmp / 'i.db'}", *args])
    assert "Traceback" not in res.output
    return res.exit_code, res.output


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def _zip_not_workbook(tmp: Path) -> Path:
    path = tmp / "ds.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "x")
    return path


def _workbook(tmp: Path) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "Ấp 1"
    wb.active.append(["SĐT"])
    wb.active.append(["0912345678"])
    path = tmp / "ds.xlsx"
    wb.save(path)
    return path


# name → (write the list file, extra options, Vietnamese reason, English reason); the reason
# follows "FILE[:LINE]: " in both languages
LIST_CASES: dict[str, tuple[Callable[[Path], Path], list[str], str, str]] = {
    "no-phone-column": (
        lambda t: _write(t / "a.csv", "Họ tên,Địa chỉ\nAn,Cần Thơ\n"), [],
        ":1: không có cột số điện thoại (cần tiêu đề như 'Số điện thoại', 'SĐT' hoặc 'phone'); "
        "các tiêu đề đã thấy: 'Họ tên', 'Địa chỉ'",
        ":1: no phone column (expected a header such as 'Số điện thoại', 'SĐT' or 'phone'); "
        "headers seen: 'Họ tên', 'Địa chỉ'"),
    "empty-file": (lambda t: _write(t / "b.csv", ""), [],
                   ": tệp trống: không có dòng tiêu đề", ": empty file: no header row"),
    "unclosed-quote": (
        lambda t: _write(t / "c.csv", 'SĐT,Họ tên\n0912345678,"An\n'), [],
        ":2: CSV sai cấu trúc ở dòng bắt đầu tại đây (dữ liệu kết thúc giữa chừng): hãy kiểm "
        "tra dấu ngoặc kép",
        ":2: malformed CSV in the row starting here (unexpected end of data): check its quotes"),
    "text-after-quote": (
        lambda t: _write(t / "c.csv", 'SĐT,Họ tên\n0912345678,"An"x,y\n'), [],
        ":2: CSV sai cấu trúc ở dòng bắt đầu tại đây (cần dấu ',' sau dấu '\"' đóng)",
        ":2: malformed CSV in the row starting here (',' expected after '\"'): check its quotes"),
    "undecodable": (
        lambda t: _write(t / "d.csv", "SĐT,Họ tên\n0912345678,Nguyễn\n".encode()
                         + b"0912345679,\xff\xfe\n"), [],
        ":3: không giải mã được theo utf-8 (các byte FF): hãy lưu tệp dưới dạng 'CSV UTF-8'",
        ":3: cannot decode as utf-8 (bytes FF): save the file as 'CSV UTF-8' or give its "
        "encoding (e.g. encoding='cp1258')"),
    "replacement-character": (
        lambda t: _write(t / "e.csv", "SĐT,Họ tên\n0912345678,Ng\ufffdn\n"), [],
        ":2: có ký tự U+FFFD (một ký tự đã mất vì lần chuyển đổi sai bảng mã trước đó)",
        ":2: contains U+FFFD (a character already lost by an earlier wrong-encoding "
        "conversion): fix the name in the source file"),
    "binary": (lambda t: _write(t / "f.csv", b"\x00\x01\x02\x03abc\x00\x00\x00\x05" * 3), [],
               ": tệp nhị phân: không phải CSV, TSV hay XLSX",
               ": binary file: not CSV, TSV or XLSX"),
    "zip-not-workbook": (
        _zip_not_workbook, [],
        ": tệp zip không phải tệp bảng tính (không có xl/workbook.xml hay content.xml)",
        ": a zip file that is not a workbook (no xl/workbook.xml or content.xml): save the list "
        "as .xlsx or CSV"),
    "not-a-zip": (
        lambda t: _write(t / "n.xlsx", b"not a zip at all, just text bytes here"), [],
        ": không đọc được tệp bảng tính .xlsx (không phải tệp zip)",
        ": not a readable .xlsx workbook (File is not a zip file)"),
    "html-without-table": (
        lambda t: _write(t / "h.xls", "<html><body><p>Không có bảng</p></body></html>"), [],
        ": trang HTML không có bảng (một trang web được lưu với đuôi .xls)",
        ": an HTML page with no table (a web page saved with an .xls name): export the list "
        "from the portal as .xlsx or CSV"),
    "encrypted": (
        lambda t: _write(t / "i.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
                         + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 100), [],
        ": tệp bảng tính được bảo vệ bằng mật khẩu (đã mã hóa)",
        ": the workbook is password-protected (encrypted): open it in Excel with the password"),
    "only-landlines": (
        lambda t: _write(t / "j.csv", "SĐT\n0292 3820 123\n0292 3820 124\n"), [],
        ": không có số di động hợp lệ nào trong 2 dòng (2 dòng số cố định: không nhận được tin "
        "nhắn SMS); cột số điện thoại 'SĐT', tiêu đề ở dòng 1: hãy kiểm tra cột và trang tính; "
        "chưa nhập gì (dùng --allow-few-valid để vẫn nhập)",
        ": no valid mobile number in 2 rows (landline 2); phone column 'SĐT', header at row 1: "
        "check the column and the sheet; nothing was imported (pass --allow-few-valid to import "
        "it anyway)"),
    "under-half-valid": (
        lambda t: _write(t / "k.csv", "SĐT\n0912345678\n123\n0292 3820 123\n"), [],
        ": chỉ 1 trên 3 dòng có số di động hợp lệ (1 dòng thiếu chữ số, 1 dòng số cố định: "
        "không nhận được tin nhắn SMS)",
        ": only 1 of 3 rows have a valid mobile number (too-short 1, landline 1)"),
    "no-data-rows": (
        lambda t: _write(t / "l.csv", "SĐT,Họ tên\n"), [],
        ": không có dòng dữ liệu nào dưới dòng tiêu đề (dòng 1)",
        ": no data rows under the header (row 1)"),
    "no-such-sheet": (_workbook, ["--sheet", "Ấp 9"],
                      ": không có trang tính 'Ấp 9'; các trang tính: 'Ấp 1'",
                      ": no sheet 'Ấp 9'; sheets: 'Ấp 1'"),
    "unknown-encoding": (lambda t: _write(t / "m.csv", "SĐT\n0912345678\n"),
                         ["--encoding", "klingon"], ": bảng mã không xác định 'klingon'",
                         ": unknown encoding 'klingon'"),
}


@pytest.mark.parametrize("case", sorted(LIST_CASES))
def test_a_refused_list_file_is_explained_in_vietnamese(tmp_path: Path, case: str) -> None:
    make, options, vi, en = LIST_CASES[case]
    path = make(tmp_path)
    code, out = run(tmp_path, "vi", "recipients", "import", *options, str(path))
    assert code == 1
    assert english_words(out) == [], out
    assert f"lỗi: {path}{vi}" in " ".join(out.split()), out
    code, out = run(tmp_path, "en", "recipients", "import", *options, str(path))
    assert code == 1
    assert f"error: {path}{en}" in " ".join(out.split()), out


def test_the_import_summary_names_reasons_and_details_in_vietnamese(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.csv", "SĐT,Họ tên\n0912345678,An\n0912345678,Bình\n"
                  "0988123456,Chi\n0977123456,Dũng\n12345,Em\n+12025550123,Phi\n01688123456,Gia\n")
    code, out = run(tmp_path, "vi", "recipients", "import", "--list", "vi", str(path))
    assert code == 0, out
    assert english_words(out) == [], out
    flat = " ".join(out.split())
    for phrase in ("trùng lặp (đã có trong lần nhập này)", f"đã gặp lần đầu tại {path}:2",
                   "thiếu chữ số", "số của quốc gia khác", "mã quốc gia 1 (US)",
                   "số di động 11 chữ số cũ (trước 2018)", "số mới sẽ là 038****456",
                   "đã đọc 7 dòng = nhập 3 + loại 3 + trùng 1"):
        assert phrase in flat, phrase
    code, out = run(tmp_path, "en", "recipients", "import", "--list", "en", str(path))
    assert code == 0, out
    flat = " ".join(out.split())
    for phrase in ("duplicate", f"first seen at {path}:2", "too-short", "foreign",
                   "country code 1 (US)", "old-prefix", "new number would be 038****456"):
        assert phrase in flat, phrase


def test_the_reject_file_names_a_sheet_in_the_interface_language(tmp_path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "Ấp 1"
    for row in (["SĐT"], ["0912345678"], ["0912345678"], ["0988123456"]):
        wb.active.append(row)
    path = tmp_path / "ds.xlsx"
    wb.save(path)
    rejects = tmp_path / "loai.csv"
    code, out = run(tmp_path, "vi", "recipients", "import", "--reject-file", str(rejects),
                    str(path))
    assert code == 0, out
    assert english_words(out) == [], out
    assert "trang tính" in out
    assert f"{path} [trang tính 'Ấp 1']" in rejects.read_text(encoding="utf-8-sig")
    code, out = run(tmp_path, "en", "recipients", "import", "--reject-file", str(rejects),
                    "--list", "en", str(path))
    assert f"{path} [sheet 'Ấp 1']" in rejects.read_text(encoding="utf-8-sig")


def _campaign_variant(tmp: Path, edit: Callable[[str], str]) -> Path:
    base = write_campaign(tmp)
    path = tmp / "bien-the.toml"
    path.write_text(edit(base.read_text(encoding="utf-8")), encoding="utf-8")
    return path


_PLACEHOLDER_TEXT = "Xin chào {{Ho ten}}, toàn dân tích cực tham gia."

# name → (edit of a good campaign file, Vietnamese reason, English reason); after "FILE: "
CAMPAIGN_CASES: dict[str, tuple[Callable[[str], str], str, str]] = {
    "required": (lambda s: s.replace('id = "test-campaign"', ""),
                 "trường 'id': là bắt buộc", "field 'id': is required"),
    "bad-id": (lambda s: s.replace('id = "test-campaign"', 'id = "Test Campaign"'),
               "trường 'id': chỉ được gồm chữ thường, chữ số và dấu gạch ngang (2–63 ký tự)",
               "field 'id': must be lowercase letters, digits and dashes (2–63 characters)"),
    "edited-text": (
        lambda s: re.sub(r'sha256 = "[0-9a-f]+"', 'sha256 = "' + "0" * 64 + '"', s),
        "trường 'message.sha256': không khớp với nội dung tin nhắn: nội dung đã bị sửa sau khi "
        "duyệt (đã ghi 000000000000…",
        "field 'message.sha256': does not match the message text: the text was edited after "
        "approval (recorded 000000000000…"),
    "not-toml": (lambda s: s + "\n[[[x\n",
                 "không phải TOML hợp lệ: Ký tự đầu của tên khóa không hợp lệ (tại dòng 37, cột 3)",
                 "not valid TOML: Invalid initial character for a key part (at line 37, column 3)"),
    "unknown-field": (lambda s: s.replace('theme = "thử"', 'theme = "thử"\ncolour = "xanh"'),
                      "trường 'colour': trường không xác định (các trường đã biết: 'carriers',",
                      "field 'colour': unknown field (known: 'carriers',"),
    "bad-date": (lambda s: s.replace("end_date = 2024-09-30", 'end_date = "30/09/2024"'),
                 "trường 'window.end_date': phải là ngày viết dạng YYYY-MM-DD, nhưng nhận được "
                 "'30/09/2024'",
                 "field 'window.end_date': must be a date written YYYY-MM-DD, got '30/09/2024'"),
    "end-before-start": (lambda s: s.replace("end_date = 2024-09-30", "end_date = 2024-06-01"),
                         "trường 'window.end_date': sớm hơn window.start_date",
                         "field 'window.end_date': is before window.start_date"),
    "no-list-file": (
        lambda s: s.replace('lists = ["test-campaign-list.csv"]', 'lists = ["khong-co-*.csv"]'),
        "trường 'recipients.lists': không có tệp nào khớp với 'khong-co-*.csv'",
        "field 'recipients.lists': no file matches 'khong-co-*.csv'"),
    "long-sender": (lambda s: s.replace('sender = "TEST"', 'sender = "TÊN RẤT DÀI QUÁ"'),
                    "trường 'channels[0].sender': tên định danh (brandname) của tin nhắn thương "
                    "hiệu dài tối đa 11 ký tự",
                    "field 'channels[0].sender': an SMS sender ID (brandname) is at most 11 "
                    "characters"),
    "bad-placeholder": (
        lambda s: re.sub(r'\[message\]\ntext = .*\nsha256 = .*\n',
                         lambda _m: f"[message]\ntext = {json.dumps(_PLACEHOLDER_TEXT, ensure_ascii=False)}"
                         f'\nsha256 = "{textmod.text_sha256(_PLACEHOLDER_TEXT)}"\n', s),
        "trường 'message.text': chỗ điền '{{Ho ten}}' không hợp lệ tại vị trí 9",
        "field 'message.text': invalid placeholder '{{Ho ten}}' at position 9: write {{field}} "
        "where field is lowercase letters"),
    "bad-time": (lambda s: s.replace('daily_start = "07:00"', 'daily_start = "7h"'),
                 "trường 'window.daily_start': phải là giờ trong ngày dạng HH:MM, nhưng nhận "
                 "được '7h'",
                 "field 'window.daily_start': must be a time of day HH:MM, got '7h'"),
    "unknown-carrier": (lambda s: s.replace("default = 800", "default = 800\nViettell = 700"),
                        "trường 'pricing.sms.Viettell': nhà mạng không xác định",
                        "field 'pricing.sms.Viettell': unknown carrier; known: Viettel"),
}


@pytest.mark.parametrize("case", sorted(CAMPAIGN_CASES))
def test_a_refused_campaign_file_is_explained_in_vietnamese(tmp_path: Path, case: str) -> None:
    edit, vi, en = CAMPAIGN_CASES[case]
    path = _campaign_variant(tmp_path, edit)
    code, out = run(tmp_path, "vi", "campaign", "check", str(path))
    assert code == 1
    assert english_words(out) == [], out
    assert f"lỗi: {path}: {vi}" in " ".join(out.split()), out
    code, out = run(tmp_path, "en", "campaign", "check", str(path))
    assert code == 1
    assert f"error: {path}: {en}" in " ".join(out.split()), out


def test_campaign_files_not_found_or_not_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "khong-co.toml"
    code, out = run(tmp_path, "vi", "campaign", "check", str(missing))
    assert (code, english_words(out)) == (1, [])
    assert f"lỗi: {missing}: không tìm thấy tệp" in out
    code, out = run(tmp_path, "en", "campaign", "check", str(missing))
    assert f"error: {missing}: file not found" in out
    good = write_campaign(tmp_path).read_text(encoding="utf-8")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(good.encode("utf-8").replace("Chiến".encode(), b"Chi\xe9n"))
    code, out = run(tmp_path, "vi", "campaign", "check", str(latin))
    assert (code, english_words(out)) == (1, []), out
    assert "không phải UTF-8 (byte tiếp nối không hợp lệ tại byte" in out
    code, out = run(tmp_path, "en", "campaign", "check", str(latin))
    assert "not UTF-8 (invalid continuation byte at byte" in out


def test_the_launch_plan_shows_rejected_rows_with_vietnamese_labels(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, phones=["+84965550001", "+84965550002", "12345",
                                            "0292 3820 123", "+84965550003", "+84965550004"])
    code, out = run(tmp_path, "vi", "campaign", "check", str(path))
    assert code == 0, out
    assert english_words(out) == [], out
    flat = " ".join(out.split())
    assert "bị loại: thiếu chữ số" in flat and "bị loại: số cố định: không nhận được" in flat
    code, out = run(tmp_path, "en", "campaign", "check", str(path))
    flat = " ".join(out.split())
    assert "rejected: too-short" in flat and "rejected: landline" in flat


def test_reason_labels_are_translated_when_shown_and_codes_stay_codes() -> None:
    i18n.set_language("vi")
    try:
        assert reasons.label("too-short") == "thiếu chữ số"
        assert reasons.label("duplicate") == "trùng lặp (đã có trong lần nhập này)"
    finally:
        i18n.set_language("en")
    assert reasons.label("too-short") == "too-short"  # English shows the documented code
    assert reasons.label("no-such-code") == "no-such-code"
    assert reasons.label(None) == ""
    from outreach.input.phones import REASONS

    assert set(REASONS) <= set(reasons.LABELS)
    assert {reasons.LABELS[c] for c in REASONS} == set(REASONS.values())  # same English


def test_list_file_errors_keep_their_kind_across_processes() -> None:
    import pickle

    from outreach.input.listfiles import ListFileError

    exc = ListFileError("ds.xlsx", 3, "x", "Ấp 1", kind="fatal")
    back = pickle.loads(pickle.dumps(exc))
    assert (back.file, back.line, back.reason, back.sheet, back.kind) == (
        "ds.xlsx", 3, "x", "Ấp 1", "fatal")
    assert str(back) == "ds.xlsx [sheet 'Ấp 1']:3: x"


def test_sheet_notes_of_a_workbook_are_in_vietnamese(tmp_path: Path) -> None:
    """A hidden sheet and a sheet without a phone column are named in the files table, with
    why they were not read; the totals row is counted as skipped."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Ấp 1"
    for row in (["SĐT", "Họ tên"], ["0912345678", "An"], ["Tổng cộng", ""]):
        ws.append(row)
    hidden = wb.create_sheet("Ẩn")
    hidden.append(["SĐT"])
    hidden.append(["0912345679"])
    hidden.sheet_state = "hidden"
    wb.create_sheet("Ghi chú").append(["Không có số"])
    path = tmp_path / "ds.xlsx"
    wb.save(path)
    code, out = run(tmp_path, "vi", "recipients", "import", str(path))
    assert code == 0, out
    assert english_words(out) == [], out
    flat = " ".join(out.split())
    assert "trang tính ẩn: không đọc (dùng --sheet để đọc)" in flat
    assert "không có cột số điện thoại (cần tiêu đề như" in flat
    assert "dòng bỏ qua vì không phải dữ liệu (mục, dòng tổng, chữ ký) │ 1" in flat
    code, out = run(tmp_path, "en", "recipients", "import", "--list", "en", str(path))
    flat = " ".join(out.split())
    assert "hidden sheet: not read (give --sheet to read it)" in flat
    assert "no phone column (expected a header such as" in flat

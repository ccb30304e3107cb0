"""Tests for outreach.input.listfiles: Excel exports in every encoding, delimiters, headers, XLSX, errors."""

from __future__ import annotations

import re
import unicodedata
import zipfile
from pathlib import Path

import openpyxl
import pytest

from outreach.input.listfiles import ListFileError, RawRow, read_list
from outreach.input.phones import normalise

IMPORT = Path(__file__).parent / "data" / "import"


def rows(path: Path, **kwargs: str) -> list[RawRow]:
    return list(read_list(path, **kwargs))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- the field cases -------------------------------------------------------------------------


def test_excel_csv_utf8_with_bom() -> None:
    got = rows(IMPORT / "excel-utf8-bom.csv")
    assert [(r.line, r.phone, r.name) for r in got] == [
        (2, "0912345001", "Nguyễn Văn An"),
        (3, "0912345002", "Trần Thị Bình"),
    ]
    assert all(unicodedata.is_normalized("NFC", r.name or "") for r in got)
    assert got[0].file == str(IMPORT / "excel-utf8-bom.csv")


def test_excel_unicode_text_utf16_tab_separated() -> None:
    raw = (IMPORT / "excel-unicode-text.txt").read_bytes()
    assert raw.startswith(b"\xff\xfe") and "\u0300".encode("utf-16-le") in raw  # combining grave
    [row] = rows(IMPORT / "excel-unicode-text.txt")
    assert (row.line, row.phone, row.name) == (2, "0912345001", "Nguyễn Văn An")
    assert row.name == unicodedata.normalize("NFC", "Nguyễn Văn An")
    assert "\u0300" not in row.name


def test_same_person_many_forms() -> None:
    got = rows(IMPORT / "same-person-many-forms.csv")
    assert [r.line for r in got] == [2, 3, 4, 5, 6]
    assert [r.phone for r in got] == ["0912345001", "+84 91 234 5001", "84912345001", "091.234.5001",
                                      "+84 (0) 912 345 001"]
    assert [r.extra for r in got] == [{"list": "A"}] + [{"list": "B"}] * 4
    assert {normalise(r.phone).e164 for r in got} == {"+84912345001"}


# --- delimiters and encodings ----------------------------------------------------------------


def test_semicolon_csv_with_vietnamese_headers(tmp_path: Path) -> None:
    text = ("Họ và tên;SĐT;Quận/Huyện;Phường/Xã;Ghi chú\r\n"
            "Lê Văn Cường;0381234567;Ninh Kiều;An Hòa;ưu tiên\r\n"
            "Phạm Thị Dung;0912 345 678;Cái Răng;Lê Bình;\r\n")
    got = rows(write(tmp_path, "ds.csv", text.encode("utf-8")))
    assert got == [
        RawRow(str(tmp_path / "ds.csv"), 2, "0381234567", "Lê Văn Cường", "Ninh Kiều", "An Hòa", None,
               {"Ghi chú": "ưu tiên"}),
        RawRow(str(tmp_path / "ds.csv"), 3, "0912 345 678", "Phạm Thị Dung", "Cái Răng", "Lê Bình", None,
               {"Ghi chú": ""}),
    ]


def test_comma_csv_with_quoted_commas(tmp_path: Path) -> None:
    text = 'phone,name,address\n0912345678,"Nguyễn, Văn An","12 Lý Tự Trọng, Ninh Kiều"\n'
    [row] = rows(write(tmp_path, "a.csv", text.encode()))
    assert (row.phone, row.name, row.extra) == ("0912345678", "Nguyễn, Văn An",
                                               {"address": "12 Lý Tự Trọng, Ninh Kiều"})


def test_tab_separated_utf8(tmp_path: Path) -> None:
    text = "phone\tname\tward\n0912345678\tAn\tXuân Khánh\n"
    [row] = rows(write(tmp_path, "a.tsv", text.encode()))
    assert (row.phone, row.name, row.ward) == ("0912345678", "An", "Xuân Khánh")


def test_utf16_big_endian_with_bom(tmp_path: Path) -> None:
    data = "phone\tname\r\n0912345678\tĐặng Thu Hà\r\n".encode("utf-16-be")
    [row] = rows(write(tmp_path, "u.txt", b"\xfe\xff" + data))
    assert (row.line, row.phone, row.name) == (2, "0912345678", "Đặng Thu Hà")


# "Nguyễn Văn An" / "Trần Thị Bình" as Windows-1258 writes them: precomposed base letters
# (ê, ă, â) and separate combining tone marks (0xDE tilde, 0xCC grave, 0xF2 dot below).
CP1258_NAMES = [("Nguy\u00ea\u0303n V\u0103n An", "Nguyễn Văn An"),
                ("Tr\u00e2\u0300n Thi\u0323 Bi\u0300nh", "Trần Thị Bình")]


def test_windows_1258_with_combining_tone_marks_ends_nfc(tmp_path: Path) -> None:
    header = "S\u00f4\u0301 \u0111i\u00ea\u0323n tho\u00e4i,Ho\u0323 t\u00ean".replace("\u00e4", "a\u0323")
    text = header + "\r\n" + "".join(f"09123450{i:02d},{decomposed}\r\n"
                                      for i, (decomposed, _) in enumerate(CP1258_NAMES))
    data = text.encode("cp1258")
    assert b"\xde" in data and b"\xcc" in data and b"\xf2" in data
    got = rows(write(tmp_path, "cp1258.csv", data))
    assert [(r.line, r.phone, r.name) for r in got] == [
        (2, "0912345000", "Nguyễn Văn An"),
        (3, "0912345001", "Trần Thị Bình"),
    ]
    assert all(unicodedata.is_normalized("NFC", r.name or "") for r in got)


def test_forced_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "f.csv", "phone,name\n0912345678,L\u00ea Thi\u0323 H\u00f4\u0300ng\n".encode("cp1258"))
    [row] = rows(path, encoding="windows-1258")
    assert row.name == "Lê Thị Hồng"


def test_undecodable_file_names_the_line(tmp_path: Path) -> None:
    # Not UTF-8 (0xFF) and not Windows-1258 either (0x81 is unassigned there).
    path = write(tmp_path, "bad.csv", b"phone,name\n0912345001,An\n0912345002,B\x81\xff\n")
    with pytest.raises(ListFileError) as info:
        rows(path)
    err = info.value
    assert (err.file, err.line) == (str(path), 3)
    assert str(err).startswith(f"{path}:3: cannot decode as utf-8")


def test_late_undecodable_byte_found_while_streaming(tmp_path: Path) -> None:
    lines = [b"phone,name\n"] + [b"09123%05d,Nguyen Van An\n" % i for i in range(9000)]
    lines[7000] = b"0912345678,Nguy\xe1n\n"  # beyond the sniffed prefix, invalid UTF-8
    path = write(tmp_path, "late.csv", b"".join(lines))
    seen: list[int] = []
    with pytest.raises(ListFileError) as info:
        for row in read_list(path):
            seen.append(row.line)
    assert info.value.line == 7001
    assert seen == list(range(2, 7001))  # every row before the bad one was delivered


def test_forced_encoding_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", b"phone\n0912345678\n\x81\n")
    with pytest.raises(ListFileError) as info:
        rows(path, encoding="cp1258")
    assert info.value.line == 3


def test_replacement_character_is_never_stored(tmp_path: Path) -> None:
    path = write(tmp_path, "fffd.csv", "phone,name\n0912345678,Nguy\ufffdn\n".encode())
    with pytest.raises(ListFileError) as info:
        rows(path)
    assert info.value.line == 2 and "U+FFFD" in info.value.reason


def test_unknown_encoding(tmp_path: Path) -> None:
    with pytest.raises(ListFileError, match="unknown encoding"):
        rows(write(tmp_path, "a.csv", b"phone\n1\n"), encoding="vni-nonsense")


# --- headers, rows, line numbers --------------------------------------------------------------


def test_header_aliases_ignore_case_diacritics_and_punctuation(tmp_path: Path) -> None:
    text = "HỌ VÀ TÊN,SỐ ĐIỆN THOẠI,quận / huyện,Phường-Xã,Zalo ID,Số nhà\n" \
           "Võ Thị Lan,0901234567,Bình Thủy,Trà Nóc,zl-123,5\n"
    [row] = rows(write(tmp_path, "h.csv", text.encode()))
    assert row == RawRow(str(tmp_path / "h.csv"), 2, "0901234567", "Võ Thị Lan", "Bình Thủy", "Trà Nóc",
                         "zl-123", {"Số nhà": "5"})


@pytest.mark.parametrize("header", ["sđt", "SDT", "Điện thoại", "di động", "Số di động", "Phone",
                                    "MOBILE", "Phone Number", "msisdn", "Tel", "Tel.", "so dien thoai"])
def test_phone_header_variants(tmp_path: Path, header: str) -> None:
    [row] = rows(write(tmp_path, "p.csv", f"{header},x\n0912345678,y\n".encode()))
    assert row.phone == "0912345678"


@pytest.mark.parametrize("header", ["SĐT liên hệ", "Số điện thoại (Zalo)", "Điện thoại di động chính"])
def test_phone_header_with_trailing_words(tmp_path: Path, header: str) -> None:
    [row] = rows(write(tmp_path, "p.csv", f"Tên đơn vị,{header}\nUBND,0912345678\n".encode()))
    assert (row.phone, row.name, row.extra) == ("0912345678", None, {"Tên đơn vị": "UBND"})


@pytest.mark.parametrize("header", ["xa phuong", "XÃ/THỊ TRẤN", "Xã/Thị trấn", "Thị trấn",
                                    "Phường/Xã/Thị trấn", "Xã - Phường"])
def test_communal_level_headers_fill_the_ward(tmp_path: Path, header: str) -> None:
    """Headers seen in real district exports (three of the nine Cần Thơ lists use them)."""
    [row] = rows(write(tmp_path, "w.csv",
                       f"SĐT,Huyện/Quận,{header}\n0912345678,Cờ Đỏ,Thới Hưng\n".encode()))
    assert (row.district, row.ward, row.extra) == ("Cờ Đỏ", "Thới Hưng", {})


def test_every_synthetic_cantho_list_has_its_wards(tmp_path: Path) -> None:
    from pathlib import Path as P

    folder = P(__file__).resolve().parent.parent / "recipients" / "cantho-2024"
    for f in sorted(folder.glob("*.csv")):
        got = list(read_list(f))
        assert sum(1 for r in got if r.ward) > len(got) * 0.9, f.name


def test_header_names_in_nfd_are_recognised(tmp_path: Path) -> None:
    header = unicodedata.normalize("NFD", "Số điện thoại,Họ tên")
    [row] = rows(write(tmp_path, "nfd.csv", f"{header}\n0912345678,An\n".encode()))
    assert (row.phone, row.name) == ("0912345678", "An")


def test_no_phone_column_lists_headers(tmp_path: Path) -> None:
    path = write(tmp_path, "np.csv", "Họ tên,Địa chỉ\nAn,Cần Thơ\n".encode())
    with pytest.raises(ListFileError) as info:
        rows(path)
    assert info.value.line == 1
    assert "no phone column" in info.value.reason
    assert "'Họ tên', 'Địa chỉ'" in info.value.reason


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ListFileError, match="empty file"):
        rows(write(tmp_path, "e.csv", b""))


def test_title_rows_above_header_are_skipped(tmp_path: Path) -> None:
    text = "DANH SÁCH NGƯỜI NHẬN,,\n,,\nSTT,Họ tên,SĐT\n1,An,0912345678\n"
    [row] = rows(write(tmp_path, "t.csv", text.encode()))
    assert (row.line, row.phone, row.name, row.extra) == (4, "0912345678", "An", {"STT": "1"})


def test_blank_rows_skipped_short_rows_padded_long_rows_kept(tmp_path: Path) -> None:
    text = "phone,name,ward\n\n,,\n0912345678\n0987654321,Bình,Xuân Khánh,extra cell\n  ,  ,  \n"
    got = rows(write(tmp_path, "b.csv", text.encode()))
    assert [(r.line, r.phone, r.name, r.ward, r.extra) for r in got] == [
        (4, "0912345678", None, None, {}),
        (5, "0987654321", "Bình", "Xuân Khánh", {"column 4": "extra cell"}),
    ]


def test_line_numbers_are_physical_with_multiline_quoted_fields(tmp_path: Path) -> None:
    text = 'phone,note\n0912345678,"line one\nline two\nline three"\n0987654321,ok\n'
    got = rows(write(tmp_path, "m.csv", text.encode()))
    assert [(r.line, r.phone) for r in got] == [(2, "0912345678"), (5, "0987654321")]
    assert got[0].extra == {"note": "line one\nline two\nline three"}


def test_crlf_and_classic_mac_line_ends(tmp_path: Path) -> None:
    for name, newline in (("crlf.csv", "\r\n"), ("cr.csv", "\r")):
        text = newline.join(["phone,name", "0912345678,An", "0987654321,Bình"]) + newline
        got = rows(write(tmp_path, name, text.encode()))
        assert [(r.line, r.phone, r.name) for r in got] == [(2, "0912345678", "An"), (3, "0987654321", "Bình")]


def test_cells_are_stripped_and_nfc(tmp_path: Path) -> None:
    name = unicodedata.normalize("NFD", "  Hồ Thị Ánh  ")
    [row] = rows(write(tmp_path, "s.csv", f"phone,name\n 0912345678 ,{name}\n".encode()))
    assert (row.phone, row.name) == ("0912345678", "Hồ Thị Ánh")


@pytest.mark.parametrize("rest", [1, 20_000])
def test_unclosed_quote_is_a_list_file_error(tmp_path: Path, rest: int) -> None:
    body = 'phone,name\n0912345678,An\n0912345679,"Bình\n' + "0987654321,x\n" * rest
    got: list[int] = []
    with pytest.raises(ListFileError) as info:
        got.extend(r.line for r in read_list(write(tmp_path, "q.csv", body.encode())))
    assert got == [2]
    assert info.value.line == 3 and "malformed CSV" in info.value.reason


def test_read_list_is_lazy(tmp_path: Path) -> None:
    path = write(tmp_path, "big.csv", b"phone\n" + b"0912345678\n" * 200_000)
    it = read_list(path)
    assert next(it).line == 2
    assert sum(1 for _ in it) == 199_999


# --- XLSX --------------------------------------------------------------------------------------


def test_xlsx_with_numeric_phone_cells(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Danh sách"
    ws.append(["DANH SÁCH GỬI TIN"])
    ws.append([])
    ws.append(["STT", "Số điện thoại", "Họ và tên", "Phường"])
    ws.append([1, 912345678, "Nguyễn Văn An", "An Hòa"])
    ws.append([2, 912345004.0, unicodedata.normalize("NFD", "Trần Thị Bình"), None])
    ws.append([3, "0912 345 678", "Lê Văn C", "Cái Khế"])
    ws.append([None, None, None, None])
    ws.append([5, 1.2345678901234567e19, "Mất số", None])
    ws.append([6, 84912345678, "Quốc tế", None])
    path = tmp_path / "ds.xlsx"
    wb.save(path)

    got = rows(path)
    assert [(r.line, r.phone, r.name, r.ward, r.extra) for r in got] == [
        (4, "912345678", "Nguyễn Văn An", "An Hòa", {"STT": "1"}),
        (5, "912345004", "Trần Thị Bình", None, {"STT": "2"}),
        (6, "0912 345 678", "Lê Văn C", "Cái Khế", {"STT": "3"}),
        (8, "1.23457E+19", "Mất số", None, {"STT": "5"}),
        (9, "84912345678", "Quốc tế", None, {"STT": "6"}),
    ]
    assert [normalise(r.phone).e164 for r in got] == [
        "+84912345678", "+84912345004", "+84912345678", None, "+84912345678"]
    assert normalise(got[3].phone).reason == "scientific-notation"


def test_xlsx_sheet_choice(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["nothing here"])
    other = wb.create_sheet("Quận Ninh Kiều")
    other.append(["phone", "name"])
    other.append([987654321, "B"])
    path = tmp_path / "two.xlsx"
    wb.save(path)
    [row] = rows(path, sheet="Quận Ninh Kiều")
    assert (row.line, row.phone, row.name) == (2, "987654321", "B")
    with pytest.raises(ListFileError, match="no sheet 'Khác'; sheets: 'Sheet', 'Quận Ninh Kiều'"):
        rows(path, sheet="Khác")


def test_xlsx_detected_by_content(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["SĐT"])
    wb.active.append(["0912345678"])
    path = tmp_path / "export.dat"
    wb.save(path)
    assert [r.phone for r in rows(path)] == ["0912345678"]


def test_legacy_xls_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ListFileError) as broken:
        rows(write(tmp_path, "old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100))
    assert broken.value.reason == ("not a readable .xls workbook (Cannot detect file format): open it "
                                   "in Excel or LibreOffice and save it again as .xlsx")
    with pytest.raises(ListFileError, match="cannot open") as info:
        rows(tmp_path / "missing.csv")
    assert info.value.line is None
    assert str(info.value) == f"{tmp_path / 'missing.csv'}: {info.value.reason}"


def test_utf8_file_with_one_bad_byte_names_the_line_instead_of_garbling(tmp_path):
    from outreach.input.listfiles import ListFileError, read_list

    p = tmp_path / "mixed.csv"
    p.write_bytes("phone,name\r\n0912345001,Nguyễn Văn An\r\n".encode("utf-8")
                  + b"0912345002,Tr\xe2n \xff\r\n")
    import pytest

    with pytest.raises(ListFileError) as err:
        list(read_list(p))
    assert err.value.line == 3


def test_xlsx_with_an_empty_first_sheet_reads_the_sheet_with_the_list(tmp_path):
    import openpyxl

    from outreach.input.listfiles import read_list

    wb = openpyxl.Workbook()
    wb.active.title = "Trống"
    ws = wb.create_sheet("Danh sách")
    ws.append(["Họ tên", "Số điện thoại"])
    ws.append(["Nguyễn Văn An", 912345001])
    p = tmp_path / "two-sheets.xlsx"
    wb.save(p)
    rows = list(read_list(p))
    assert [(r.line, r.phone, r.name) for r in rows] == [(2, "912345001", "Nguyễn Văn An")]


# --- lists as ward offices make them (issue 16) ----------------------------------------------

from outreach.input.listfiles import ListInfo  # noqa: E402


def read(path: Path, **kwargs: str) -> tuple[list[RawRow], ListInfo]:
    info = ListInfo(str(path))
    got = list(read_list(path, info=info, **kwargs))
    return got, info


def report_sheet(ws: openpyxl.worksheet.worksheet.Worksheet, ward: str, first_no: int = 1) -> None:
    """A ward office's form: letterhead with the office's own number, title, a header over two
    rows ("Số điện thoại" merged over "Cố định | Di động"), the column-numbering row, a section
    row, the district merged down its rows, totals, date and signatures."""
    ws.append(["UBND PHƯỜNG " + ward.upper(), None, None, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"])
    ws.append(["Điện thoại: 0292 3820 123", None, None, "Độc lập - Tự do - Hạnh phúc"])
    ws.append(["DANH SÁCH SỐ ĐIỆN THOẠI NGƯỜI DÂN"])
    ws.append(["STT", "Họ và tên", "Số điện thoại", None, "Phường", "Quận"])   # row 4
    ws.append([None, None, "Cố định", "Di động", None, None])                  # row 5
    ws.merge_cells("C4:D4")
    for col in "ABEF":
        ws.merge_cells(f"{col}4:{col}5")
    ws.append(["(1)", "(2)", "(3)", "(4)", "(5)", "(6)"])                      # row 6
    ws.append(["I", "Khu vực 1"])                                             # row 7
    ws.append([first_no, "Nguyễn Văn An", "02923820111", "0912345001", ward, "Ninh Kiều"])
    ws.append([first_no + 1, "Trần Thị Bình", None, 912345002, ward, None])
    ws.append([first_no + 2, "Lê Văn Cường", "0292 3820 222", None, ward, None])  # row 10
    ws.merge_cells("F8:F10")
    ws.append(["Tổng cộng", None, None, 3])
    ws.append([None, None, None, None, "Ninh Kiều, ngày 10 tháng 7 năm 2024"])
    ws.append([None, "Người lập biểu", None, None, "TM. UBND PHƯỜNG"])
    ws.append([None, "Phạm Thị Dung", None, None, "Võ Văn Em"])                # row 14


def test_report_style_sheet(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "An Hòa"
    report_sheet(wb.active, "An Hòa")
    path = tmp_path / "an-hoa.xlsx"
    wb.save(path)
    got, info = read(path)
    assert [(r.line, r.phone, r.name, r.ward, r.district, r.sheet) for r in got] == [
        (8, "0912345001", "Nguyễn Văn An", "An Hòa", "Ninh Kiều", "An Hòa"),
        (9, "912345002", "Trần Thị Bình", "An Hòa", "Ninh Kiều", "An Hòa"),
        (10, "", "Lê Văn Cường", "An Hòa", "Ninh Kiều", "An Hòa"),
    ]
    assert got[0].extra == {"STT": "1", "Số điện thoại / Cố định": "02923820111"}
    [sheet] = info.sheets
    assert info.format == "xlsx"
    assert (sheet.name, sheet.header_line, sheet.rows, sheet.skipped) == ("An Hòa", 5, 3, 6)
    assert sheet.columns == {"name": "Họ và tên", "phone": "Số điện thoại / Di động",
                             "ward": "Phường", "district": "Quận"}
    assert sheet.phone_columns_unused == ["Số điện thoại / Cố định"]
    assert sheet.skipped_examples == [(6, "column numbering"), (7, "section"),
                                      (11, "totals or signature"), (12, "totals or signature"),
                                      (13, "totals or signature")]


def test_every_sheet_with_a_list_is_read_and_reported(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "Hướng dẫn"
    wb.active.append(["Mỗi phường một sheet"])
    report_sheet(wb.create_sheet("An Hòa"), "An Hòa")
    report_sheet(wb.create_sheet("Cái Khế"), "Cái Khế", first_no=4)
    hidden = wb.create_sheet("Cũ")
    hidden.append(["SĐT"])
    hidden.append(["0987654321"])
    hidden.sheet_state = "hidden"
    path = tmp_path / "ninh-kieu.xlsx"
    wb.save(path)
    got, info = read(path)
    assert [(r.sheet, r.line, r.ward) for r in got] == [
        ("An Hòa", 8, "An Hòa"), ("An Hòa", 9, "An Hòa"), ("An Hòa", 10, "An Hòa"),
        ("Cái Khế", 8, "Cái Khế"), ("Cái Khế", 9, "Cái Khế"), ("Cái Khế", 10, "Cái Khế")]
    assert [(s.name, s.rows, s.note) for s in info.sheets] == [
        ("Hướng dẫn", 0, "no phone column (expected a header such as 'Số điện thoại', 'SĐT' or "
                         "'phone'); headers seen: 'Mỗi phường một sheet'"),
        ("An Hòa", 3, None), ("Cái Khế", 3, None),
        ("Cũ", 0, "hidden sheet: not read (give --sheet to read it)")]
    only, _ = read(path, sheet="Cũ")
    assert [(r.sheet, r.phone) for r in only] == [("Cũ", "0987654321")]


def test_workbook_without_any_list_names_every_sheet(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["Họ tên", "Địa chỉ"])
    wb.create_sheet("Trống")
    path = tmp_path / "none.xlsx"
    wb.save(path)
    with pytest.raises(ListFileError) as err:
        rows(path)
    assert str(err.value) == (
        f"{path}: no sheet holds a list with a phone column ('Sheet': no phone column (expected "
        "a header such as 'Số điện thoại', 'SĐT' or 'phone'); headers seen: 'Họ tên', 'Địa chỉ'; "
        "'Trống': empty sheet)")


def _rewrite(path: Path, out: Path, part: str, edit) -> None:
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, edit(data) if item.filename == part else data)


def test_xlsx_with_a_wrong_declared_dimension_reads_every_cell(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["Họ tên", "SĐT"])
    for i in range(5):
        wb.active.append([f"Người {i}", f"091234500{i}"])
    good = tmp_path / "good.xlsx"
    wb.save(good)
    bad = tmp_path / "wps.xlsx"  # WPS Office and some exporters declare A1 whatever the size
    _rewrite(good, bad, "xl/worksheets/sheet1.xml",
             lambda d: re.sub(rb'<dimension ref="[^"]*"\s*/>', b'<dimension ref="A1"/>', d))
    assert b'<dimension ref="A1"/>' in zipfile.ZipFile(bad).read("xl/worksheets/sheet1.xml")
    assert [r.phone for r in rows(bad)] == [f"091234500{i}" for i in range(5)]


def test_formula_cells_without_saved_values_are_refused_naming_the_cells(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "DS"
    ws.append(["Họ tên", "SĐT"])
    ws.append(["An", '="0912345001"'])   # openpyxl stores formulas without computing them
    ws.append(["Bình", "=TEXT(912345002,\"0000000000\")"])
    path = tmp_path / "program.xlsx"
    wb.save(path)
    with pytest.raises(ListFileError) as err:
        rows(path)
    assert str(err.value) == (
        f"{path} [sheet 'DS']: formula cells without a saved value (B2, B3): the file was written "
        "by a program that does not compute formulas; open it in Excel or LibreOffice and save "
        "it (or paste the values), then import again")


def test_password_protected_workbook_says_so(tmp_path: Path) -> None:
    # an encrypted .xlsx is an OLE2 compound file holding EncryptionInfo and EncryptedPackage
    body = bytearray(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 1016)
    entry = "EncryptedPackage".encode("utf-16-le")
    body[512: 512 + len(entry)] = entry
    path = write(tmp_path, "locked.xlsx", bytes(body))
    with pytest.raises(ListFileError) as err:
        rows(path)
    assert err.value.reason == (
        "the workbook is password-protected (encrypted): open it in Excel with the password, "
        "then File > Info > Protect Workbook > Encrypt with Password, clear the password and "
        "save; or save a copy as .xlsx without a password")


def test_legacy_xls_with_merged_district(tmp_path: Path) -> None:
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    sh = book.add_sheet("Xã Nhơn Ái")
    sh.write(0, 0, "DANH SÁCH HỘ GIA ĐÌNH")
    for c, label in enumerate(["STT", "Họ và tên", "Số ĐT", "Huyện"]):
        sh.write(1, c, label)
    for r, (name, phone) in enumerate([("Nguyễn Văn An", "0912345001"), ("Lê Thị Bé", 912345002.0)],
                                      start=2):
        sh.write(r, 0, r - 1)
        sh.write(r, 1, name)
        sh.write(r, 2, phone)
    sh.write_merge(2, 3, 3, 3, "Phong Điền")
    path = tmp_path / "nhon-ai.xls"
    book.save(str(path))
    got, info = read(path)
    assert info.format == "xls"
    assert [(r.line, r.phone, r.name, r.district, r.sheet) for r in got] == [
        (3, "0912345001", "Nguyễn Văn An", "Phong Điền", "Xã Nhơn Ái"),
        (4, "912345002", "Lê Thị Bé", "Phong Điền", "Xã Nhơn Ái")]


def _ods(path: Path, rows_: list[list[str]]) -> None:
    cells = "".join("<table:table-row>" + "".join(
        f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>'
        for v in row) + "</table:table-row>" for row in rows_)
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        '<office:body><office:spreadsheet><table:table table:name="Ấp Mỹ Khánh">' + cells +
        "</table:table></office:spreadsheet></office:body></office:document-content>")
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
                'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                '<manifest:file-entry manifest:full-path="/" manifest:media-type='
                '"application/vnd.oasis.opendocument.spreadsheet"/></manifest:manifest>')
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet",
                   compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", content)
        z.writestr("META-INF/manifest.xml", manifest)


def test_ods_from_libreoffice(tmp_path: Path) -> None:
    path = tmp_path / "my-khanh.ods"
    _ods(path, [["DANH SÁCH"], ["Họ tên", "Điện thoại"], ["Nguyễn Văn An", "0912345001"],
                ["Tổng cộng", "1"]])
    got, info = read(path)
    assert info.format == "ods"
    assert [(r.line, r.phone, r.name, r.sheet) for r in got] == [
        (3, "0912345001", "Nguyễn Văn An", "Ấp Mỹ Khánh")]
    assert info.sheets[0].skipped == 1


def test_html_table_saved_as_xls_by_a_web_portal(tmp_path: Path) -> None:
    page = ('<html><head><meta charset="utf-8"></head><body><table>'
            '<tr><td colspan="3">DANH SÁCH NGƯỜI DÂN</td></tr>'
            '<tr><th>Họ và tên</th><th>Số điện thoại</th><th>Quận</th></tr>'
            '<tr><td>Nguyễn Văn An</td><td>0912&nbsp;345&nbsp;001</td><td rowspan="2">Cái Răng</td></tr>'
            '<tr><td>Trần Thị Bình</td><td>0912345002</td></tr>'
            '</table></body></html>')
    path = write(tmp_path, "export.xls", page.encode("utf-8"))
    got, info = read(path)
    assert info.format == "html"
    assert [(r.line, r.phone, r.name, r.district) for r in got] == [
        (3, "0912\xa0345\xa0001", "Nguyễn Văn An", "Cái Răng"),
        (4, "0912345002", "Trần Thị Bình", "Cái Răng")]
    assert normalise(got[0].phone).e164 == "+84912345001"
    empty = write(tmp_path, "portal.xls", b"<html><body><p>Phi\xc3\xaan \xc4\x91\xc4\x83ng nh\xe1\xba\xadp"
                                          b" \xc4\x91\xc3\xa3 h\xe1\xba\xbft h\xe1\xba\xa1n</p></body></html>")
    with pytest.raises(ListFileError) as err:
        rows(empty)
    assert err.value.reason == ("an HTML page with no table (a web page saved with an .xls name): "
                                "export the list from the portal as .xlsx or CSV")


def test_semicolon_csv_with_sep_line_and_title_lines(tmp_path: Path) -> None:
    text = ("sep=;\r\nUBND XÃ THỚI HƯNG\r\nDANH SÁCH HỘ DÂN, NĂM 2024\r\n\r\n"
            "STT;Họ và tên;SĐT;Xã\r\n1;Nguyễn Văn An;0912 345 001;Thới Hưng\r\n"
            "2;Trần Thị Bình;0912345002;Thới Hưng\r\n")
    got = rows(write(tmp_path, "thoi-hung.csv", text.encode("utf-8-sig")))
    assert [(r.line, r.phone, r.name, r.ward) for r in got] == [
        (6, "0912 345 001", "Nguyễn Văn An", "Thới Hưng"), (7, "0912345002", "Trần Thị Bình", "Thới Hưng")]
    no_sep = "DANH SÁCH HỘ DÂN, NĂM 2024\r\nSTT;Họ và tên;SĐT\r\n1;An;0912345001\r\n2;Bình;0912345002\r\n"
    got = rows(write(tmp_path, "title.csv", no_sep.encode("utf-8")))
    assert [(r.line, r.phone, r.name) for r in got] == [(3, "0912345001", "An"), (4, "0912345002", "Bình")]


def test_csv_two_row_header_without_merge_information(tmp_path: Path) -> None:
    text = ("Họ tên,Số điện thoại,,Ghi chú\n,Cố định,Di động,\n"
            "An,0292 3820 111,0912345001,\nBình,,0912345002,Zalo\n")
    got, info = read(write(tmp_path, "two-rows.csv", text.encode()))
    assert [(r.line, r.phone, r.name) for r in got] == [(3, "0912345001", "An"), (4, "0912345002", "Bình")]
    assert info.sheets[0].columns == {"name": "Họ tên", "phone": "Số điện thoại / Di động"}
    assert info.sheets[0].phone_columns_unused == ["Số điện thoại / Cố định"]
    assert info.sheets[0].header_line == 2


def test_the_letterhead_number_and_a_title_are_never_the_header(tmp_path: Path) -> None:
    text = ("UBND PHƯỜNG AN HÒA,Số điện thoại: 0292 3820 123\nSố điện thoại của người dân khu vực 3\n"
            "Họ tên,SĐT\nAn,0912345001\n")
    got, info = read(write(tmp_path, "letterhead.csv", text.encode()))
    assert [(r.line, r.phone) for r in got] == [(4, "0912345001")]
    assert info.sheets[0].header_line == 3


# --- the streamed XLSX reader gives what python-calamine gives ---------------------------------


def _calamine_records(path: Path, sheet: str) -> list[tuple[int, list[str]]]:
    """python-calamine's rows of a sheet through the same text conversion, trailing empty cells
    and empty rows dropped (the streamed reader leaves them out)."""
    import python_calamine as pc

    from outreach.input.listfiles import _sheet_records

    wb = pc.CalamineWorkbook.from_path(str(path))
    out = []
    for line, cells in _sheet_records(wb.get_sheet_by_name(sheet)):
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            out.append((line, cells))
    wb.close()
    return out


def _streamed_records(path: Path) -> dict[str, list[tuple[int, list[str]]]]:
    from outreach.input.listfiles import _XlsxBook

    with open(path, "rb") as f:
        book = _XlsxBook(str(path), f)
        return {name: list(book.records(name, part)) for name, _, part in book.sheets}


def _raw_xlsx(path: Path, sheets: dict[str, str], strings: str, prefix: str = "") -> None:
    """A package written the way Excel writes it (shared strings), sheet XML given as is."""
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    x = f"{prefix}:" if prefix else ""
    xmlns = f'xmlns{":" + prefix if prefix else ""}="{ns}"'
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("_rels/.rels", f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" '
                   f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", f'<{x}workbook {xmlns} xmlns:r="{rel}"><{x}sheets>' + "".join(
            f'<{x}sheet name="{n}" sheetId="{i}" r:id="rId{i}"/>' for i, n in enumerate(sheets, 1))
            + f"</{x}sheets></{x}workbook>")
        z.writestr("xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{pkg}">' + "".join(
            f'<Relationship Id="rId{i}" Type="{rel}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, len(sheets) + 1))
            + f'<Relationship Id="rId99" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/>'
              "</Relationships>")
        z.writestr("xl/sharedStrings.xml", f"<{x}sst {xmlns}>{strings}</{x}sst>")
        for i, body in enumerate(sheets.values(), 1):
            z.writestr(f"xl/worksheets/sheet{i}.xml",
                       f"<{x}worksheet {xmlns}><{x}sheetData>{body}</{x}sheetData></{x}worksheet>")


def test_streamed_xlsx_cells_are_calamines_for_every_kind_of_value(tmp_path: Path) -> None:
    import datetime as dt

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Giá trị"
    ws.append(["SĐT", unicodedata.normalize("NFD", "Họ và tên"), "  cách  ", None, "x"])
    ws.append([912345678, 912345004.0, 1.2345678901234567e19, -3, 0.1 + 0.2])
    ws.append([123456789012345678, 1e-5, 1e20, 0, 2.5])
    ws.append([True, False, "0912 345 678", "'0912345678", "a_x000D_b"])
    ws["B7"] = "after a gap"
    ws["H7"] = "far right"
    formats = ["yyyy-mm-dd h:mm:ss", "dd/mm/yyyy", "h:mm:ss", "[h]:mm:ss", "0.00", "General",
               '"ngày" 0', "mmm yyyy", "[$-F800]dddd, mmmm dd, yyyy", "hh:mm AM/PM", "@"]
    values = [45474.0, 45474.5, 1.5, 0.25, 59, 60, 61, 2958466]
    for r, fmt in enumerate(formats, start=9):
        for c, v in enumerate(values, start=1):
            ws.cell(row=r, column=c, value=v).number_format = fmt
    ws.cell(row=21, column=1, value=dt.datetime(2024, 7, 1, 8, 30))
    ws.cell(row=21, column=2, value=dt.date(2024, 7, 30))
    ws.cell(row=21, column=3, value=dt.time(8, 30))
    ws.cell(row=22, column=1, value=14).number_format = "mm-dd-yy"  # built-in format 14
    other = wb.create_sheet("Thưa")
    other["C3"] = "sparse"
    other["A5"] = 7
    other.merge_cells("A5:A7")
    path = tmp_path / "values.xlsx"
    wb.save(path)
    streamed = _streamed_records(path)
    assert list(streamed) == ["Giá trị", "Thưa"]
    for name, got in streamed.items():
        assert got == _calamine_records(path, name)
    assert streamed["Giá trị"][0] == (1, ["SĐT", "Họ và tên", "cách", "", "x"])
    assert streamed["Giá trị"][1] == (2, ["912345678", "912345004", "1.23457E+19", "-3", "0.3"])
    assert streamed["Thưa"] == [(3, ["", "", "sparse"]), (5, ["7"])]


def test_streamed_xlsx_shared_strings_rich_text_prefixes_and_odd_cells(tmp_path: Path) -> None:
    # shared strings: plain, rich-text runs, a phonetic run (not part of the text), an escaped
    # carriage return, entities, NFD text; cells and rows without a reference; error, ISO-date,
    # boolean, inline and formula-string cells; a namespace prefix on every element
    strings = ("<x:si><x:t>Số điện thoại</x:t></x:si>"
               "<x:si><x:r><x:t xml:space='preserve'>Nguyễn </x:t></x:r><x:r><x:rPr><x:b/></x:rPr><x:t>Văn An</x:t></x:r>"
               "<x:rPh sb='0' eb='1'><x:t>PHONETIC</x:t></x:rPh></x:si>"
               "<x:si><x:t xml:space='preserve'> 0912 345 001 </x:t></x:si>"
               "<x:si><x:t>a_x000D_b &amp; &lt;c&gt;</x:t></x:si>"
               f"<x:si><x:t>{unicodedata.normalize('NFD', 'Trần Thị Bình')}</x:t></x:si>")
    body = ('<x:row r="2"><x:c r="A2" t="s"><x:v>0</x:v></x:c><x:c r="B2" t="s"><x:v>1</x:v></x:c></x:row>'
            '<x:row r="3"><x:c r="A3" t="s"><x:v>2</x:v></x:c><x:c r="C3" t="s"><x:v>3</x:v></x:c></x:row>'
            '<x:row><x:c><x:v>912345002</x:v></x:c><x:c t="s"><x:v>4</x:v></x:c>'
            '<x:c t="e"><x:v>#N/A</x:v></x:c><x:c t="b"><x:v>1</x:v></x:c></x:row>'
            '<x:row r="9"><x:c r="A9" t="d"><x:v>2024-07-01T08:30:00</x:v></x:c>'
            '<x:c r="B9" t="str"><x:f>A1</x:f><x:v> formula text </x:v></x:c>'
            '<x:c r="C9" t="inlineStr"><x:is><x:r><x:t>in</x:t></x:r><x:r><x:t>line</x:t></x:r></x:is></x:c>'
            '<x:c r="D9" s="0"/><x:c r="E9"><x:v>1.0E+3</x:v></x:c></x:row>')
    path = tmp_path / "excel.xlsx"
    _raw_xlsx(path, {"DS": body}, strings, prefix="x")
    got = _streamed_records(path)["DS"]
    assert got == _calamine_records(path, "DS")
    assert got == [(2, ["Số điện thoại", "Nguyễn Văn An"]), (3, ["0912 345 001", "", "a\rb & <c>"]),
                   (4, ["912345002", "Trần Thị Bình", "", "TRUE"]),
                   (9, ["2024-07-01T08:30:00", "formula text", "inline", "", "1000"])]


def test_workbook_rows_below_the_first_keep_their_row_numbers(tmp_path: Path) -> None:
    # python-calamine yields rows from row 1 (leading empty rows included) and cells from the
    # first column with a value: an .xls list that starts at C3 has its number on row 4
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    sh = book.add_sheet("DS")
    sh.write(2, 2, "SĐT")
    sh.write(2, 3, "Họ tên")
    sh.write(3, 2, "0912345001")
    sh.write(3, 3, "An")
    book.save(str(tmp_path / "low.xls"))
    wb = openpyxl.Workbook()
    wb.active["C3"], wb.active["D3"], wb.active["C4"], wb.active["D4"] = "SĐT", "Họ tên", "0912345001", "An"
    wb.save(tmp_path / "low.xlsx")
    for name in ("low.xls", "low.xlsx"):
        got, info = read(tmp_path / name)
        assert [(r.line, r.phone, r.name) for r in got] == [(4, "0912345001", "An")], name
        assert info.sheets[0].header_line == 3


def test_streamed_xlsx_refuses_a_damaged_sheet_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad-index.xlsx"
    _raw_xlsx(path, {"DS": '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
                           '<row r="2"><c r="A2" t="s"><v>7</v></c></row>'}, "<si><t>SĐT</t></si>")
    with pytest.raises(ListFileError) as err:
        rows(path)
    assert str(err.value) == (f"{path} [sheet 'DS']:2: cannot read sheet (cell A2: shared string "
                              "'7' is not in the workbook's table)")
    path = tmp_path / "bad-xml.xlsx"
    _raw_xlsx(path, {"DS": '<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="2"><c r="A2">'},
              "<si><t>SĐT</t></si>")
    with pytest.raises(ListFileError) as err:
        rows(path)
    assert err.value.sheet == "DS"
    assert err.value.reason.startswith("cannot read sheet (malformed XML in xl/worksheets/sheet1.xml: ")


def test_streamed_xlsx_yields_rows_before_the_rest_of_the_sheet_is_read(tmp_path: Path) -> None:
    # the rows come as the sheet XML is decompressed: a sheet cut short after 3,000 rows gives
    # them before the error (a reader that loads the whole sheet first gives none)
    body = '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>' + "".join(
        f'<row r="{r}"><c r="A{r}"><v>9123{r:05d}</v></c><c r="B{r}" t="inlineStr"><is><t>N {r}</t>'
        "</is></c></row>" for r in range(2, 3_002)) + '<row r="3002"><c r="A3002"><v>91'
    path = tmp_path / "cut.xlsx"
    _raw_xlsx(path, {"DS": body}, "<si><t>SĐT</t></si><si><t>Họ tên</t></si>")
    got: list[RawRow] = []
    with pytest.raises(ListFileError) as err:
        for row in read_list(path):
            got.append(row)
    assert len(got) == 3_000
    assert (got[0].line, got[0].phone, got[0].name) == (2, "912300002", "N 2")
    assert (got[-1].line, got[-1].phone) == (3_001, "912303001")
    assert err.value.reason.startswith("cannot read sheet (malformed XML in xl/worksheets/sheet1.xml")

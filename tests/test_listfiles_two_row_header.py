"""Two-row headers: a merged group header over sub-headers, with the name, phone and district
columns in the first row only, the second row only, or split over both (CSV and XLSX)."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest

from outreach.input.listfiles import ListInfo, read_list

DATA = [["1", "Nguyễn Văn An", "0912345001", "02923820111", "Ninh Kiều"],
        ["2", "Trần Thị Bình", "0912345002", "", "Cái Răng"],
        ["3", "Lê Văn Cường", "0912345003", "", "Ô Môn"]]
NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường"]
PHONES = ["0912345001", "0912345002", "0912345003"]
DISTRICTS = ["Ninh Kiều", "Cái Răng", "Ô Môn"]

# (header rows, merged ranges of the XLSX form, expected columns)
LAYOUTS = {
    # "Họ và tên" and "Quận/Huyện" merged down both rows; "Số điện thoại" over "Di động | Cố định"
    "phone group split over two rows": (
        [["STT", "Họ và tên", "Số điện thoại", "", "Quận/Huyện"],
         ["", "", "Di động", "Cố định", ""]],
        ["A1:A2", "B1:B2", "C1:D1", "E1:E2"],
        {"name": "Họ và tên", "phone": "Số điện thoại / Di động", "district": "Quận/Huyện"}),
    # the first row has no phone word at all ("Liên hệ"): the header is found on row 2, and the
    # name and district of row 1 (empty below) must not be lost
    "name only in row 1": (
        [["STT", "Họ và tên", "Liên hệ", "", "Quận/Huyện"],
         ["", "", "Di động", "Cố định", ""]],
        ["A1:A2", "B1:B2", "C1:D1", "E1:E2"],
        {"name": "Họ và tên", "phone": "Liên hệ / Di động", "district": "Quận/Huyện"}),
    # the name header written in the second row, its first-row cell empty
    "name only in row 2": (
        [["STT", "", "Số điện thoại", "", "Quận/Huyện"],
         ["", "Họ và tên", "Di động", "Cố định", ""]],
        ["C1:D1", "E1:E2"],
        {"name": "Họ và tên", "phone": "Số điện thoại / Di động", "district": "Quận/Huyện"}),
    # the district in row 1 with an empty sub-header, next to the phone group
    "district in row 1, sub-header empty": (
        [["STT", "Họ và tên", "Số điện thoại", "", "Quận/Huyện"],
         ["", "", "Di động", "Cố định", ""]],
        [],  # no merge information (as CSV has none)
        {"name": "Họ và tên", "phone": "Số điện thoại / Di động", "district": "Quận/Huyện"}),
    # the group only in row 1, every other label in row 2: the district right of the phone
    # group is not taken for a phone column ("Điện thoại / Quận/Huyện")
    "district in row 2 next to the phone group": (
        [["", "", "Điện thoại", "", ""],
         ["STT", "Họ và tên", "Di động", "Cố định", "Quận/Huyện"]],
        ["C1:D1"],
        {"name": "Họ và tên", "phone": "Điện thoại / Di động", "district": "Quận/Huyện"}),
}


def write_csv(path: Path, header: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(header + DATA)
    return path


def write_xlsx(path: Path, header: list[list[str]], merges: list[str]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in header:
        ws.append([c or None for c in row])
    for rng in merges:
        ws.merge_cells(rng)
    for row in DATA:
        ws.append([c or None for c in row])
    wb.save(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_two_row_header_keeps_name_phone_and_district(tmp_path: Path, layout: str,
                                                      fmt: str) -> None:
    header, merges, columns = LAYOUTS[layout]
    path = tmp_path / f"list.{fmt}"
    if fmt == "csv":
        write_csv(path, header)
    else:
        write_xlsx(path, header, merges)
    info = ListInfo(str(path))
    got = list(read_list(path, info=info))
    [sheet] = info.sheets
    assert sheet.header_line == 2
    assert sheet.columns == columns
    assert [r.name for r in got] == NAMES
    assert [r.phone for r in got] == PHONES
    assert [r.district for r in got] == DISTRICTS
    assert [r.line for r in got] == [3, 4, 5]
    assert got[0].extra["STT"] == "1"
    # "Cố định" under a phone group is a second phone column; under "Liên hệ" it is not one
    fixed = [] if layout == "name only in row 1" else [
        columns["phone"].split(" / ")[0] + " / Cố định"]
    assert sheet.phone_columns_unused == fixed


def test_a_title_row_above_the_header_is_not_joined(tmp_path: Path) -> None:
    """A title or letterhead line right above a one-row header is not a first header row."""
    path = tmp_path / "title.csv"
    path.write_text("DANH SÁCH HỘ DÂN,PHƯỜNG AN HÒA\nSTT,Họ và tên,SĐT,Quận\n"
                    "1,Nguyễn Văn An,0912345001,Ninh Kiều\n", encoding="utf-8")
    info = ListInfo(str(path))
    got = list(read_list(path, info=info))
    assert info.sheets[0].columns == {"name": "Họ và tên", "phone": "SĐT", "district": "Quận"}
    assert [(r.line, r.name, r.district) for r in got] == [(3, "Nguyễn Văn An", "Ninh Kiều")]


def test_import_of_a_two_row_header_list_stores_the_names(tmp_path: Path) -> None:
    """End to end: `recipients import` of the XLSX with the name only in the first row."""
    from click.testing import CliRunner

    from outreach.cli import main

    header, merges, _columns = LAYOUTS["name only in row 1"]
    path = write_xlsx(tmp_path / "list.xlsx", header, merges)
    db = f"sqlite:///{tmp_path / 'o.db'}"
    runner = CliRunner()
    res = runner.invoke(main, ["--lang", "en", "--database-url", db, "recipients", "import",
                               str(path), "--list", "l1"])
    assert res.exit_code == 0, res.output
    from outreach.ledger.db import Database
    from sqlalchemy import text

    with Database(db).engine.connect() as conn:
        rows = conn.execute(text("SELECT name, district FROM recipients ORDER BY name")).all()
    assert sorted(rows) == sorted(zip(NAMES, DISTRICTS))

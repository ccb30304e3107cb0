"""Importing lists as ward offices send them: refusals instead of silent empty imports, the
summary of sheets and columns, administrative units old and new, Ctrl-C."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from outreach.input import recipients
from outreach.ledger import runs
from outreach.cli import main
from outreach.ledger.models import Delivery, Import, ImportIssue, Recipient
from tests.helpers import fresh_db, load, write_campaign


def count(db, model) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_list_without_any_valid_mobile_number_is_refused(tmp_path: Path) -> None:
    path = csv(tmp_path, "wrong-column.csv", "Họ tên,Số điện thoại\n" + "".join(
        f"Người {i},0292 3820 12{i}\n" for i in range(4)) + "Người 5,không có\n")
    db = fresh_db(tmp_path)
    with pytest.raises(recipients.FewValidNumbers) as err:
        recipients.import_files(db, [path], list_name="x")
    assert str(err.value) == (
        f"{path}: no valid mobile number in 5 rows (landline 4, not-a-number 1); phone column "
        "'Số điện thoại', header at row 1: check the column and the sheet; nothing was imported "
        "(pass --allow-few-valid to import it anyway)")
    assert (count(db, Recipient), count(db, Import), count(db, ImportIssue)) == (0, 0, 0)
    s = recipients.import_files(db, [path], list_name="x", allow_few_valid=True)
    assert (s.rows_read, s.imported, s.rejected) == (5, 0, 5)


def test_a_list_with_valid_numbers_in_under_half_its_rows_is_refused(tmp_path: Path) -> None:
    good = "".join(f"A{i},091234500{i}\n" for i in range(4))
    bad = "".join(f"B{i},091234{i}\n" for i in range(5))
    path = csv(tmp_path, "half.csv", "Họ tên,SĐT\n" + good + bad)
    db = fresh_db(tmp_path)
    with pytest.raises(recipients.FewValidNumbers, match=r"only 4 of 9 rows have a valid mobile "
                                                         r"number \(invalid 5\)"):
        recipients.import_files(db, [path], list_name="x")
    fine = csv(tmp_path, "fine.csv", "Họ tên,SĐT\n" + good + bad[: bad.index("B4")])
    assert recipients.import_files(db, [fine], list_name="x").imported == 4  # 4 of 8: half


def test_one_empty_sheet_of_a_workbook_is_refused_naming_the_sheet(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "Ấp 1"
    wb.active.append(["Họ tên", "SĐT"])
    wb.active.append(["An", "0912345001"])
    two = wb.create_sheet("Ấp 2")
    two.append(["Họ tên", "SĐT"])
    path = tmp_path / "ap.xlsx"
    wb.save(path)
    db = fresh_db(tmp_path)
    with pytest.raises(recipients.FewValidNumbers) as err:
        recipients.import_files(db, [path], list_name="x")
    assert str(err.value).startswith(f"{path} [sheet 'Ấp 2']: no data rows under the header (row 1)")
    s = recipients.import_files(db, [path], list_name="x", sheet="Ấp 1")
    assert s.imported == 1


def report_workbook(path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "P. An Hoà"
    ws.append(["UBND PHƯỜNG AN HÒA", None, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"])
    ws.append(["ĐT: 0292 3820 123"])
    ws.append(["DANH SÁCH NGƯỜI DÂN"])
    ws.append(["STT", "Họ và tên", "Số điện thoại", "Phường", "Quận"])
    ws.append(["I", "Khu vực 1"])
    ws.append([1, "Nguyễn Văn An", "ĐT: 0912 345 001 (Zalo)", "P. An Hoà", "Q. Ninh Kieu"])
    ws.append([2, "Trần Thị Bình", "0912345002 (chồng) / 0912345003 (vợ)", "An Hòa", None])
    ws.append([3, "Lê Văn Cường", "0912345004", "Phường Xyz", None])
    ws.merge_cells("E6:E8")
    ws.append(["Tổng cộng", None, 3])
    ws.append([None, "Người lập biểu", None, "TM. UBND PHƯỜNG"])
    ws.append([None, "Phạm Thị Dung", None, "Võ Văn Em"])
    wb.save(path)


def test_report_style_import_summary_and_units_old_and_new(tmp_path: Path) -> None:
    path = tmp_path / "an-hoa.xlsx"
    report_workbook(path)
    db = fresh_db(tmp_path)
    s = recipients.import_files(db, [path], list_name="an-hoa")
    assert (s.rows_read, s.extra_numbers, s.imported, s.rejected, s.skipped_rows) == (3, 1, 4, 0, 4)
    assert s.shared_cell_count == 2
    assert s.shared_cells == [(f"{path} [sheet 'P. An Hoà']:6", "ĐT: 091* *** 001 (Zalo)", 1),
                              (f"{path} [sheet 'P. An Hoà']:7", "091******* (chồng) / *******003 (vợ)", 2)]
    [info] = s.lists
    [sheet] = info.sheets
    assert (sheet.header_line, sheet.rows, sheet.skipped) == (4, 3, 4)
    assert s.unknown_units == {("ward", "Phường Xyz"): 1}
    with db.engine.connect() as conn:
        got = conn.execute(select(Recipient.e164, Recipient.district, Recipient.ward,
                                  Recipient.province, Recipient.district_code, Recipient.ward_code,
                                  Recipient.new_province, Recipient.new_ward,
                                  Recipient.new_ward_code).order_by(Recipient.e164)).all()
    both = ("Ninh Kiều", "An Hòa", "Thành phố Cần Thơ", "916", "31120", "Thành phố Cần Thơ",
            "Phường Cái Khế", "31120")
    assert [tuple(r) for r in got] == [
        ("+84912345001", *both), ("+84912345002", *both), ("+84912345003", *both),
        ("+84912345004", "Ninh Kiều", "Phường Xyz", "Thành phố Cần Thơ", "916", None, None, None, None)]


@pytest.mark.parametrize(("start", "district", "ward"), [
    ("2024-07-01", "Ninh Kiều", "An Hòa"),                  # reports by the 2024 district
    ("2026-01-05", "Thành phố Cần Thơ", "Phường Cái Khế"),  # by the province and new commune
])
def test_a_campaign_reports_by_the_units_of_its_time(tmp_path: Path, start: str, district: str,
                                                     ward: str) -> None:
    spec = load(write_campaign(tmp_path, n=1, start=start, end=start[:4] + "-12-31"))
    db = fresh_db(tmp_path)
    import datetime as dt

    now = dt.datetime.fromisoformat(start + "T02:00:00+00:00")
    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=now)
    recipients.import_files(db, spec.list_files(), list_name=spec.list_name, now=now)
    with db.engine.begin() as conn:
        runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "mock"}, now=now)
        assert conn.execute(select(Delivery.district, Delivery.ward)).one() == (district, ward)


@pytest.mark.parametrize("handlers", ["default", "graceful"])
def test_ctrl_c_during_a_large_import_leaves_nothing_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handlers: str) -> None:
    import signal

    monkeypatch.setattr(recipients, "PARALLEL_MIN_BYTES", 1000)  # the reader is a child process
    path = tmp_path / "big.csv"
    path.write_text("Họ tên,SĐT\n" + "".join(f"N{i},09655{i:05d}\n" for i in range(50_000)),
                    encoding="utf-8")
    db = fresh_db(tmp_path)
    calls = []

    def interrupt(rows: int) -> None:
        calls.append(rows)
        if rows == 20_000:
            raise KeyboardInterrupt

    # "graceful": as during a launch (cli.campaign.graceful_stop), handlers that catch SIGINT
    # and SIGTERM, which the forked reader inherits; the parent's terminate() must still end it
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if handlers == "graceful":
        for sig in previous:
            signal.signal(sig, lambda *_: None)
    try:
        with pytest.raises(KeyboardInterrupt):
            recipients.import_files(db, [path], list_name="big", progress=interrupt)
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
    assert calls == [10_000, 20_000]
    assert (count(db, Recipient), count(db, Import), count(db, ImportIssue)) == (0, 0, 0)
    assert multiprocessing.active_children() == []  # the reader process is gone


def test_cli_refusal_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = csv(tmp_path, "landlines.csv", "SĐT\n0292 3820 123\n0292 3820 124\n")
    res = CliRunner().invoke(main, ["--database-url", f"sqlite:///{tmp_path / 'c.db'}",
                                    "recipients", "import", str(path)])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].endswith(
        f"{path}: no valid mobile number in 2 rows (landline 2); phone column 'SĐT', header at "
        "row 1: check the column and the sheet; nothing was imported (pass --allow-few-valid to "
        "import it anyway)")
    assert "Traceback" not in res.output


def test_cli_summary_names_sheets_header_row_columns_and_skipped_rows(tmp_path: Path) -> None:
    path = tmp_path / "an-hoa.xlsx"
    report_workbook(path)
    res = CliRunner().invoke(main, ["--database-url", f"sqlite:///{tmp_path / 'c.db'}",
                                    "recipients", "import", str(path), "--format", "json"])
    assert res.exit_code == 0, res.output
    import json

    data = json.loads(res.stdout)
    assert data["lists"] == [{"file": str(path), "format": "xlsx", "sheets": [
        {"name": "P. An Hoà", "header_line": 4, "columns": {
            "name": "Họ và tên", "phone": "Số điện thoại", "ward": "Phường", "district": "Quận"},
         "phone_columns_unused": [], "rows": 3, "skipped": 4, "note": None}]}]
    assert (data["skipped_rows"], data["shared_cells"], data["imported"]) == (4, 2, 4)
    assert data["unknown_units"] == [{"kind": "ward", "name": "Phường Xyz", "rows": 1}]
    table = CliRunner().invoke(main, ["--database-url", f"sqlite:///{tmp_path / 'd.db'}",
                                      "recipients", "import", str(path)])
    assert table.exit_code == 0, table.output
    assert "Files and sheets read" in table.output
    assert "0912345002" not in table.output  # numbers masked


def test_an_unknown_province_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    """A mistyped --province would leave every district unresolved: refused, nothing written;
    a real one, written loosely, is accepted."""
    path = csv(tmp_path, "p.csv", "SĐT,Quận,Phường\n0905550001,Ninh Kiều,An Hòa\n")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    res = CliRunner().invoke(main, ["--database-url", url, "recipients", "import", str(path),
                                    "--province", "Hà Lội"])
    assert res.exit_code == 2
    assert ("'Hà Lội' is not a Vietnamese province (before or after 1 July 2025)"
            in " ".join(res.output.split()))
    assert "Traceback" not in res.output
    ok = CliRunner().invoke(main, ["--database-url", url, "recipients", "import", str(path),
                                   "--province", "TP. Cần Thơ", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    import json

    assert json.loads(ok.stdout)["imported"] == 1

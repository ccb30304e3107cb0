"""Large lists are read in a child process: same results, same errors, as reading in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.input import listfiles, recipients
from tests.helpers import fresh_db


def _write(path: Path, n: int, bad_line: int | None = None) -> None:
    with open(path, "wb") as fh:
        fh.write("STT,Họ và tên,Số điện thoại,Phường/Xã\r\n".encode("utf-8-sig"))
        for i in range(n):
            phone = f"09655{i % 90000:05d}" if i % 50 else "0292 3820 123"
            line = f"{i + 1},Nguyễn Văn {i},{phone},An Hòa\r\n".encode("utf-8")
            if bad_line is not None and i + 2 == bad_line:
                line = b"1,Nguy\xff\xfe n,0912345678,X\r\n"
            fh.write(line)


@pytest.mark.parametrize("parallel", ["1", "0"])
def test_parallel_and_serial_imports_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           parallel: str) -> None:
    monkeypatch.setattr(recipients, "PARALLEL_MIN_BYTES", 1000)
    monkeypatch.setenv("OUTREACH_IMPORT_PARALLEL", parallel)
    path = tmp_path / "big.csv"
    _write(path, 100_000)
    db = fresh_db(tmp_path)
    s = recipients.import_files(db, [path], list_name="big")
    assert s.rows_read == 100_000
    assert s.rejected == 2000  # every 50th row is a landline
    assert s.imported == 90_000 - 1800  # numbers repeat after 90,000 rows; landline slots skipped
    assert s.duplicates == 100_000 - 2000 - s.imported
    assert s.balanced
    assert s.by_reason["landline"] == 2000
    first_dup = next(i for i in s.issues if i.kind == "duplicate")
    assert first_dup.detail == f"first seen at {path}:{first_dup.line - 90_000}"


def test_an_error_in_the_child_process_names_file_and_line(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipients, "PARALLEL_MIN_BYTES", 1000)
    path = tmp_path / "broken.csv"
    _write(path, 30_000, bad_line=25_000)
    db = fresh_db(tmp_path)
    with pytest.raises(listfiles.ListFileError) as err:
        recipients.import_files(db, [path], list_name="broken")
    assert err.value.file == str(path)
    assert err.value.line == 25_000
    from sqlalchemy import func, select

    from outreach.ledger.models import Recipient

    with db.engine.connect() as conn:  # nothing half-imported
        assert conn.execute(select(func.count()).select_from(Recipient)).scalar_one() == 0


def test_a_workbook_error_in_the_child_process_keeps_its_sheet(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import openpyxl

    monkeypatch.setattr(recipients, "PARALLEL_MIN_BYTES", 1000)
    wb = openpyxl.Workbook()
    wb.active.title = "Ấp Mỹ Khánh"
    wb.active.append(["Họ tên", "SĐT"])
    for i in range(200):
        wb.active.append([f"Người {i}", f"=\"09123450{i:02d}\"" if i == 150 else f"09123{i:05d}"])
    path = tmp_path / "big.xlsx"
    wb.save(path)
    assert path.stat().st_size > 1000
    db = fresh_db(tmp_path)
    with pytest.raises(listfiles.ListFileError) as err:
        recipients.import_files(db, [path], list_name="x")
    assert (err.value.sheet, str(err.value).split(":")[0]) == ("Ấp Mỹ Khánh",
                                                                f"{path} [sheet 'Ấp Mỹ Khánh']")
    assert "formula cells without a saved value (B152)" in err.value.reason


def test_a_large_workbook_imports_the_same_read_in_a_child_or_here(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # a workbook's child process only reads; the numbers are normalised by the importing one
    import openpyxl
    from sqlalchemy import select

    from outreach.ledger.models import Recipient

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Cái Khế"
    ws.append(["DANH SÁCH"])
    ws.append(["STT", "Họ và tên", "Số điện thoại", "Quận"])
    for i in range(1_000):
        phone = (f"09123{i:05d} / 09876{i:05d}" if i % 100 == 7 else "0292 3820 123" if i % 50 == 3
                 else 912000000 + i if i % 2 else f"09120{i:05d}")
        ws.append([i + 1, f"Người {i}", phone, "Ninh Kiều" if i % 500 == 0 else None])
        if i % 500 == 0:
            ws.merge_cells(f"D{i + 3}:D{i + 502}")
    path = tmp_path / "big.xlsx"
    wb.save(path)
    monkeypatch.setattr(recipients, "PARALLEL_MIN_BYTES", 1000)
    got = []
    for parallel in ("1", "0"):
        monkeypatch.setenv("OUTREACH_IMPORT_PARALLEL", parallel)
        (tmp_path / parallel).mkdir()
        db = fresh_db(tmp_path / parallel)
        s = recipients.import_files(db, [path], list_name="big")
        with db.engine.connect() as conn:
            people = conn.execute(select(Recipient.e164, Recipient.name, Recipient.district,
                                         Recipient.source_line).order_by(Recipient.e164)).all()
        got.append((s.to_dict() | {"import_id": None}, people))
    assert got[0] == got[1]
    summary, people = got[0]
    assert (summary["rows_read"], summary["extra_numbers"], summary["rejected"]) == (1_000, 10, 20)
    assert summary["imported"] == 1_000 + 10 - 20 - summary["duplicates"]
    assert people[0] == ("+84912000000", "Người 0", "Ninh Kiều", 3)
    assert all(district == "Ninh Kiều" for _, _, district, _ in people)

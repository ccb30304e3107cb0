"""Messages that lead somewhere: real ids in hints, plurals that agree, unknown names are
errors, database errors say which database and why, tables keep file:line whole, a format and
a file suffix that disagree are refused, opt-out reasons are kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from outreach.cli import main
from outreach.ledger.db import Database
from outreach.ledger.models import Suppression
from outreach.sending.engine import RunReport
from tests.helpers import fresh_db
from tests.web_helpers import open_campaign

ROOT = Path(__file__).resolve().parent.parent
CID = "cantho-2024-pcmbn"


def run(*args: str, db: str | None = None, wide: bool = False) -> tuple[int, str, str]:
    pre = (["--database-url", db] if db else []) + (["--wide"] if wide else [])
    r = CliRunner().invoke(main, [*pre, *args])
    return r.exit_code, r.stdout, r.stderr


def flat(text: str) -> str:
    return " ".join(text.split())


def test_hints_carry_the_real_campaign_id_and_plurals_agree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from outreach.cli.campaign import _print_report

    _print_report(RunReport(run_id=7, counts={"sent": 3, "unknown": 1}), "tiem-chung-2024")
    out = flat(capsys.readouterr().out)
    assert ("1 delivery has an unknown outcome: see `outreach deliveries list tiem-chung-2024 "
            "--status unknown`") in out
    assert "CAMPAIGN" not in out and " ID " not in out
    _print_report(RunReport(run_id=7, counts={"unknown": 2}), "tiem-chung-2024")
    assert "2 deliveries have an unknown outcome" in flat(capsys.readouterr().out)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    toml = open_campaign(tmp_path, "hai-tin", "mock", n=2)
    code, out, err = run("campaign", "launch", str(toml), "--no-progress", db=url)
    assert code == 0, err
    code, out, err = run("campaign", "launch", str(toml), "--no-progress", db=url)
    assert "see `outreach report hai-tin`" in flat(out)
    code, out, err = run("deliveries", "list", "hai-tin", "--export",
                         str(tmp_path / "x.csv"), db=url)
    assert code == 0 and "2 deliveries written to" in flat(out)
    code, out, err = run("deliveries", "list", "hai-tin", "--not-reached", "--export",
                         str(tmp_path / "y.csv"), db=url)
    assert code == 0 and "0 recipients not reached written to" in flat(out)
    code, out, err = run("audit", "list", "--limit", "1", db=url)
    assert "Audit log: 1 entry" in flat(out)
    code, out, err = run("audit", "list", "--limit", "2", db=url)
    assert "Audit log: 2 entries" in flat(out)


def test_an_unknown_campaign_or_list_is_an_error_not_an_empty_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    code, out, err = run("runs", "list", "khong-co", db=url)
    assert code == 1 and out == ""
    assert ("no campaign khong-co in this database: no campaign was launched yet "
            "(`outreach campaign launch FILE.toml`)") in flat(err)
    toml = open_campaign(tmp_path, "co-that", "mock", n=2)
    assert run("campaign", "launch", str(toml), "--no-progress", db=url)[0] == 0
    code, out, err = run("runs", "list", "khong-co", db=url)
    assert code == 1 and "no campaign khong-co in this database; campaigns: co-that" in flat(err)
    code, out, err = run("deliveries", "list", "khong-co", db=url)
    assert code == 1 and "campaigns: co-that" in flat(err)
    code, out, err = run("report", "khong-co", db=url)
    assert code == 1 and "no campaign khong-co in this database; campaigns: co-that" in flat(err)
    code, out, err = run("recipients", "list", "--list", "khong-co", db=url)
    assert code == 1 and "no list 'khong-co' in this database; lists: co-that" in flat(err)
    code, out, err = run("recipients", "list", "--list", "co-that", db=url)
    assert code == 0 and "Recipients (2)" in out
    code, out, err = run("campaign", "pause", "co-that", db=url)
    assert code == 1 and "campaign co-that has no unfinished run (last: #1, completed)" in err


def test_database_errors_name_the_database_and_the_likely_cause(tmp_path: Path) -> None:
    # another version: a revision this version does not know
    newer = tmp_path / "newer.db"
    fresh_db(tmp_path, "newer.db").dispose()
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    code, out, err = run("report", CID, db=f"sqlite:///{newer}")
    assert code == 1 and "Traceback" not in err
    assert (f"error: database {newer}: the database was written by another version of "
            "outreach") in flat(err)
    # corruption: not a database at all
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not SQLite\n" * 100)
    code, out, err = run("report", CID, db=f"sqlite:///{broken}")
    assert code == 1 and "Traceback" not in err
    assert f"error: database {broken}: the file is damaged or is not an outreach database" in \
        flat(err)
    # permissions: the error SQLite gives a process that may only read the file (root, who
    # runs these tests, may write anything, so the file is opened read-only as such a user's)
    from sqlalchemy.exc import OperationalError

    from outreach.cli import database_error_message

    ro = tmp_path / "ro.db"
    fresh_db(tmp_path, "ro.db").dispose()
    conn = sqlite3.connect(f"file:{ro}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("INSERT INTO suppressions (e164) VALUES ('+84905550001')")
    conn.close()
    exc = OperationalError("INSERT ...", {}, caught.value)

    class Obj:
        db_url = f"sqlite:///{ro}"

    msg = database_error_message(exc, Obj())
    assert msg.startswith(f"database {ro}: this user may not write there (permissions)")
    assert f"`ls -ld {ro}`" in msg


def test_tables_keep_file_and_line_whole(tmp_path: Path) -> None:
    """At 80 columns (a pipe, a small terminal) the rejected rows' file:line wraps and is never
    cut with an ellipsis; --wide prints each one whole on its line."""
    deep = tmp_path / "Danh-sach" / "Phuong-An-Hoa" / "To-dan-pho-so-12" / "Khu-vuc-3"
    deep.mkdir(parents=True)
    lst = deep / "danh-sach-nguoi-nhan-thang-7-nam-2024.csv"
    rows = ["Số điện thoại,Họ tên"] + [f"09655{i:05d},Người {i}" for i in range(8)]
    rows += ["12345,Sai số", "abc,Không phải số"]
    lst.write_text("\n".join(rows) + "\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 't.db'}"
    code, out, err = run("recipients", "import", str(lst), db=url)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    section = out.split("Rejected and duplicate rows", 1)[1]
    assert "…" not in section
    joined = "".join(line.split("│")[1].strip() for line in section.splitlines()
                     if line.count("│") > 2)
    assert f"{lst}:10" in joined and f"{lst}:11" in joined
    code, out, err = run("recipients", "import", str(lst), db=url, wide=True)
    assert code == 0
    whole = [line for line in out.splitlines() if f"{lst}:10" in line or f"{lst}:11" in line]
    assert len(whole) == 2 and "too-short" in whole[0] + whole[1]


def test_a_format_and_a_file_suffix_that_disagree_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    toml = open_campaign(tmp_path, "dinh-dang", "mock", n=2)
    assert run("campaign", "launch", str(toml), "--no-progress", db=url)[0] == 0
    out_csv = tmp_path / "report.csv"
    code, out, err = run("report", "dinh-dang", "--format", "xlsx", "--out", str(out_csv), db=url)
    assert code == 2 and not out_csv.exists()
    assert (f"--format xlsx writes a .xlsx file, but --out {out_csv} says .csv") in flat(err)
    code, out, err = run("report", "dinh-dang", "--format", "csv", "--out",
                         str(tmp_path / "r.xlsx"), db=url)
    assert code == 2 and "--format csv writes a .csv file" in flat(err)
    code, out, err = run("report", "dinh-dang", "--format", "xlsx", "--out",
                         str(tmp_path / "r.xlsx"), db=url)
    assert code == 0 and (tmp_path / "r.xlsx").exists()
    code, out, err = run("report", "dinh-dang", "--format", "json", "--out",
                         str(tmp_path / "r.json"), db=url)
    assert code == 0


def test_optout_import_keeps_the_reason_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    lst = tmp_path / "tu-choi.csv"
    lst.write_text("Số điện thoại,Lý do,Ghi chú\n"
                   "0905550001,Không muốn nhận tin,gọi 1022\n"
                   "0905550002,,thư tay\n"
                   "0905550003 / 0905550004,Đã chuyển vùng,\n", encoding="utf-8")
    code, out, err = run("optout", "import", str(lst), "--reason", "citizen-request", db=url)
    assert code == 0, err
    assert "3 rows read; 4 numbers: 4 added to the suppression list" in flat(out)
    with Database(url).engine.connect() as conn:
        reasons = dict(conn.execute(select(Suppression.e164, Suppression.reason)).all())
    assert reasons == {"+84905550001": "Không muốn nhận tin", "+84905550002": "citizen-request",
                       "+84905550003": "Đã chuyển vùng", "+84905550004": "Đã chuyển vùng"}
    code, out, err = run("optout", "list", db=url, wide=True)
    assert "Không muốn nhận tin" in out and "Đã chuyển vùng" in out


def test_an_empty_database_file_is_said_not_passed_over(tmp_path) -> None:
    """A 0-byte database file (a failed copy) gets a warning, not the silent new ledger."""
    from click.testing import CliRunner

    from outreach.cli import main

    path = tmp_path / "outreach.db"
    path.write_bytes(b"")
    r = CliRunner().invoke(main, ["--database-url", f"sqlite:///{path}", "runs", "list"])
    assert r.exit_code == 0
    assert (f"the database file {path} was empty (0 bytes)" in " ".join(r.stderr.split())
            and "restore it from a backup" in " ".join(r.stderr.split()))

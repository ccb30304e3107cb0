"""`outreach optout import`: every readable number suppressed, the rest named, counts printed."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from outreach.cli import main
from outreach.ledger.db import Database
from outreach.ledger.models import Suppression


def flat(text: str) -> str:
    return " ".join(text.split())


def test_optout_import_reports_rows_numbers_and_unreadable_lines(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'o.db'}"
    Database(db_url).upgrade()
    lst = tmp_path / "tu-choi.csv"
    lst.write_text("Số điện thoại,Ghi chú\n"
                   "0905550001,gọi tổng đài\n"          # 2: new
                   "+84 90 555 0001,trùng\n"            # 3: the same number again
                   "01235550002,số cũ 11 số\n"          # 4: old prefix, converted to 083...
                   "abc,không đọc được\n"                # 5: unreadable
                   "0905550003 / 0905550004,hai số\n"   # 6: two numbers in one cell
                   ",trống\n", encoding="utf-8")         # 7: no number
    runner = CliRunner()
    first = runner.invoke(main, ["--database-url", db_url, "optout", "import", str(lst),
                                 "--source", "hotline 111"])
    assert first.exit_code == 0, first.output
    out, err = flat(first.stdout), flat(first.stderr)  # rich wraps long lines
    assert (f"{lst}: 6 rows read; 4 numbers: 4 added to the suppression list, "
            "0 already on it; 2 unreadable") in out
    assert f"{lst}:5: skipped (not-a-number)" in err
    assert f"{lst}:7: skipped (empty)" in err
    with Database(db_url).engine.connect() as conn:
        rows = dict(conn.execute(select(Suppression.e164, Suppression.source)).all())
    assert rows == {n: "hotline 111" for n in
                    ("+84905550001", "+84835550002", "+84905550003", "+84905550004")}
    again = runner.invoke(main, ["--database-url", db_url, "optout", "import", str(lst), str(lst)])
    assert again.exit_code == 0, again.output
    out = flat(again.stdout)
    assert "4 numbers: 0 added to the suppression list, 4 already on it" in out
    assert "total: 12 rows read; 8 numbers: 0 added; 4 unreadable" in out

"""What an operator types and reads: dates as Vietnamese documents write them, a report that
cannot be written is refused (never silently not written), two decisions at once refused,
counts with separators, the audit log whole with --wide, first-seen file:line never cut."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from outreach.cli import main
from outreach.cli.report import parse_day, parse_when
from outreach.clock import VN_TZ

ROOT = Path(__file__).resolve().parent.parent
CID = "cantho-2024-pcmbn"


def test_dates_as_vietnamese_documents_write_them() -> None:
    assert parse_when("30/07/2024") == dt.datetime(2024, 7, 30, tzinfo=VN_TZ)
    assert parse_when("2/8/2024", end=True) == dt.datetime(2024, 8, 3, tzinfo=VN_TZ)
    assert parse_when("30/07/2024 08:15") == dt.datetime(2024, 7, 30, 8, 15, tzinfo=VN_TZ)
    assert parse_when("30/07/2024 08:15", end=True) == dt.datetime(2024, 7, 30, 8, 15,
                                                                    tzinfo=VN_TZ)
    assert parse_when("2024-07-30T08:00", end=True) == dt.datetime(2024, 7, 30, 8, tzinfo=VN_TZ)
    assert parse_when("2024-08-02", end=True) == dt.datetime(2024, 8, 3, tzinfo=VN_TZ)
    assert parse_day("02/08/2024", "--date") == "2024-08-02"
    assert parse_day("2024-08-02", "--date") == "2024-08-02"
    for bad in ("31/13/2024", "30/07/2024 08:00", "mai"):
        with pytest.raises(click.BadParameter, match="is not a date"):
            parse_day(bad, "--date")
    with pytest.raises(click.BadParameter, match="DD/MM/YYYY"):
        parse_when("30-07-2024")


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("op")
    url = f"sqlite:///{tmp / 'o.db'}"
    r = CliRunner().invoke(main, ["--lang", "en", "--database-url", url, "campaign", "launch",
                                  str(ROOT / "campaigns" / f"{CID}.toml"), "--yes",
                                  "--no-progress"], env={"OUTREACH_HOME": str(tmp)})
    assert r.exit_code == 0, r.output
    return url


def last_column(table: str) -> str:
    """The text of a console table's last column, its wrapped lines joined, without spaces."""
    cells = [line.split("│")[-2] for line in table.splitlines() if line.count("│") >= 2]
    return "".join(cells).replace(" ", "")


def run(url: str, *args: str, lang: str = "vi", columns: int = 100) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["--lang", lang, "--database-url", url, *args],
                           env={"COLUMNS": str(columns)})
    return r.exit_code, r.output


def test_report_period_and_refusals(launched: str, tmp_path: Path) -> None:
    code, out = run(launched, "report", CID, "--since", "01/07/2024", "--until", "30/09/2024")
    assert code == 0, out
    assert "thời gian: 00:00 ngày 01/07/2024 – 00:00 ngày 01/10/2024" in out
    target = tmp_path / "t.txt"
    code, out = run(launched, "report", CID, "--out", str(target))
    assert code == 2 and not target.exists()
    assert "bảng chỉ hiện trên màn hình: để ghi vào" in out and "--format csv, json hoặc xlsx" in out
    code, out = run(launched, "report", CID, "--official", "--out", str(tmp_path / "o.html"),
                    "--date", "31/13/2024")
    assert code == 2 and "'31/13/2024' không phải ngày (DD/MM/YYYY hoặc YYYY-MM-DD)" in out
    code, out = run(launched, "report", CID, "--official", "--out", str(tmp_path / "o.html"),
                    "--date", "02/08/2024")
    assert code == 0, out
    assert "ngày 02 tháng 8 năm 2024" in (tmp_path / "o.html").read_text(encoding="utf-8")


def test_two_decisions_on_unknown_deliveries_are_refused(launched: str) -> None:
    code, out = run(launched, "deliveries", "resolve", "1", "--skip", "--resend")
    assert code == 2 and "--resend và --skip là hai quyết định khác nhau: chỉ chọn một" in out
    code, out = run(launched, "deliveries", "resolve", "1", "--mark-sent", "--fallback",
                    lang="en")
    assert code == 2 and "--mark-sent and --fallback are two different decisions" in out


def test_privacy_check_counts_with_separators(launched: str) -> None:
    code, out = run(launched, "privacy", "check", columns=200)
    assert "2.098 có tên, 0 có mã người dùng Zalo" in out, out


def test_audit_list_wide_is_whole(launched: str) -> None:
    code, out = run(launched, "audit", "list", "--action", "import", columns=100)
    assert code == 0 and "…" in out  # the import's details, cut for the screen
    code, out = run(launched, "--wide", "audit", "list", "--action", "import")
    assert code == 0 and "…" not in out
    # every reason, and the last key of the import's details
    assert "trùnglặp(đãcótronglầnnhậpnày)72," in last_column(out)
    assert last_column(out).endswith("đơnvịhànhchínhkhôngnhậnra:2mục")
    code, out = run(launched, "audit", "list", "--action", "import", "--format", "json")
    assert json.loads(out)[0]["details"]["rows_read"] == 2239


def test_first_seen_file_line_is_never_cut(tmp_path: Path) -> None:
    src = ROOT / "recipients" / "cantho-2024" / "binh-thuy.csv"
    r = CliRunner().invoke(main, ["--lang", "vi", "--database-url",
                                  f"sqlite:///{tmp_path / 'i.db'}", "recipients", "import",
                                  str(src), "--list", "t"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    issues = r.output[r.output.index("Các dòng bị loại và trùng lặp"):]
    assert issues.count("đã gặp lần đầu") == 2  # the two duplicates' detail, folded, not cut
    assert "…" not in issues
    assert f"đãgặplầnđầutại{src}:".replace(" ", "") in last_column(issues)


def test_launch_with_a_reject_file_says_so_and_records_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    rejects = tmp_path / "rejects.csv"
    r = CliRunner().invoke(main, ["--lang", "vi", "--database-url", url, "campaign", "launch",
                                  str(ROOT / "campaigns" / f"{CID}.toml"), "--yes",
                                  "--no-progress", "--reject-file", str(rejects)],
                           env={"OUTREACH_HOME": str(tmp_path)})
    assert r.exit_code == 0, r.output
    assert f"đã ghi 163 dòng bị loại hoặc trùng lặp vào {rejects}" in r.output.replace("\n", "")
    assert "thêm --reject-file" not in r.output and "--reject-file FILE.csv" not in r.output
    assert len(rejects.read_text(encoding="utf-8-sig").splitlines()) == 1 + 163
    code, out = run(url, "audit", "list", "--action", "export", "--format", "json")
    entry = json.loads(out)[0]
    assert entry["campaign"] == CID and entry["details"]["what"] == "reject-file"
    assert entry["details"]["rows"] == 163

"""Files with personal data are 0600 in 0700 folders whatever the umask; a loose database warns."""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import safeio
from outreach.cli import main
from outreach.ledger.db import Database
from outreach.gateways.base import OutboundMessage
from outreach.gateways.outbox import OutboxGateway
from tests.helpers import write_campaign

CID = "test-campaign"


def mode(p: Path) -> str:
    return f"{stat.S_IMODE(os.stat(p).st_mode):04o}"


@pytest.fixture(params=[0o000, 0o022], ids=["umask000", "umask022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_every_personal_data_file_and_folder(umask: int, tmp_path: Path, home: Path) -> None:
    toml = write_campaign(tmp_path, n=4)
    run = CliRunner()
    r = run.invoke(main, ["campaign", "launch", str(toml)])  # default database in OUTREACH_HOME
    assert r.exit_code == 0, r.output
    db_file = home / "outreach.db"
    out = tmp_path / "out" / "sub"
    r = run.invoke(main, ["deliveries", "list", CID, "--export", str(out / "export.csv")])
    assert r.exit_code == 2 and not out.parent.exists()  # a missing folder is never created
    out.mkdir(parents=True)
    r = run.invoke(main, ["deliveries", "list", CID, "--export", str(out / "export.csv")])
    assert r.exit_code == 0, r.output
    r = run.invoke(main, ["recipients", "import", str(tmp_path / f"{CID}-list.csv"),
                          "--reject-file", str(out / "rejects.csv")])
    assert r.exit_code == 0, r.output
    for args in (["--format", "csv", "--out", str(out / "r.csv")],
                 ["--format", "xlsx", "--out", str(out / "r.xlsx")],
                 ["--official", "--out", str(out / "r.html")]):
        r = run.invoke(main, ["report", CID, *args])
        assert r.exit_code == 0, r.output
    files = [db_file, home / "outbox" / f"{CID}.jsonl", out / "export.csv", out / "rejects.csv",
             out / "r.csv", out / "r.xlsx", out / "r.html"]
    # each command closes the database when it ends (the last connection removes the WAL):
    # the sidecar files are looked at while a connection holds them
    db = Database(f"sqlite:///{db_file}")
    try:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM deliveries").scalar()
            files += [f for f in safeio.sqlite_files(db_file)[1:] if f.exists()]
            assert Path(str(db_file) + "-wal").exists() or Path(str(db_file) + "-shm").exists()
            assert {f.name: mode(f) for f in files} == {f.name: "0600" for f in files}
    finally:
        db.dispose()
    folders = [home, home / "outbox"]
    assert {str(d): mode(d) for d in folders} == {str(d): "0700" for d in folders}
    existing = tmp_path / "shared-folder"
    existing.mkdir()
    os.chmod(existing, 0o755)
    r = run.invoke(main, ["deliveries", "list", CID, "--export", str(existing / "e.csv")])
    assert r.exit_code == 0, r.output
    assert (mode(existing), mode(existing / "e.csv")) == ("0755", "0600")  # folder left alone


def test_outbox_tightens_an_existing_file(umask: int, tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    (box / "c.jsonl").write_text("")
    os.chmod(box / "c.jsonl", 0o644)
    gw = OutboxGateway(directory=box)
    gw.send(OutboundMessage(delivery_id=1, campaign_id="c", channel="sms", to="+84965550000",
                            body="x", sender="T", segments=1))
    gw.close()
    assert mode(box / "c.jsonl") == "0600"
    assert (box / "c.jsonl").read_text().count("\n") == 1


def test_a_database_readable_by_others_warns_once(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "shared.db"
    Database(f"sqlite:///{path}").dispose()
    assert mode(path) == "0600"
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="outreach.safeio"):
        Database(f"sqlite:///{path}").dispose()
        Database(f"sqlite:///{path}").dispose()
    warnings = [r.getMessage() for r in caplog.records if r.name == "outreach.safeio"]
    assert len(warnings) == 1
    assert "readable by others (shared.db 0644)" in warnings[0] and "chmod 600" in warnings[0]
    assert mode(path) == "0644"  # warned, not changed


def test_cli_prints_the_loose_database_warning(tmp_path: Path) -> None:
    path = tmp_path / "loose.db"
    Database(f"sqlite:///{path}").dispose()
    os.chmod(path, 0o664)
    r = subprocess.run([sys.executable, "-m", "outreach", "--database-url", f"sqlite:///{path}",
                        "runs", "list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("readable by others") == 1 and "loose.db 0664" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "outreach", "--lang", "vi", "--database-url",
                        f"sqlite:///{path}", "runs", "list"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "TZ": "America/Los_Angeles"})
    assert r.returncode == 0, r.stderr
    # in Vietnamese, stamped in Vietnam's time whatever the server's zone
    assert re.search(r"^\d\d:\d\d:\d\d ngày \d\d/\d\d/\d{4} CẢNH_BÁO outreach.safeio: cơ sở dữ "
                     r"liệu \S*loose.db chứa dữ liệu cá nhân nhưng người dùng khác đọc được "
                     r"\(loose.db 0664\); hãy chạy `chmod 600 ", r.stderr, re.M), r.stderr

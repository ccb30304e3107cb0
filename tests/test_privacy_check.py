"""`outreach privacy check`: what personal data is held, where, with what permissions, and what
the purge would remove."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from click.testing import CliRunner

from outreach.reporting import privacy
from outreach.cli import main
from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.gateways.zalo_tokens import TokenStore
from tests.helpers import write_campaign

CID = "test-campaign"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_check_lists_tables_files_permissions_and_the_purge(tmp_path: Path, home: Path) -> None:
    toml = write_campaign(tmp_path, n=6)
    assert run("campaign", "launch", str(toml))[0] == 0
    export = tmp_path / "exports" / "resend.csv"
    export.parent.mkdir()
    assert run("deliveries", "list", CID, "--export", str(export))[0] == 0
    rejects = tmp_path / "rej.csv"
    lst = tmp_path / f"{CID}-list.csv"
    assert run("recipients", "import", str(lst), "--list", CID, "--reject-file",
               str(rejects))[0] == 0
    os.chmod(rejects, 0o644)  # a colleague loosened it

    code, out, err = run("privacy", "check", "--older-than", "0", "--format", "json")
    assert code == 0, err
    res = json.loads(out)
    tables = {t["table"]: t for t in res["tables"]}
    assert (tables["recipients"]["rows"], tables["recipients"]["with_personal_data"]) == (6, 6)
    assert (tables["deliveries"]["rows"], tables["deliveries"]["with_personal_data"]) == (6, 6)
    assert tables["list_members"]["rows"] == 6 and tables["suppressions"]["rows"] == 0
    db_files = {Path(f["path"]).name: f["mode"] for f in res["database"]["files"]}
    assert db_files["outreach.db"] == "0600" and set(db_files.values()) == {"0600"}
    assert [(Path(f["path"]).name, f["mode"]) for f in res["outbox"]] == [
        (f"{CID}.jsonl", "0600")]
    folders = {f["kind"]: f["mode"] for f in res["folders"]}
    assert folders == {"database folder": "0700", "outbox folder": "0700"}
    files = {Path(f["path"]).name: f for f in res["files"]}
    assert files["resend.csv"]["kind"] == "deliveries" and files["resend.csv"]["rows"] == 6
    assert files["resend.csv"]["mode"] == "0600" and files["resend.csv"]["exists"]
    assert files["rej.csv"]["kind"] == "reject-file" and files["rej.csv"]["too_open"]
    assert files[lst.name]["kind"] == "recipient-list"
    purge = res["purge"]
    assert purge["dry_run"] and purge["campaigns"] == [CID]
    assert (purge["deliveries"], purge["recipients"], purge["list_memberships"]) == (6, 6, 6)
    assert any("rej.csv (reject-file) is readable by others (mode 0644)" in w
               for w in res["warnings"])
    assert "2 export or reject file(s) with personal data are still on disk" in " ".join(
        res["warnings"])

    export.unlink()
    code, text, _ = run("privacy", "check", "--older-than", "0")
    assert code == 0
    assert f"deliveries      {export}  (deleted)" in text
    assert "rej.csv  mode 0644" in text and "READABLE BY OTHERS" in text
    assert (f"purge --older-than 0 would remove: 1 campaign(s) ({CID}): 6 delivery numbers, 6 "
            "recipients' numbers and names, 6 list memberships") in text
    assert "+849655" not in text  # names the data, never shows a number
    code, text, _ = run("privacy", "check")
    assert "purge --older-than 90 would remove nothing" in text
    assert f"kept {CID}: last activity" in text


def test_check_after_a_purge_counts_no_personal_number(tmp_path: Path, home: Path,
                                                       monkeypatch) -> None:
    toml = write_campaign(tmp_path, n=4)
    assert run("campaign", "launch", str(toml))[0] == 0
    monkeypatch.setenv("OUTREACH_PURGE_KEY", "k" * 32)
    assert run("privacy", "purge", "--older-than", "0")[0] == 0
    res = privacy.check(Database(f"sqlite:///{home / 'outreach.db'}"), older_than_days=0)
    tables = {t["table"]: t for t in res["tables"]}
    assert (tables["recipients"]["rows"], tables["recipients"]["with_personal_data"]) == (4, 0)
    assert (tables["deliveries"]["rows"], tables["deliveries"]["with_personal_data"]) == (4, 0)
    assert (res["purge"]["deliveries"], res["purge"]["recipients"]) == (0, 0)  # nothing left


def test_check_reports_plaintext_tokens(tmp_path: Path, home: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    db = Database(url)
    db.upgrade()
    TokenStore(db, clock=FakeClock(dt.datetime(2024, 7, 30, tzinfo=dt.timezone.utc))).set_tokens("AT-x-123", "RT-x-456", 3600)
    res = privacy.check(db)
    tok = next(t for t in res["tables"] if t["table"] == "gateway_tokens")
    assert (tok["rows"], tok["with_personal_data"], tok["note"]) == (1, 0, "1 encrypted, 0 in plaintext")
    assert not any("plaintext" in w for w in res["warnings"])
    with db.engine.begin() as conn:
        conn.exec_driver_sql("update gateway_tokens set refresh_token = 'RT-plain'")
    res = privacy.check(db)
    assert "provider tokens stored in plaintext: run `outreach secrets rotate`" in res["warnings"]

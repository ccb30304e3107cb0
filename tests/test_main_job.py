"""The main job end to end through the CLI: plan 126/KH-UBND's message to Cần Thơ's lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from outreach.cli import main
from outreach.ledger.db import Database
from outreach.ledger.models import AuditEntry, Delivery, Import
from tests.conftest import CAMPAIGN_FILE, PLAN_TEXT, ROOT

EXPECTED = json.loads((ROOT / "recipients" / "cantho-2024" / "EXPECTED.json").read_text("utf-8"))
CID = "cantho-2024-pcmbn"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def outbox_lines(home: Path) -> list[dict]:
    path = home / "outbox" / f"{CID}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def db_for(home: Path) -> Database:
    return Database(f"sqlite:///{home / 'outreach.db'}")


@pytest.fixture
def launched(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(ROOT)
    code, out, err = run("campaign", "launch", CID, "--format", "json", "--no-progress")
    assert code == 0, err
    return json.loads(out)


def test_launch_sends_the_plan_text_once_to_every_unique_valid_mobile(home: Path,
                                                                     launched: dict) -> None:
    lines = outbox_lines(home)
    distinct = EXPECTED["distinct_valid_e164"]
    assert len(lines) == distinct == 2098
    assert len({line["to"] for line in lines}) == distinct
    expected_bytes = unicodedata.normalize("NFC", PLAN_TEXT).encode("utf-8")
    for line in lines:
        assert line["body"].encode("utf-8") == expected_bytes
        assert line["to"].startswith("+84") and len(line["to"]) == 12
        assert line["sender"] == "STTTTCanTho"
        assert line["segments"] == 4
    # the file itself holds NFC bytes, not escapes
    raw = (home / "outbox" / f"{CID}.jsonl").read_bytes()
    assert raw.count(expected_bytes) == distinct
    assert launched["result"] == {"sent": distinct}
    assert launched["window_note"] and "outbox" in launched["window_note"]


def test_every_row_is_accounted_for(launched: dict) -> None:
    imp = launched["import"]
    assert imp["rows_read"] == EXPECTED["total_rows"] == 2239
    assert imp["extra_numbers"] == EXPECTED["rows_two_valid_numbers"] == 22
    assert imp["imported"] == EXPECTED["distinct_valid_e164"]
    assert imp["duplicates"] == EXPECTED["duplicate_occurrences"] == 72
    assert imp["rejected"] == EXPECTED["bad_rows"] == 91
    sent = launched["result"]["sent"]
    opted_out = launched["opted_out"]
    # rows read (+ second numbers of shared cells) = sent + rejected + duplicates + opted out
    assert imp["rows_read"] + imp["extra_numbers"] == sent + imp["rejected"] + imp["duplicates"] + opted_out
    reasons = imp["by_reason"]
    bad = EXPECTED["bad_rows_by_kind"]
    assert reasons["landline"] == bad["landline"]
    assert reasons["scientific-notation"] == bad["scientific"]
    assert reasons["old-prefix"] == bad["old_11_digit"]
    assert reasons["empty"] == bad["empty"]
    assert reasons.get("too-short", 0) + reasons.get("too-long", 0) + reasons.get(
        "not-a-number", 0) + reasons.get("invalid", 0) == bad["too_short"] + bad["too_long"] + bad["text"]
    assert imp["by_carrier"] == EXPECTED["distinct_valid_e164_by_carrier"]


def test_rejected_rows_name_file_line_and_reason(home: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rejects = tmp_path / "rejects.csv"
    code, out, err = run("recipients", "import", *sorted(str(p) for p in (ROOT / "recipients" / "cantho-2024").glob("*.csv")),
                         "--list", "x", "--reject-file", str(rejects), "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    rows = rejects.read_text("utf-8-sig").splitlines()
    assert rows[0] == "kind,file,line,value_masked,reason,detail"
    assert len(rows) - 1 == data["rejected"] + data["duplicates"] == 91 + 72
    for issue in data["issues"]:
        assert issue["file"].endswith(".csv") and issue["line"] >= 2 and issue["reason"]
        digits = sum(ch.isdigit() for ch in issue["raw_masked"])
        assert digits <= 6 or "*" in issue["raw_masked"]  # never a whole number
    dup = [i for i in data["issues"] if i["kind"] == "duplicate"]
    assert all(i["detail"].startswith("first seen at ") for i in dup)


def test_relaunch_sends_nothing_new_and_says_so(home: Path, launched: dict) -> None:
    code, out, err = run("campaign", "launch", CID, "--no-progress")
    assert code == 0, err
    assert "Nothing new to send" in out
    assert len(outbox_lines(home)) == 2098
    code, out, _ = run("campaign", "launch", CID, "--format", "json", "--no-progress")
    data = json.loads(out)
    assert data["nothing_new"] is True and data["recipients"] == 0
    assert data["already_sent"] == 2098
    assert len(outbox_lines(home)) == 2098


def test_report_json_matches_outbox_and_database(home: Path, launched: dict) -> None:
    code, out, err = run("report", CID, "--format", "json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["campaign"] == CID
    assert rep["recipients"] == 2098
    assert rep["by_status"]["sent"] == 2098
    assert sum(rep["by_status"].values()) == 2098
    per_district = {d: sum(c.values()) for d, c in rep["by_district"].items()}
    assert sum(per_district.values()) == 2098
    db = db_for(home)
    with db.engine.connect() as conn:
        db_counts = dict(conn.execute(select(Delivery.district, func.count())
                                      .group_by(Delivery.district)).all())
        outbox_ids = {line["delivery_id"] for line in outbox_lines(home)}
        db_ids = set(conn.execute(select(Delivery.id).where(Delivery.status == "sent")).scalars())
        segs = set(conn.execute(select(Delivery.segments)).scalars())
    assert outbox_ids == db_ids
    assert per_district == {k: v for k, v in db_counts.items()}
    assert set(per_district) == {"Ninh Kiều", "Bình Thủy", "Cái Răng", "Ô Môn", "Thốt Nốt",
                                 "Phong Điền", "Cờ Đỏ", "Thới Lai", "Vĩnh Thạnh"}
    for d in per_district:
        assert unicodedata.is_normalized("NFC", d)
    assert segs == {4}  # the count the dry run predicted is the one stored
    code, out, _ = run("report", CID, "--format", "csv")
    lines = out.splitlines()
    assert lines[0].startswith("district,queued,sending,sent")
    assert lines[-1].startswith("TOTAL,0,0,2098")
    # a trial through the outbox: every ward read (three lists head it Xã/Thị trấn...),
    # nothing billed, and every report says nothing reached a phone
    assert all("(không rõ)" not in wards for wards in rep["by_ward"].values())
    assert rep["local_gateways"] == ["outbox"] and rep["cost_vnd"] == 0.0
    assert rep["segments"] == 4 * 2098
    code, out, _ = run("report", CID)
    assert "2,098 deliveries went to the outbox gateway" in " ".join(out.split())
    official = home / "ket-qua.html"
    code, _, err = run("report", CID, "--official", "--out", str(official))
    assert code == 0, err
    assert "BẢN CHẠY THỬ — KHÔNG DÙNG ĐỂ BÁO CÁO" in official.read_text(encoding="utf-8")


def test_dry_run_sends_and_writes_nothing_but_an_audit_entry(home: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run("campaign", "launch", CID, "--dry-run", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["encoding"] == "UCS-2" and d["segments"] == 4 and d["characters"] == 227
    assert "đ" in d["ucs2_characters"] and "ộ" not in d["ucs2_characters"]
    assert d["recipients"] == 2098
    assert d["total_segments"] == 4 * 2098
    carriers = EXPECTED["distinct_valid_e164_by_carrier"]
    cheap = carriers["Vietnamobile"] + carriers["Gmobile"] + carriers["iTel"]
    assert d["estimated_cost_vnd"] == 4 * (800 * (2098 - cheap) + 750 * cheap)
    assert d["sample"] == PLAN_TEXT
    assert not outbox_lines(home)
    db = db_for(home)
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(Import)).scalar_one() == 0
        actions = list(conn.execute(select(AuditEntry.action, AuditEntry.text_sha256)))
    assert actions == [("dry-run", "3f1ad8e529e297499cb7cadb031244e2f8697386f2100868261d727bb7d709e2")]
    code2, out2, _ = run("campaign", "check", str(CAMPAIGN_FILE), "--format", "json")
    assert code2 == 0 and json.loads(out2)["recipients"] == 2098


def test_opted_out_number_is_not_sent(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    # a number that is on the Ninh Kiều list
    first = next(line for line in (ROOT / "recipients" / "cantho-2024" / "ninh-kieu.csv")
                 .read_text("utf-8-sig").splitlines()[1:] if "555" in line)
    from outreach.input import phones

    e164 = next(r.e164 for cell in first.split(",") for r in [phones.normalise(cell)] if r.ok)
    code, out, err = run("optout", "add", e164, "--source", "hotline 111")
    assert code == 0, err
    code, out, err = run("campaign", "launch", CID, "--format", "json", "--no-progress")
    data = json.loads(out)
    assert data["opted_out"] == 1 and data["result"] == {"sent": 2097, "opted_out": 1}
    assert e164 not in {line["to"] for line in outbox_lines(home)}


def test_launch_through_a_phone_gateway_outside_the_window_is_refused(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run("campaign", "launch", CID, "--gateway", "mock", "--no-progress")
    assert code == 1
    assert "send window is closed" in err and "campaign ended on 2024-09-30" in err
    assert "--override-window" in err
    assert "Traceback" not in err
    db = db_for(home)
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)).scalar_one() == 0


@pytest.mark.parametrize("edit, field", [
    (("end_date = 2024-09-30", "end_date = 2024-06-30"), "window.end_date"),
    (('sender = "STTTTCanTho"', 'sender = "Sở TTTT Cần Thơ"'), "channels[0].sender"),
    (("Tổng đài quốc gia 111", "Tổng đài quốc gia 113"), "message.sha256"),
    (('mode = "once"', 'mode = "weekly"'), "schedule.mode"),
    (('daily_start = "07:00"', 'daily_start = "7h"'), "window.daily_start"),
    (("[source]", "colour = 1\n[source]"), "colour"),
])
def test_campaign_file_errors_name_file_and_field(tmp_path: Path, edit: tuple[str, str],
                                                  field: str) -> None:
    text = CAMPAIGN_FILE.read_text("utf-8")
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    code, out, err = run("campaign", "check", str(bad))
    assert code == 1
    assert f"{bad}: field '{field}'" in err.replace("\n", "")
    assert "Traceback" not in err


def test_campaign_file_loads_with_the_plan_facts() -> None:
    from outreach.input import campaigns

    spec = campaigns.load(CAMPAIGN_FILE)
    assert spec.text == PLAN_TEXT and len(spec.text) == 227
    assert spec.source.document == "126/KH-UBND" and spec.source.section == "II.6.b"
    assert spec.source.date.isoformat() == "2024-06-25"
    assert spec.window.start_date.isoformat() == "2024-07-01"
    assert spec.window.end_date.isoformat() == "2024-09-30"
    assert [d.isoformat() for d in spec.window.key_dates] == ["2024-07-30"]
    assert spec.window.timezone == "Asia/Ho_Chi_Minh"
    assert spec.theme.startswith("Không trẻ em nào bị bỏ lại phía sau")
    assert len(spec.list_files()) == 9


def test_plan_text_is_the_one_in_the_plan() -> None:
    plan = ROOT.parent / "shared" / "plan" / "ke-hoach-126-KH-UBND-2024-can-tho.txt"
    if not plan.exists():
        pytest.skip("the shared plan text is not beside this checkout")
    assert f"với nội dung tin nhắn: “{PLAN_TEXT}”." in unicodedata.normalize("NFC", plan.read_text("utf-8"))


def test_console_script_runs_the_readme_command(tmp_path: Path) -> None:
    """The README's main command, as a real process with the installed console script."""
    env = dict(os.environ, OUTREACH_HOME=str(tmp_path / "h"))
    exe = Path(sys.executable).parent / "outreach"
    r = subprocess.run([str(exe), "campaign", "launch", CID, "--no-progress"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "run #1: sent 2,098" in r.stdout
    lines = (tmp_path / "h" / "outbox" / f"{CID}.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 2098


def test_launch_writes_the_reject_file(home: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rejects = tmp_path / "launch-rejects.csv"
    code, out, err = run("campaign", "launch", CID, "--no-progress", "--reject-file", str(rejects))
    assert code == 0, err
    rows = rejects.read_text("utf-8-sig").splitlines()[1:]
    assert len(rows) == 91 + 72
    kinds = Counter(r.split(",")[0] for r in rows)
    assert kinds == {"rejected": 91, "duplicate": 72}
    assert "sending" not in err  # no progress bar when asked for none


@pytest.mark.parametrize("edit, field", [
    (("unaccented = false", "unacented = true"), "message.unacented"),
    (("rate_per_second = 10", "rate_per_second = 0"), "channels[0].rate_per_second"),
    (("concurrency = 8", "concurrency = 8\nsenderid = \"X\""), "channels[0].senderid"),
    (('"phong-dien.csv" = "Phong Điền"', '"phong-dienn.csv" = "Phong Điền"'),
     'recipients.district_by_file."phong-dienn.csv"'),
])
def test_mistyped_keys_and_values_inside_tables_are_refused(tmp_path: Path, edit: tuple[str, str],
                                                            field: str) -> None:
    import shutil

    text = CAMPAIGN_FILE.read_text("utf-8")
    assert edit[0] in text
    (tmp_path / "recipients").mkdir()
    shutil.copytree(ROOT / "recipients" / "cantho-2024", tmp_path / "recipients" / "cantho-2024")
    (tmp_path / "campaigns").mkdir()
    bad = tmp_path / "campaigns" / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    code, out, err = run("campaign", "check", str(bad))
    assert code == 1, out
    assert f"field '{field}'" in err.replace("\n", "")


def test_a_mistyped_database_folder_is_refused_not_created(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path / 'typo' / 'sub' / 'outreach.db'}"
    code, out, err = run("--database-url", url, "campaign", "launch", CID, "--no-progress")
    assert code == 1
    assert "does not exist" in err and not (tmp_path / "typo").exists()


def test_resume_by_id_works_from_another_folder(home: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, _, err = run("campaign", "launch", CID, "--no-progress")
    assert code == 0, err
    monkeypatch.chdir(tmp_path)
    code, out, err = run("campaign", "resend", CID, "--no-progress")
    assert code == 0, err
    assert "nobody to resend to" in out


def test_dry_run_unaccented_is_gsm7_in_two_segments(tmp_path: Path) -> None:
    import shutil

    (tmp_path / "recipients").mkdir()
    shutil.copytree(ROOT / "recipients" / "cantho-2024", tmp_path / "recipients" / "cantho-2024")
    (tmp_path / "campaigns").mkdir()
    f = tmp_path / "campaigns" / "unaccented.toml"
    f.write_text(CAMPAIGN_FILE.read_text("utf-8").replace("unaccented = false", "unaccented = true", 1),
                 encoding="utf-8")
    code, out, err = run("campaign", "launch", str(f), "--dry-run", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert (d["encoding"], d["segments"], d["ucs2_characters"]) == ("GSM-7", 2, [])
    assert d["total_segments"] == 2 * 2098
    assert d["sample"].startswith("Toan dan tich cuc tham gia phong, chong mua ban nguoi.")
    assert "đ" not in d["sample"] and "Tong dai quoc gia 111 de duoc tu van" in d["sample"]


def test_a_launch_in_table_form_says_where_the_outbox_is(home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run("campaign", "launch", CID, "--no-progress")
    assert code == 0, err
    flat = " ".join(out.split())
    assert "run #1: sent 2,098" in flat
    said = f"outbox (a local file, nothing reached a phone): {home / 'outbox' / CID}.jsonl"
    assert "".join(said.split()) in "".join(out.split())  # rich wraps the long path anywhere
    assert len(outbox_lines(home)) == 2098

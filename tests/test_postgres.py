"""The main job on PostgreSQL: launch → report through the CLI, and launch → workers → report."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from tests.helpers import english_words
from outreach.cli import main
from outreach.ledger.db import Database
from outreach.ledger.models import Delivery, Run
from tests.conftest import ROOT
from tests.pg import pg_db, pg_url  # noqa: F401

pytestmark = pytest.mark.postgres

EXPECTED = json.loads((ROOT / "recipients" / "cantho-2024" / "EXPECTED.json").read_text("utf-8"))
CID = "cantho-2024-pcmbn"
DISTRICTS = {f["district"] for f in EXPECTED["files"].values()}


def cli(url: str, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def outbox(home: Path) -> list[dict]:
    path = home / "outbox" / f"{CID}.jsonl"
    return [json.loads(x) for x in path.read_text("utf-8").splitlines()] if path.exists() else []


def check_report(url: str, db: Database, home: Path) -> None:
    """The JSON report agrees with EXPECTED.json, the database and the outbox."""
    distinct = EXPECTED["distinct_valid_e164"]
    code, out, err = cli(url, "report", CID, "--format", "json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["recipients"] == rep["sent"] == distinct == 2098
    assert rep["by_status"]["sent"] == sum(rep["by_status"].values()) == distinct
    per_district = {d: sum(c.values()) for d, c in rep["by_district"].items()}
    assert set(per_district) == DISTRICTS
    assert all(unicodedata.is_normalized("NFC", d) for d in per_district)
    lines = outbox(home)
    with db.engine.connect() as conn:
        db_counts = dict(conn.execute(select(Delivery.district, func.count())
                                      .group_by(Delivery.district)).all())
        sent_ids = set(conn.execute(select(Delivery.id).where(Delivery.status == "sent")).scalars())
    assert per_district == db_counts
    assert {x["delivery_id"] for x in lines} == sent_ids and len(lines) == distinct
    assert len({x["to"] for x in lines}) == distinct
    assert rep["segments"] == 4 * distinct


def test_launch_then_report_on_postgres(pg_db: Database, pg_url: str, home: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = cli(pg_url, "campaign", "launch", CID, "--format", "json", "--no-progress")
    assert code == 0, err
    launched = json.loads(out)
    assert launched["result"] == {"sent": 2098}
    assert launched["import"]["imported"] == 2098
    check_report(pg_url, pg_db, home)
    # the second launch of a once-per-campaign send finds nobody new
    code, out, err = cli(pg_url, "campaign", "launch", CID, "--format", "json", "--no-progress")
    assert code == 0, err
    assert json.loads(out)["nothing_new"] is True
    assert len(outbox(home)) == 2098


def test_launch_enqueue_only_then_a_worker_sends_it_on_postgres(
        pg_db: Database, pg_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = cli(pg_url, "campaign", "launch", CID, "--enqueue-only", "--format", "json")
    assert code == 0, err
    launched = json.loads(out)
    assert "result" not in launched and launched["recipients"] == 2098
    assert outbox(home) == []
    with pg_db.engine.connect() as conn:
        assert conn.execute(select(Run.id, Run.status)).one() == (launched["run_id"], "created")
    code, _out, err = cli(pg_url, "worker", "--campaign", CID, "--exit-when-done", "--idle", "0.1")
    assert code == 0, err
    assert f"run #{launched['run_id']}: completed" in err and "sent 2,098" in err
    # a second worker in Vietnamese: nothing left, said so in Vietnamese
    r = CliRunner().invoke(main, ["--lang", "vi", "--database-url", pg_url, "worker",
                                  "--campaign", CID, "--exit-when-done", "--idle", "0.1"])
    assert r.exit_code == 0, r.stderr
    assert "không có gì trong" in r.stderr and "tin/giây" in r.stderr
    assert "không còn đợt gửi nào cần gửi" in r.stderr
    assert english_words(r.stderr) == [], r.stderr
    check_report(pg_url, pg_db, home)
    with pg_db.engine.connect() as conn:
        status, started, finished = conn.execute(select(Run.status, Run.started_at,
                                                        Run.finished_at)).one()
    assert status == "completed" and started <= finished


def test_enqueue_only_refuses_override_window(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    r = CliRunner().invoke(main, ["--database-url", pg_url, "campaign", "launch", CID,
                                  "--enqueue-only", "--override-window"])
    assert r.exit_code == 2 and "workers always keep the campaign's send window" in r.output


def test_import_on_postgres_stores_what_sqlite_stores(pg_db: Database, tmp_path: Path) -> None:
    """The PostgreSQL import (COPY into a staging table, then INSERT … SELECT) writes the same
    recipients, units and list memberships as the SQLite one, for the shipped lists imported
    twice into two lists (the second time every number exists already)."""
    import datetime as _dt

    from sqlalchemy import select

    from outreach.input import recipients
    from outreach.ledger.models import ListMember, Recipient
    from tests.helpers import fresh_db

    lists = sorted((Path(__file__).resolve().parent.parent / "recipients" / "cantho-2024")
                   .glob("*.csv"))
    assert len(lists) == 9
    now = _dt.datetime(2024, 7, 1, 1, 0, tzinfo=_dt.timezone.utc)
    lite = fresh_db(tmp_path)
    cols = (Recipient.e164, Recipient.carrier, Recipient.name, Recipient.district,
            Recipient.ward, Recipient.zalo_user_id, Recipient.source_line, Recipient.province,
            Recipient.district_code, Recipient.ward_code, Recipient.new_province,
            Recipient.new_ward, Recipient.new_ward_code)
    # a list of known and new numbers in one batch: the new ones get their memberships from
    # the INSERT, the known ones by lookup
    mixed = tmp_path / "mixed.csv"
    known = [line.split(";")[2] for line in
             lists[0].read_text(encoding="utf-8-sig").splitlines()[1:4]]
    mixed.write_text("stt;ho ten;SĐT;xa phuong;huyen\n" + "".join(
        f"{i};Người {i};{num};Long Hòa;Bình Thủy\n"
        for i, num in enumerate([known[0], "0912345001", known[1], "0912345002", known[2]], 1)),
        encoding="utf-8")
    got = {}
    for name, db in (("sqlite", lite), ("postgresql", pg_db)):
        first = recipients.import_files(db, lists, list_name="a", now=now)
        again = recipients.import_files(db, lists[:3], list_name="b", now=now)
        both = recipients.import_files(db, [mixed], list_name="c", now=now)
        assert (both.imported, both.new_recipients) == (5, 2), name
        with db.engine.connect() as conn:
            rows = sorted(tuple(r) for r in conn.execute(select(*cols)).all())
            members = sorted(tuple(r) for r in conn.execute(
                select(ListMember.list_name, Recipient.e164)
                .join(Recipient, Recipient.id == ListMember.recipient_id)).all())
        got[name] = (first.imported, first.rejected, first.duplicates, again.imported,
                     again.new_recipients, rows, members)
    lite.dispose()
    imported, rejected, duplicates, again_imported, again_new, rows, members = got["postgresql"]
    assert imported == 2098 and again_new == 0 and again_imported > 0
    assert len(rows) == 2098 + 2 and len(members) == 2098 + again_imported + 5
    assert sum(1 for list_name, _ in members if list_name == "c") == 5
    assert any(r[9] for r in rows)  # ward codes resolved
    assert got["postgresql"] == got["sqlite"]


def test_a_claim_reads_the_head_of_the_queue_even_when_the_statistics_say_all_is_queued(
        pg_db: Database, tmp_path: Path) -> None:  # noqa: F811
    """Right after an enqueue the planner's statistics say every row of the run is queued; as
    the run goes on, a claim read from the queue's start walked the primary key past every
    row already sent (each claim dearer than the last: four workers at a third of their speed
    on a million rows). An engine's claims read the queue from where its last one ended: the
    next claim's statement, explained as it is run, reads the rows other workers took since
    and its window, never the thousands sent before."""
    import datetime as dt

    from sqlalchemy import event, text

    from outreach.gateways.mock import MockGateway
    from outreach.sending import engine as engine_mod
    from tests.pg import seed_run

    spec, run_id = seed_run(pg_db, tmp_path, 6000)
    with pg_db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE deliveries"))  # every row queued, as after an enqueue

    def others_send(n: int) -> None:  # other workers: the next n queued rows sent
        with pg_db.engine.begin() as conn:
            conn.execute(text("UPDATE deliveries SET status = 'sent' WHERE id IN (SELECT id "
                              "FROM deliveries WHERE status = 'queued' ORDER BY id LIMIT :n)"),
                         {"n": n})

    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("UPDATE deliveries SET status = 'sending'"):
            seen.append((statement, params))

    others_send(5000)
    eng = engine_mod.RunEngine(pg_db, spec, run_id, {"sms": MockGateway()},
                               settings=engine_mod.SendSettings(batch_size=100))
    event.listen(pg_db.engine, "before_cursor_execute", capture)
    try:
        first = eng.claim()
        others_send(300)
        second = eng.claim()
    finally:
        event.remove(pg_db.engine, "before_cursor_execute", capture)
        eng.close()
    assert [len(first), len(second)] == [100, 100]
    assert min(r["id"] for r in second) > max(r["id"] for r in first) + 300 - 1
    claims = seen
    assert len(claims) == 2

    def rows_read(statement: str, params: object) -> int:
        with pg_db.engine.begin() as conn:
            with conn.connection.driver_connection.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                plan = cur.fetchone()[0][0]["Plan"]
            conn.rollback()

        def walk(node: dict) -> int:  # rows a scan read and threw away
            own = int(node.get("Rows Removed by Filter", 0)) * int(node.get("Actual Loops", 1))
            return own + sum(walk(c) for c in node.get("Plans", []))
        return walk(plan)

    # explained after it ran: the 300 the others took and the 100 it took itself, never the
    # 5,100 sent before them (read from the queue's start it threw away 5,400)
    assert rows_read(*claims[1]) <= 400

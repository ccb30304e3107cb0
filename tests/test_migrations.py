"""Migrations and models agree, on SQLite and PostgreSQL; upgrading is idempotent and race-free."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect

from outreach.ledger import migrate
from outreach.cli import main
from outreach.ledger.db import Database
from outreach.ledger.models import Base, Delivery
from tests.pg import pg_empty_url  # noqa: F401

HEAD = migrate.head()


def diffs(db: Database) -> list[object]:
    """What autogenerate would still write: models vs the migrated schema (types included)."""
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "compare_type": True, "compare_server_default": True,
            "include_object": migrate.include_object(conn.dialect.name)})
        return list(compare_metadata(ctx, Base.metadata))


def tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def partial_predicates(db: Database) -> dict[str, str | None]:
    """Index name -> the WHERE clause of each index on deliveries, as the server stores it
    (None for a full index). Autogenerate does not compare predicates, so this does."""
    with db.engine.connect() as conn:
        if db.is_sqlite:
            rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                        "AND tbl_name = 'deliveries' AND sql IS NOT NULL").all()
        else:
            rows = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes "
                                        "WHERE tablename = 'deliveries'").all()
    return {name: (sql.split(" WHERE ", 1)[1] if " WHERE " in sql else None) for name, sql in rows}


def expected_predicates(dialect: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for ix in Delivery.__table__.indexes:
        where = ix.dialect_options[dialect]["where"]
        out[str(ix.name)] = None if where is None else str(where)
    return out


def check_predicates(db: Database) -> None:
    found = partial_predicates(db)
    for name, where in expected_predicates(db.engine.dialect.name).items():
        assert name in found, name
        if where is None:
            assert found[name] is None, name
        elif db.is_sqlite:
            assert found[name] == where, name  # stored as written
        else:
            # PostgreSQL stores its own rendering: "((status)::text <> 'queued'::text)"
            assert found[name] is not None, name
            for literal in re.findall(r"'([a-z_]+)'", where):
                assert f"'{literal}'" in found[name], (name, found[name])
    assert found["ix_deliveries_report"] is not None
    assert "ix_deliveries_campaign_status_recipient" not in found  # replaced in 0003


def check_fresh_database(url: str) -> None:
    db = Database(url)
    try:
        assert migrate.current(db.engine) is None
        db.upgrade()
        assert migrate.current(db.engine) == HEAD
        assert diffs(db) == []
        check_predicates(db)
        assert tables(db) == set(Base.metadata.tables) | {"alembic_version"}
        before = tables(db)
        db.upgrade()  # nothing left to do: same revision, same tables, still no diff
        assert migrate.current(db.engine) == HEAD
        assert tables(db) == before and diffs(db) == []
    finally:
        db.dispose()


def test_head_is_a_single_revision() -> None:
    assert HEAD is not None
    from alembic.script import ScriptDirectory

    assert len(ScriptDirectory.from_config(migrate.alembic_config()).get_heads()) == 1


def test_a_new_sqlite_database_is_created_by_the_migrations_and_matches_the_models(
        tmp_path: Path) -> None:
    check_fresh_database(f"sqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.postgres
def test_a_new_postgresql_schema_is_created_by_the_migrations_and_matches_the_models(
        pg_empty_url: str) -> None:
    check_fresh_database(pg_empty_url)


@pytest.mark.postgres
def test_workers_starting_together_on_a_new_database_migrate_it_once(pg_empty_url: str) -> None:
    errors: list[BaseException] = []

    def upgrade() -> None:
        db = Database(pg_empty_url)
        try:
            db.upgrade()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = Database(pg_empty_url)
    assert migrate.current(db.engine) == HEAD and diffs(db) == []
    db.dispose()


@pytest.mark.postgres
def test_db_current_and_upgrade_commands_on_postgresql(pg_empty_url: str) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["--database-url", pg_empty_url, "db", "current"])
    assert r.exit_code == 0, r.output
    assert "current: (empty)" in r.stdout and f"newest:  {HEAD}" in r.stdout
    r = runner.invoke(main, ["--database-url", pg_empty_url, "db", "upgrade"])
    assert r.exit_code == 0, r.output
    assert f"is at revision {HEAD}" in r.stdout
    assert "postgresql+psycopg://" in r.stdout
    r = runner.invoke(main, ["--database-url", pg_empty_url, "db", "current"])
    assert f"current: {HEAD}" in r.stdout


def test_db_commands_on_an_unreachable_server_print_one_line_and_no_traceback() -> None:
    r = CliRunner().invoke(main, ["--database-url", "postgresql+psycopg://postgres@127.0.0.1:1/x",
                                  "db", "upgrade"])
    assert r.exit_code == 1
    assert r.stderr.startswith("error: database postgresql+psycopg://postgres@127.0.0.1:1/x: "
                               "the database server does not answer") and "Traceback" not in r.output


def _seed_ledger(db: Database) -> None:
    """One campaign, run, recipient, delivery and its two events, written as Core inserts."""
    import datetime as dt

    from sqlalchemy import insert

    from outreach.ledger.models import Campaign, DeliveryEvent, Recipient, Run

    now = dt.datetime(2024, 7, 29, 1, 0, tzinfo=dt.timezone.utc)
    with db.engine.begin() as conn:
        for cid in ("plan-126", "other"):
            conn.execute(insert(Campaign).values(
                id=cid, name=cid, source_ref="126/KH-UBND", text="x", text_sha256="0" * 64,
                definition={}, status="active", created_at=now, updated_at=now))
        conn.execute(insert(Run).values(
            id=1, campaign_id="plan-126", run_key="launch:1", kind="launch", run_date=now.date(),
            status="completed", gateway="outbox", text_sha256="0" * 64, due_at=now,
            created_at=now, options={}))
        conn.execute(insert(Recipient).values(id=1, e164="+84901234567", created_at=now))
        conn.execute(insert(Delivery).values(
            id=1, campaign_id="plan-126", run_id=1, recipient_id=1, dedupe_key="once",
            channel="sms", gateway="outbox", address="+84901234567", status="sent",
            attempts=1, queued_at=now, updated_at=now))
        for old, new in (("queued", "sending"), ("sending", "sent")):
            conn.execute(insert(DeliveryEvent).values(
                delivery_id=1, at=now, source="dispatcher", old_status=old, new_status=new,
                applied=True))


def check_events_migration(url: str) -> None:
    """0013 -> 0014 on a ledger with history: every event kept with its index, the foreign
    key gone, the schema as the models say; ``db check`` then reports what the key used to
    refuse (an event without its delivery) and a delivery filed under another campaign."""
    from sqlalchemy import text

    db = Database(url)
    try:
        migrate.upgrade(db.engine, "0013")
        _seed_ledger(db)
        assert [fk["referred_table"] for fk in inspect(db.engine).get_foreign_keys(
            "delivery_events")] == ["deliveries"]
        db.upgrade()
        assert migrate.current(db.engine) == HEAD and diffs(db) == []
        insp = inspect(db.engine)
        assert insp.get_foreign_keys("delivery_events") == []
        assert "ix_delivery_events_delivery_id" in {ix["name"] for ix in
                                                     insp.get_indexes("delivery_events")}
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT delivery_id, old_status, new_status FROM "
                                     "delivery_events ORDER BY id")).all() == [
                (1, "queued", "sending"), (1, "sending", "sent")]
        runner = CliRunner()
        r = runner.invoke(main, ["--lang", "en", "--database-url", url, "db", "check"])
        assert r.exit_code == 0, r.output
        assert "the ledger is consistent" in r.stdout
        if not db.is_sqlite:
            # PostgreSQL refuses the move itself (migration 0015): a ledger edited by hand
            # with the triggers off is what db check is for
            from sqlalchemy.exc import IntegrityError

            with pytest.raises(IntegrityError, match="deliveries.campaign_id never changes"):
                with db.engine.begin() as conn:
                    conn.execute(text("UPDATE deliveries SET campaign_id = 'other'"))
        with db.engine.begin() as conn:
            if not db.is_sqlite:
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text("INSERT INTO delivery_events (delivery_id, at, source, "
                              "new_status, applied) VALUES (999, '2024-07-29 01:00:00', "
                              "'operator', 'sent', true)"))
            conn.execute(text("UPDATE deliveries SET campaign_id = 'other'"))
        r = runner.invoke(main, ["--lang", "en", "--database-url", url, "db", "check"])
        assert r.exit_code == 1, r.output
        assert "history events whose delivery does not exist: 1" in r.stdout
        assert "deliveries filed under another campaign than their run's: 1" in r.stdout
        r = runner.invoke(main, ["--lang", "vi", "--database-url", url, "db", "check"])
        assert r.exit_code == 1 and "sự kiện lịch sử của tin nhắn không tồn tại: 1" in r.stdout
    finally:
        db.dispose()


def test_the_history_loses_its_foreign_key_and_keeps_every_event_on_sqlite(
        tmp_path: Path) -> None:
    check_events_migration(f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.mark.postgres
def test_the_history_loses_its_foreign_key_and_keeps_every_event_on_postgresql(
        pg_empty_url: str) -> None:
    check_events_migration(pg_empty_url)

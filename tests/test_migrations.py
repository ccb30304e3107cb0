"""Migrations and models agree, on SQLite and PostgreSQL; upgrading is idempotent and race-free."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect

from outreach import migrate
from outreach.cli import main
from outreach.db import Database
from outreach.models import Base
from tests.pg import pg_empty_url  # noqa: F401

HEAD = migrate.head()


def diffs(db: Database) -> list[object]:
    """What autogenerate would still write: models vs the migrated schema (types included)."""
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "compare_server_default": True})
        return list(compare_metadata(ctx, Base.metadata))


def tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def check_fresh_database(url: str) -> None:
    db = Database(url)
    try:
        assert migrate.current(db.engine) is None
        db.upgrade()
        assert migrate.current(db.engine) == HEAD
        assert diffs(db) == []
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
    assert r.stderr.startswith("error: database error:") and "Traceback" not in r.output

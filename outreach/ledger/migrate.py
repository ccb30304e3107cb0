"""Alembic from inside the package: ``outreach db upgrade`` and every new database use this."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


#: PostgreSQL advisory lock key held while migrating, so workers starting together on a new
#: database migrate it once (the others wait, then find it at head).
MIGRATION_LOCK_KEY = 0x6F757472  # "outr"


#: Foreign keys the models declare that PostgreSQL checks by statement-level triggers instead
#: (migration 0015: one check per statement, not one per row), name -> (child table, column,
#: parent table). Autogenerate leaves them alone; ``outreach db check`` counts rows breaking
#: them.
REFERENCES: dict[str, tuple[str, str, str]] = {
    "fk_deliveries_campaign_id_campaigns": ("deliveries", "campaign_id", "campaigns"),
    "fk_deliveries_run_id_runs": ("deliveries", "run_id", "runs"),
    "fk_deliveries_recipient_id_recipients": ("deliveries", "recipient_id", "recipients"),
    "fk_list_members_recipient_id_recipients": ("list_members", "recipient_id", "recipients"),
    "fk_list_members_import_id_imports": ("list_members", "import_id", "imports"),
}


def include_object(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` hook for a database of ``dialect``: every object but, on
    PostgreSQL, the models' foreign keys of :data:`REFERENCES` (they exist there as
    triggers, by design, so autogenerate must not add them back)."""

    def hook(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (dialect == "postgresql" and type_ == "foreign_key_constraint"
                    and name in REFERENCES)

    return hook


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()

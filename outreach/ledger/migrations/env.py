"""Alembic environment: runs on the connection handed in by outreach.ledger.migrate (SQLite batch mode)."""

from alembic import context

from outreach.ledger.migrate import include_object
from outreach.ledger.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from outreach.ledger.db import make_engine
        from outreach import config as oconfig

        engine = make_engine(oconfig.database_url())
        with engine.begin() as connection:
            _configure(connection)
        return
    _configure(connection)


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True,
                      include_object=include_object(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


run()

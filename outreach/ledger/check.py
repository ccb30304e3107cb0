"""Consistency of the delivery ledger beyond what the schema enforces (``outreach db check``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection


def ledger_problems(conn: Connection) -> dict[str, int]:
    """Counts of what should never be in the ledger; an empty dict when all is well.

    - ``events_without_delivery``: a ``delivery_events`` row whose delivery does not exist.
      The history has no foreign key (migration 0014: the key's check locked the delivery row
      once more for every event); the state functions write an event only for a row their own
      statement moved, and no delivery is ever deleted, so a count here means the database was
      edited by hand or restored in part.
    - ``deliveries_of_another_campaign``: a delivery whose ``campaign_id`` is not its run's.
    - ``foreign_keys``: rows breaking a declared foreign key. SQLite: ``PRAGMA
      foreign_key_check`` (https://sqlite.org/pragma.html#pragma_foreign_key_check), possible
      in a file written with ``foreign_keys`` off. PostgreSQL enforces its keys always; the
      references it checks by statement-level triggers instead (migration 0015,
      :data:`outreach.ledger.migrate.REFERENCES`) are counted here by one anti-join each,
      possible only if the triggers were bypassed (``session_replication_role = replica``,
      a restore of part of the tables).

    One pass over each table (an anti-join on the primary key): about a second per million
    events. Raises SQLAlchemyError when the database cannot be read.
    """
    out: dict[str, int] = {}
    orphans = conn.exec_driver_sql(
        "SELECT count(*) FROM delivery_events e WHERE NOT EXISTS "
        "(SELECT 1 FROM deliveries d WHERE d.id = e.delivery_id)").scalar_one()
    if orphans:
        out["events_without_delivery"] = int(orphans)
    mixed = conn.exec_driver_sql(
        "SELECT count(*) FROM deliveries d JOIN runs r ON r.id = d.run_id "
        "WHERE r.campaign_id <> d.campaign_id").scalar_one()
    if mixed:
        out["deliveries_of_another_campaign"] = int(mixed)
    if conn.dialect.name == "sqlite":
        broken: list[Any] = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            out["foreign_keys"] = len(broken)
    else:
        from outreach.ledger.migrate import REFERENCES

        n = sum(int(conn.exec_driver_sql(
            f"SELECT count(*) FROM {child} c WHERE c.{col} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {parent} p WHERE p.id = c.{col})").scalar_one())
            for child, col, parent in REFERENCES.values())
        if n:
            out["foreign_keys"] = n
    return out


__all__ = ["ledger_problems"]

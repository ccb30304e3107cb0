"""``outreach db upgrade|current|check`` and ``outreach audit list``."""

from __future__ import annotations

import json

import click
from rich.table import Table

from outreach import config, i18n
from outreach.cli import WIDE_COLUMNS, Ctx, console, pass_ctx
from outreach.i18n import _, ngettext, number


@click.group()
def db() -> None:
    """Schema migrations (Alembic)."""


@db.command("upgrade")
@pass_ctx
def upgrade(c: Ctx) -> None:
    """Bring the database schema to the newest version (creates a new database)."""
    from outreach.ledger import migrate

    database = c.db  # upgrades on first use
    console.print(_("{url} is at revision {rev}").format(url=config.redact_url(database.url),
                                                         rev=migrate.current(database.engine)))


@db.command("current")
@pass_ctx
def current(c: Ctx) -> None:
    """Show the schema revision of the database and the newest one this version knows."""
    from outreach.ledger import migrate
    from outreach.ledger.db import make_engine

    url = config.database_url(c.db_url)
    engine = make_engine(url)
    try:
        cur = migrate.current(engine)
    finally:
        engine.dispose()
    console.print(_("database: {url}\ncurrent: {current}\nnewest:  {newest}").format(
        url=config.redact_url(url), current=cur or _("(empty)"), newest=migrate.head()))


@db.command("check")
@pass_ctx
def check(c: Ctx) -> None:
    """Check the ledger for what the schema does not prevent: history events without their
    delivery, deliveries filed under another campaign than their run's, broken foreign keys.
    Exits 1 when anything is found."""
    from outreach.ledger.check import ledger_problems

    with c.db.engine.connect() as conn:
        problems = ledger_problems(conn)
    labels = {
        "events_without_delivery": _("history events whose delivery does not exist"),
        "deliveries_of_another_campaign": _("deliveries filed under another campaign than "
                                            "their run's"),
        "foreign_keys": _("rows breaking a foreign key"),
    }
    if not problems:
        console.print(_("{url}: the ledger is consistent").format(
            url=config.redact_url(c.db.url)))
        return
    for key, n in problems.items():
        console.print(f"{labels[key]}: {number(n)}", style="red")
    console.print(_("The database was edited by hand or restored in part: keep a copy of it "
                    "as it is and restore the last whole backup."))
    raise SystemExit(1)


@click.group()
def audit() -> None:
    """The audit log of operator actions."""


@audit.command("list")
@click.option("--campaign", "campaign_id", help="Only this campaign's entries.")
@click.option("--action", "actions", multiple=True,
              help="Only these actions (repeatable): import, launch, dry-run, pause, resume, "
                   "cancel, resend, optout-add, optout-import, optout-remove, resolve-unknown, "
                   "purge...")
@click.option("--operator", "who", help="Only entries by this operator.")
@click.option("--since", help="Entries from this date/time (Asia/Ho_Chi_Minh).")
@click.option("--until", help="Entries before this date/time; a bare date includes that day.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def audit_list(c: Ctx, campaign_id: str | None, actions: tuple[str, ...], who: str | None,
               since: str | None, until: str | None, limit: int, fmt: str) -> None:
    """Who did what and when, newest first, with the campaign text hash.

    Times are shown in Asia/Ho_Chi_Minh.
    """
    from sqlalchemy import select

    from outreach.cli.report import parse_when
    from outreach.clock import VN_TZ
    from outreach.ledger.models import AuditEntry

    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if campaign_id:
        stmt = stmt.where(AuditEntry.campaign_id == campaign_id)
    if actions:
        stmt = stmt.where(AuditEntry.action.in_(actions))
    if who:
        stmt = stmt.where(AuditEntry.operator == who)
    if since:
        stmt = stmt.where(AuditEntry.at >= parse_when(since))
    if until:
        stmt = stmt.where(AuditEntry.at < parse_when(until, end=True))
    with c.db.session() as s:
        rows = list(s.scalars(stmt))
        data = [{"id": r.id, "at": r.at.astimezone(VN_TZ).isoformat(timespec="seconds"),
                 "operator": r.operator, "action": r.action, "campaign": r.campaign_id,
                 "text_sha256": r.text_sha256, "details": r.details} for r in rows]
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    t = Table(title=ngettext("Audit log: {n} entry", "Audit log: {n} entries", len(data)).format(
        n=number(len(data))))
    for col in (_("at (Asia/Ho_Chi_Minh)"), _("operator"), _("action"), _("campaign"), _("text"),
                _("details")):
        t.add_column(col)
    from outreach.reporting.audit import action_label, describe

    for d, r in zip(data, rows):
        t.add_row(d["at"][:19] if i18n.current() == "en" else i18n.when(r.at),
                  d["operator"], action_label(d["action"]), d["campaign"] or "",
                  (d["text_sha256"] or "")[:12],
                  # --wide: everything (a table for a file); else a line the table can wrap
                  describe(d["details"], limit=None if console.width >= WIDE_COLUMNS else 240))
    console.print(t)

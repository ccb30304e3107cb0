"""The audit log of operator actions: who, when, what, with the campaign text hash."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, insert, select

from outreach import config
from outreach.i18n import N_, label
from outreach.ledger.models import AuditEntry

ACTIONS = ("import", "launch", "dry-run", "pause", "resume", "cancel", "resend", "optout-add",
           "optout-import", "optout-remove", "resolve-unknown", "schedule", "purge", "sync",
           "token", "scheduled-run", "export", "lookup", "user-add", "user-disable", "user-enable",
           "approval-request", "approve", "approval-setting", "approval-waived", "login",
           "logout", "view-numbers", "download", "carrier-letter", "carrier-status",
           "carrier-result")


#: What the console shows for each action (``audit|<action>``: translated in Vietnamese, the
#: code itself in English; the database and the JSON keep the code).
ACTION_LABELS = {
    "import": N_("audit|import"), "launch": N_("audit|launch"), "dry-run": N_("audit|dry-run"),
    "pause": N_("audit|pause"), "resume": N_("audit|resume"), "cancel": N_("audit|cancel"),
    "resend": N_("audit|resend"), "optout-add": N_("audit|optout-add"),
    "optout-import": N_("audit|optout-import"), "optout-remove": N_("audit|optout-remove"),
    "optout-reply": N_("audit|optout-reply"), "resolve-unknown": N_("audit|resolve-unknown"),
    "schedule": N_("audit|schedule"), "purge": N_("audit|purge"), "sync": N_("audit|sync"),
    "token": N_("audit|token"), "scheduled-run": N_("audit|scheduled-run"),
    "export": N_("audit|export"), "lookup": N_("audit|lookup"), "user-add": N_("audit|user-add"),
    "user-disable": N_("audit|user-disable"), "user-enable": N_("audit|user-enable"),
    "approval-request": N_("audit|approval-request"), "approve": N_("audit|approve"),
    "approval-setting": N_("audit|approval-setting"),
    "approval-waived": N_("audit|approval-waived"), "login": N_("audit|login"),
    "logout": N_("audit|logout"), "view-numbers": N_("audit|view-numbers"),
    "download": N_("audit|download"), "carrier-letter": N_("audit|carrier-letter"),
    "carrier-status": N_("audit|carrier-status"), "carrier-result": N_("audit|carrier-result"),
}


def action_label(action: str) -> str:
    """An audit action as the console shows it (:data:`ACTION_LABELS`); an action without a
    label is shown as stored."""
    key = ACTION_LABELS.get(action)
    return label(key) if key else action


def record(conn: Connection, action: str, *, operator: str | None = None,
           campaign_id: str | None = None, text_sha256: str | None = None,
           details: dict[str, Any] | None = None, now: dt.datetime | None = None) -> None:
    """Append one entry in the caller's transaction. ``operator`` defaults to the OS user;
    ``text_sha256`` defaults to the campaign's stored text hash when ``campaign_id`` is given
    (so pause and cancel, which do not load the campaign file, still record it)."""
    if campaign_id and text_sha256 is None:
        from outreach.ledger.models import Campaign

        text_sha256 = conn.execute(select(Campaign.text_sha256)
                                   .where(Campaign.id == campaign_id)).scalar()
    conn.execute(insert(AuditEntry).values(
        at=now or dt.datetime.now(dt.timezone.utc), operator=operator or config.default_operator(),
        action=action, campaign_id=campaign_id, text_sha256=text_sha256, details=details or {}))


def entries(conn: Connection, *, campaign_id: str | None = None, action: str | None = None,
            limit: int = 200) -> list[AuditEntry]:
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if campaign_id:
        stmt = stmt.where(AuditEntry.campaign_id == campaign_id)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    from sqlalchemy.orm import Session

    with Session(bind=conn) as s:
        return list(s.scalars(stmt))

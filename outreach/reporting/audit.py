"""The audit log of operator actions: who, when, what, with the campaign text hash."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
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


#: What the console and the dashboard call each key of an entry's details
#: (``audit-key|<English words>``: translated in Vietnamese, the words after ``|`` in English);
#: the database and ``--format json`` keep the keys. A key without a label is shown as stored
#: (tests/test_audit_details.py fails on a key recorded without one).
DETAIL_LABELS = {
    "run_id": N_("audit-key|run"), "deliveries": N_("audit-key|deliveries"),
    "rows": N_("audit-key|rows"), "action": N_("audit-key|action"),
    "what": N_("audit-key|what"), "gateways": N_("audit-key|gateways"),
    "gateway": N_("audit-key|gateway"), "user": N_("audit-key|user"),
    "file": N_("audit-key|file"), "files": N_("audit-key|files"), "day": N_("audit-key|day"),
    "carrier": N_("audit-key|carrier"), "added": N_("audit-key|added"),
    "statuses": N_("audit-key|statuses"), "status": N_("audit-key|status"),
    "source": N_("audit-key|source"), "sent": N_("audit-key|sent"),
    "replaced": N_("audit-key|replaced"), "phone": N_("audit-key|phone"),
    "override_window": N_("audit-key|outside the send window"),
    "numbers": N_("audit-key|numbers"), "letter_number": N_("audit-key|letter no."),
    "letter_date": N_("audit-key|letter date"), "short_sha256": N_("audit-key|short hash"),
    "late_minutes": N_("audit-key|minutes late"), "key_id": N_("audit-key|key"),
    "from": N_("audit-key|from"), "to": N_("audit-key|to"),
    "approval_id": N_("audit-key|approval"), "address": N_("audit-key|address"),
    "with_key": N_("audit-key|lookup key"), "with_access_token": N_("audit-key|access token"),
    "window_note": N_("audit-key|send window"), "version": N_("audit-key|version"),
    "timezone": N_("audit-key|time zone"), "shown_whole": N_("audit-key|numbers shown whole"),
    "send_time": N_("audit-key|send time"), "start_date": N_("audit-key|start"),
    "end_date": N_("audit-key|end"), "mode": N_("audit-key|mode"),
    "daily_cap": N_("audit-key|daily cap"), "segments": N_("audit-key|segments"),
    "role": N_("audit-key|role"), "removed": N_("audit-key|removed"),
    "reconciled": N_("audit-key|reconciled"), "recipients": N_("audit-key|recipients"),
    "received": N_("audit-key|received"), "reason": N_("audit-key|reason"),
    "prepared_by": N_("audit-key|prepared by"), "password": N_("audit-key|password set"),
    "older_than_days": N_("audit-key|older than (days)"), "ok": N_("audit-key|succeeded"),
    "note": N_("audit-key|note"), "lists": N_("audit-key|lists"),
    "lists_sha256": N_("audit-key|lists' hash"),
    "expires_in_seconds": N_("audit-key|expires in (seconds)"),
    "due_at": N_("audit-key|due"), "cost_vnd": N_("audit-key|cost (VND)"),
    "changed": N_("audit-key|changed"), "by": N_("audit-key|by"),
    "allow_late": N_("audit-key|late allowed"), "all": N_("audit-key|all"),
    "required": N_("audit-key|required"),
    "deferred_by_cap": N_("audit-key|deferred by the daily cap"),
    "skipped_already_sent_today": N_("audit-key|already sent today"),
    "import_id": N_("audit-key|import"), "list": N_("audit-key|list"),
    "rows_read": N_("audit-key|rows read"), "extra_numbers": N_("audit-key|extra numbers in cells"),
    "imported": N_("audit-key|imported"), "new_recipients": N_("audit-key|new recipients"),
    "rejected": N_("audit-key|rejected"), "duplicates": N_("audit-key|duplicates"),
    "by_reason": N_("audit-key|by reason"), "by_carrier": N_("audit-key|by carrier"),
    "skipped_rows": N_("audit-key|skipped rows"),
    "shared_cells": N_("audit-key|cells with several numbers"),
    "unknown_units": N_("audit-key|unknown administrative units"),
    "dry_run": N_("audit-key|dry run"), "campaigns": N_("audit-key|campaigns"),
    "not_eligible": N_("audit-key|not eligible"),
    "recipients_kept": N_("audit-key|recipients kept"),
    "list_memberships": N_("audit-key|list memberships"),
    "events_scrubbed": N_("audit-key|events scrubbed"),
    "receipts_scrubbed": N_("audit-key|receipts scrubbed"),
    "inbound_messages": N_("audit-key|replies"), "smpp_inbound": N_("audit-key|SMPP replies"),
}

#: Keys whose values are delivery or run states (shown as the console shows states).
_STATE_KEYS = frozenset({"status", "statuses", "from", "to"})
#: Keys whose values are hashes: the first 12 hex digits are shown.
_HASH_KEYS = frozenset({"lists_sha256", "short_sha256"})


def describe(details: Mapping[str, Any] | None, *, limit: int | None = 240) -> str:
    """An entry's details as one line in the interface's language, for the console and the
    dashboard: ``label: value`` pairs (:data:`DETAIL_LABELS`) joined by ``; ``, numbers with
    the language's separators, yes/no for flags, states in words, a long list or a list of
    records by its length, a mapping by its first six items, hashes cut to 12 digits; cut to
    ``limit`` characters with ``…`` (None: never, and every item of a mapping; ``outreach audit
    list --format json`` keeps everything). Empty details give ``""``."""
    from outreach.i18n import _, carrier_label, ngettext, number
    from outreach.input import reasons
    from outreach.ledger import suppression

    def scalar(key: str, v: Any) -> str:
        if isinstance(v, bool):
            return _("yes") if v else _("no")
        if isinstance(v, int):
            return number(v)
        if isinstance(v, float):
            return number(v, 0 if v.is_integer() else 1)
        if v is None:
            return "–"
        s = str(v)
        if key in _STATE_KEYS:
            return _(s)
        if key in _HASH_KEYS:
            return s[:12]
        if key == "reason":  # an opt-out's reason code (another reason is text, kept)
            return suppression.reason_label(s)
        if key == "source":
            return suppression.source_label(s)
        return s

    def value(key: str, v: Any) -> str:
        if isinstance(v, Mapping):
            if not v:
                return "–"
            name = (reasons.label if key == "by_reason" else carrier_label
                    if key == "by_carrier" else str)
            shown = list(v.items()) if limit is None else list(v.items())[:6]
            items = [f"{name(str(k))} {value(key, x)}" for k, x in shown]
            return ", ".join(items) + (", …" if len(v) > len(shown) else "")
        if isinstance(v, (list, tuple)):
            if v and len(v) <= 3 and not any(isinstance(x, (Mapping, list, tuple)) for x in v):
                return ", ".join(scalar(key, x) for x in v)
            return ngettext("{n} item", "{n} items", len(v)).format(n=number(len(v)))
        return scalar(key, v)

    parts = []
    for key, v in (details or {}).items():
        code = DETAIL_LABELS.get(key)
        parts.append(f"{label(code) if code else key}: {value(key, v)}")
    line = "; ".join(parts)
    return line if limit is None or len(line) <= limit else line[:limit - 1].rstrip() + "…"

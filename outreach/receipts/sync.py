"""Status sync: poll the provider for deliveries still ``sent`` (when no webhook URL is set)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from outreach.ledger import states
from outreach.receipts import writer as receipts
from outreach.clock import SYSTEM_CLOCK
from outreach.ledger.db import Database, retry_write
from outreach.gateways.base import Gateway, StatusUpdate
from outreach.ledger.models import Delivery


def sync_campaign(db: Database, campaign_id: str, gateway: Gateway, *, batch_size: int = 100,
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """Fetch current statuses of the campaign's deliveries that are ``sent`` (accepted, no final
    status yet) with a provider message id, sent through ``gateway`` (``Delivery.gateway ==
    gateway.name``), and apply them as receipts (``source="sync"``), one write transaction
    per batch of ``batch_size`` deliveries.

    A polled ``sent`` (Twilio ``queued``/``sending``/``sent``...) cannot move a ``sent`` row and
    is not recorded, so repeated syncs do not grow the event history; final statuses are.

    Returns ``{"campaign", "gateway", "checked", "fetched", "missing", "unchanged", "applied",
    "delivered", "undelivered", "failed", "batches"}``: ``checked`` rows asked about,
    ``fetched`` statuses the provider answered, ``missing`` ids it did not answer for,
    ``applied`` state moves, and per final status the moves into it. Raises what
    ``gateway.fetch_statuses`` raises (AuthenticationError stops the sync).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    counts: dict[str, Any] = {"campaign": campaign_id, "gateway": gateway.name, "checked": 0,
                              "fetched": 0, "missing": 0, "unchanged": 0, "applied": 0,
                              states.DELIVERED: 0, states.UNDELIVERED: 0, states.FAILED: 0,
                              "batches": 0}
    last_id = 0
    while True:
        with db.engine.connect() as conn:
            rows = conn.execute(
                select(Delivery.id, Delivery.provider_message_id, Delivery.provider_status)
                .where(Delivery.campaign_id == campaign_id, Delivery.status == states.SENT,
                       Delivery.gateway == gateway.name,
                       Delivery.provider_message_id.is_not(None), Delivery.id > last_id)
                .order_by(Delivery.id).limit(batch_size)).all()
        if not rows:
            break
        last_id = rows[-1][0]
        counts["batches"] += 1
        counts["checked"] += len(rows)
        known = {pid: (did, pstatus) for did, pid, pstatus in rows}
        fetched = gateway.fetch_statuses(list(known))
        answered = {u.provider_message_id for u in fetched}
        counts["fetched"] += sum(1 for pid in known if pid in answered)
        counts["missing"] += sum(1 for pid in known if pid not in answered)
        todo: list[StatusUpdate] = []
        for upd in fetched:
            if upd.provider_message_id not in known:
                continue
            did, _stored = known[upd.provider_message_id]
            if upd.status == states.SENT:
                counts["unchanged"] += 1
                continue
            todo.append(StatusUpdate(status=upd.status, provider_message_id=upd.provider_message_id,
                                     delivery_id=did, provider_status=upd.provider_status,
                                     error_code=upd.error_code, error_reason=upd.error_reason,
                                     occurred_at=upd.occurred_at, raw=upd.raw))
        if todo:
            outcomes = _apply(db, todo, gateway.name, now or SYSTEM_CLOCK.now())
            for upd, out in zip(todo, outcomes):
                if out.applied:
                    counts["applied"] += 1
                    if upd.status in counts:
                        counts[upd.status] += 1
                else:
                    counts["unchanged"] += 1
        if len(rows) < batch_size:
            break
    return counts


@retry_write
def _apply(db: Database, updates: list[StatusUpdate], gateway: str,
           now: dt.datetime) -> list[receipts.ReceiptOutcome]:
    with db.engine.begin() as conn:
        return receipts.apply_updates(conn, updates, gateway=gateway, source="sync", now=now)

"""Delivery reports read from the ledger: every delivery counted exactly once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, select

from outreach import states
from outreach.models import Campaign, Delivery, Import

UNKNOWN_DISTRICT = "(không rõ)"


def _latest_filter(campaign_id: str, since: dt.datetime | None, until: dt.datetime | None) -> list[Any]:
    conds: list[Any] = [Delivery.campaign_id == campaign_id]
    if since:
        conds.append(Delivery.queued_at >= since)
    if until:
        conds.append(Delivery.queued_at < until)
    return conds


def campaign_report(conn: Connection, campaign_id: str, *, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> dict[str, Any]:
    """The report as one dict.

    ``deliveries`` counts delivery rows (a recipient resent or reached by fallback has more than
    one); ``recipients`` counts distinct recipients; ``by_status`` maps every state to a count;
    ``by_district`` maps district -> status -> count; cost in VND, segments in SMS parts.
    """
    camp = conn.execute(select(Campaign.id, Campaign.name, Campaign.source_ref,
                               Campaign.text_sha256).where(Campaign.id == campaign_id)).first()
    if camp is None:
        from outreach.ops import OperatorError

        raise OperatorError(f"no campaign {campaign_id!r} in the database (launch it first)")
    conds = _latest_filter(campaign_id, since, until)
    by_status = states.group_by_status(conn.execute(
        select(Delivery.status, func.count()).where(*conds).group_by(Delivery.status)).all())
    by_district: dict[str, dict[str, int]] = {}
    for district, status, n in conn.execute(
            select(Delivery.district, Delivery.status, func.count()).where(*conds)
            .group_by(Delivery.district, Delivery.status)):
        by_district.setdefault(district or UNKNOWN_DISTRICT, {})[status] = n
    recipients = conn.execute(select(func.count(func.distinct(Delivery.recipient_id)))
                              .where(*conds)).scalar_one()
    total = sum(by_status.values())
    seg_cost = conn.execute(select(func.coalesce(func.sum(Delivery.segments), 0),
                                   func.coalesce(func.sum(Delivery.cost_vnd), 0.0))
                            .where(*conds, Delivery.status.in_(states.ACCEPTED_STATES))).one()
    accepted = sum(by_status[s] for s in states.ACCEPTED_STATES)
    return {
        "campaign": campaign_id, "name": camp.name, "source": camp.source_ref,
        "text_sha256": camp.text_sha256, "recipients": recipients, "deliveries": total,
        "by_status": by_status,
        "by_district": dict(sorted(by_district.items())),
        "sent": accepted,
        "delivered": by_status[states.DELIVERED],
        "delivery_rate": round(by_status[states.DELIVERED] / accepted, 4) if accepted else None,
        "segments": int(seg_cost[0]), "cost_vnd": float(seg_cost[1]),
        "since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
    }


def import_totals(conn: Connection, list_name: str) -> dict[str, int]:
    row = conn.execute(select(Import.rows_read, Import.imported, Import.rejected, Import.duplicates)
                       .where(Import.list_name == list_name).order_by(Import.id.desc())).first()
    if row is None:
        return {}
    return dict(row._mapping)

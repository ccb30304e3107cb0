"""Delivery reports read from the ledger: every delivery counted exactly once in every breakdown.

Definitions (the same in the table, JSON, CSV, XLSX and the official report):

- **deliveries**: delivery rows (a recipient resent, or reached by fallback on a second channel,
  has more than one); **recipients**: distinct recipients with at least one delivery;
  **reached**: distinct recipients with at least one ``delivered`` delivery.
- Outcome groups, a partition of the states (so they add up to ``deliveries``):
  ``delivered``; ``failed`` = failed + undelivered (the provider or the carrier said it did not
  arrive); ``awaiting`` = sending + sent + unknown (outcome not known yet, or never: see
  ``outreach deliveries resolve``); ``not_sent`` = queued + skipped + opted_out.
  ``attempted`` = delivered + failed + awaiting (handed to a gateway);
  ``delivery_rate`` = delivered / attempted (None when nothing was attempted).
  ``sent`` keeps its historical meaning: accepted by a provider (sent + delivered + undelivered,
  :data:`outreach.states.ACCEPTED_STATES`).
- **segments** (SMS parts; 1 per Zalo message) and **cost_vnd** (VND) are summed over accepted
  deliveries only: a message refused at send is not billed.
- **day**: the calendar day in Asia/Ho_Chi_Minh (UTC+7, no daylight saving) of the delivery's
  last send attempt (``sending_at``), or of its queueing (``queued_at``) for a delivery never
  handed to a gateway (queued, skipped, opted out). Sends happen inside the daily window
  (07:00–22:00), so the send day and the ``sent_at`` day are the same day.
- ``since``/``until`` select deliveries by that same instant, ``coalesce(sending_at, queued_at)``:
  ``since <= t < until``.

Speed: the report is five index scans, no table read, when the indexes of
``Delivery.__table_args__`` exist (``ix_deliveries_report``, ``ix_deliveries_campaign_status_recipient``,
``ix_deliveries_campaign_status_time`` and the unique key); ``benchmarks/report_1m.py`` times it
over 1,000,000 deliveries. Days are counted with index range counts (one per status and day), not
with a date function over every row, which in SQLite costs more than the whole rest of the report.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select

from outreach import states
from outreach.clock import VN_TZ
from outreach.models import Campaign, Delivery, Import

UNKNOWN_DISTRICT = "(không rõ)"
UNKNOWN_VALUE = "(không rõ)"

#: Outcome groups: a partition of :data:`outreach.states.ALL_STATES`.
DELIVERED_STATES = (states.DELIVERED,)
FAILED_STATES = (states.FAILED, states.UNDELIVERED)
AWAITING_STATES = (states.SENDING, states.SENT, states.UNKNOWN)
NOT_SENT_STATES = (states.QUEUED, states.SKIPPED, states.OPTED_OUT)
#: States listed in the failure-reasons table (everything final or stuck that is not delivered).
REASON_STATES = (states.FAILED, states.UNDELIVERED, states.UNKNOWN, states.SKIPPED,
                 states.OPTED_OUT)
#: Breakdowns by one column of the ledger, in report order: name -> (column, label).
DIMENSIONS = ("district", "ward", "carrier", "channel", "gateway", "day")


def outcome(by_status: Mapping[str, int]) -> dict[str, Any]:
    """The outcome groups of a status -> count mapping (see the module docstring).

    Returns ``{"deliveries", "attempted", "delivered", "failed", "awaiting", "not_sent",
    "delivery_rate"}``; the rate is a float in [0, 1] rounded to 4 places, or None.
    """
    n = lambda group: sum(by_status.get(s, 0) for s in group)  # noqa: E731
    delivered, failed, awaiting, not_sent = (n(DELIVERED_STATES), n(FAILED_STATES),
                                             n(AWAITING_STATES), n(NOT_SENT_STATES))
    total = sum(by_status.values())
    attempted = delivered + failed + awaiting
    return {"deliveries": total, "attempted": attempted, "delivered": delivered,
            "failed": failed, "awaiting": awaiting, "not_sent": total - attempted,
            "delivery_rate": round(delivered / attempted, 4) if attempted else None}


def _conds(campaign_id: str, since: dt.datetime | None, until: dt.datetime | None) -> list[Any]:
    conds: list[Any] = [Delivery.campaign_id == campaign_id]
    at = func.coalesce(Delivery.sending_at, Delivery.queued_at)
    if since:
        conds.append(at >= since)
    if until:
        conds.append(at < until)
    return conds


def _aware(value: Any) -> dt.datetime | None:
    """A UTC datetime from a column value (aggregates on SQLite may come back as text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def vn_day(value: dt.datetime) -> dt.date:
    """The Asia/Ho_Chi_Minh calendar day of an aware instant."""
    return value.astimezone(VN_TZ).date()


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=VN_TZ)


def report_connection(engine: Engine) -> Any:
    """A connection whose statements all read one snapshot (PostgreSQL: REPEATABLE READ; SQLite
    reads in the one transaction the connection opens), so that breakdowns add up even while a
    dispatcher is writing. Use as a context manager."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def campaign_report(conn: Connection, campaign_id: str, *, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> dict[str, Any]:
    """The whole report of one campaign as one JSON-ready dict.

    Keys: ``campaign``, ``name``, ``source`` (reference text), ``source_detail`` (the campaign
    file's source table), ``text`` (the message exactly as stored), ``text_sha256``, ``window``
    (campaign dates), ``since``/``until`` (ISO or None), ``generated_at``;
    totals ``deliveries``, ``recipients``, ``reached``, ``not_reached`` (recipients - reached),
    ``reach_rate``, the outcome groups of :func:`outcome`, ``sent`` (accepted), ``segments``,
    ``cost_vnd`` (VND), ``first_send``/``last_send`` (ISO, Asia/Ho_Chi_Minh, or None);
    ``by_status`` (every state -> count, zeros included); breakdowns ``by_district``,
    ``by_carrier``, ``by_channel``, ``by_gateway``, ``by_day`` (``YYYY-MM-DD``): key -> status ->
    count (states with a count only), ``by_ward``: district -> ward -> status -> count (missing
    values shown as ``(không rõ)``); ``cost``: dimension -> key -> {"segments", "cost_vnd"};
    ``failure_reasons``: list of {"status", "gateway", "error_code", "error_reason", "count"},
    largest first, covering every failed, undelivered, unknown, skipped and opted-out delivery.

    The sum over every breakdown equals ``deliveries``. Raises OperatorError for an unknown
    campaign.
    """
    camp = conn.execute(select(Campaign.id, Campaign.name, Campaign.source_ref, Campaign.text,
                               Campaign.text_sha256, Campaign.definition)
                        .where(Campaign.id == campaign_id)).first()
    if camp is None:
        from outreach.ops import OperatorError

        raise OperatorError(f"no campaign {campaign_id!r} in the database (launch it first)")
    conds = _conds(campaign_id, since, until)

    # 1. one scan of ix_deliveries_report: every breakdown but the day, with segments and cost
    by_status: dict[str, int] = defaultdict(int)
    dims: dict[str, dict[str, dict[str, int]]] = {d: {} for d in
                                                  ("district", "carrier", "channel", "gateway")}
    by_ward: dict[str, dict[str, dict[str, int]]] = {}
    cost: dict[str, dict[str, dict[str, float]]] = {d: {} for d in
                                                    ("district", "carrier", "channel", "gateway")}
    segments_total, cost_total = 0, 0.0
    cols = (Delivery.district, Delivery.ward, Delivery.carrier, Delivery.channel, Delivery.gateway,
            Delivery.status)
    for district, ward, carrier, channel, gateway, status, n, segs, vnd in conn.execute(
            select(*cols, func.count(), func.coalesce(func.sum(Delivery.segments), 0),
                   func.coalesce(func.sum(Delivery.cost_vnd), 0.0))
            .where(*conds).group_by(*cols)):
        district = district or UNKNOWN_DISTRICT
        keys = {"district": district, "carrier": carrier or UNKNOWN_VALUE,
                "channel": channel or UNKNOWN_VALUE, "gateway": gateway or UNKNOWN_VALUE}
        by_status[status] += n
        for dim, key in keys.items():
            row = dims[dim].setdefault(key, {})
            row[status] = row.get(status, 0) + n
        wrow = by_ward.setdefault(district, {}).setdefault(ward or UNKNOWN_VALUE, {})
        wrow[status] = wrow.get(status, 0) + n
        if status in states.ACCEPTED_STATES:
            segments_total += int(segs or 0)
            cost_total += float(vnd or 0.0)
            for dim, key in keys.items():
                c = cost[dim].setdefault(key, {"segments": 0, "cost_vnd": 0.0})
                c["segments"] += int(segs or 0)
                c["cost_vnd"] += float(vnd or 0.0)

    present = sorted(s for s, n in by_status.items() if n)
    # 2. distinct recipients (unique key, ordered by recipient) and reached (status index)
    recipients = conn.execute(select(func.count()).select_from(
        select(Delivery.recipient_id).where(*conds).group_by(Delivery.recipient_id).subquery())
    ).scalar_one()
    reached = conn.execute(select(func.count(func.distinct(Delivery.recipient_id)))
                           .where(*conds, Delivery.status == states.DELIVERED)).scalar_one()
    # 3. days, and first and last send
    by_day, first_send, last_send = _by_day(conn, conds, present)
    # 4. failure reasons (failure rows only, from ix_deliveries_campaign_status_time)
    reasons = [{"status": s, "gateway": g, "error_code": code, "error_reason": why, "count": n}
               for s, g, code, why, n in conn.execute(
                   select(Delivery.status, Delivery.gateway, Delivery.error_code,
                          Delivery.error_reason, func.count())
                   .where(*conds, Delivery.status.in_(REASON_STATES))
                   .group_by(Delivery.status, Delivery.gateway, Delivery.error_code,
                             Delivery.error_reason))]
    reasons.sort(key=lambda r: (-r["count"], r["status"], r["gateway"] or "",
                                r["error_code"] or "", r["error_reason"] or ""))

    full_status = states.group_by_status(by_status.items())
    out = outcome(full_status)
    definition = camp.definition or {}
    window = definition.get("window") or {}
    return {
        "campaign": campaign_id, "name": camp.name, "source": camp.source_ref,
        "source_detail": definition.get("source") or {}, "text": camp.text,
        "text_sha256": camp.text_sha256,
        "window": {"start_date": window.get("start_date"), "end_date": window.get("end_date")},
        "since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
        "generated_at": dt.datetime.now(VN_TZ).isoformat(timespec="seconds"),
        "day_basis": "Asia/Ho_Chi_Minh day of sending_at, else queued_at",
        "recipients": recipients, "reached": reached, "not_reached": recipients - reached,
        "reach_rate": round(reached / recipients, 4) if recipients else None,
        **out,
        "sent": sum(full_status[s] for s in states.ACCEPTED_STATES),
        "segments": segments_total, "cost_vnd": round(cost_total, 2),
        "first_send": first_send.astimezone(VN_TZ).isoformat() if first_send else None,
        "last_send": last_send.astimezone(VN_TZ).isoformat() if last_send else None,
        "by_status": full_status,
        "by_district": dict(sorted(dims["district"].items())),
        "by_ward": {d: dict(sorted(w.items())) for d, w in sorted(by_ward.items())},
        "by_carrier": dict(sorted(dims["carrier"].items())),
        "by_channel": dict(sorted(dims["channel"].items())),
        "by_gateway": dict(sorted(dims["gateway"].items())),
        "by_day": by_day,
        "cost": {d: {k: {"segments": v["segments"], "cost_vnd": round(v["cost_vnd"], 2)}
                     for k, v in sorted(cost[d].items())} for d in cost},
        "failure_reasons": reasons,
    }


def _by_day(conn: Connection, conds: list[Any], present: Iterable[str],
            ) -> tuple[dict[str, dict[str, int]], dt.datetime | None, dt.datetime | None]:
    """Day -> status -> count, plus the first and last ``sending_at``.

    Rows with a ``sending_at`` are counted per status and day with range counts on
    ``(campaign_id, status, sending_at)`` (no per-row function, no sort); rows without one are
    grouped by ``queued_at``, which has one value per run.
    """
    present = list(present)
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if not present:
        return {}, None, None
    bounds_q = []
    for s in present:
        where = and_(*conds, Delivery.status == s, Delivery.sending_at.is_not(None))
        bounds_q += [select(func.min(Delivery.sending_at)).where(where).scalar_subquery(),
                     select(func.max(Delivery.sending_at)).where(where).scalar_subquery()]
    row = conn.execute(select(*bounds_q)).one()
    first = last = None
    for i, s in enumerate(present):
        lo, hi = _aware(row[2 * i]), _aware(row[2 * i + 1])
        if lo is None or hi is None:
            continue
        first = lo if first is None or lo < first else first
        last = hi if last is None or hi > last else last
        days = [vn_day(lo) + dt.timedelta(days=k) for k in range((vn_day(hi) - vn_day(lo)).days + 1)]
        counts = []
        for d in days:
            start, end = _day_start(d), _day_start(d + dt.timedelta(days=1))
            counts.append(select(func.count()).where(
                *conds, Delivery.status == s, Delivery.sending_at >= start,
                Delivery.sending_at < end).scalar_subquery())
        for start_i in range(0, len(counts), 500):  # SQLite allows 2000 result columns
            values = conn.execute(select(*counts[start_i:start_i + 500])).one()
            for d, n in zip(days[start_i:start_i + 500], values):
                if n:
                    out[d.isoformat()][s] += n
    for s, queued_at, n in conn.execute(
            select(Delivery.status, Delivery.queued_at, func.count())
            .where(*conds, Delivery.status.in_(present), Delivery.sending_at.is_(None))
            .group_by(Delivery.status, Delivery.queued_at)):
        out[vn_day(_aware(queued_at)).isoformat()][s] += n  # type: ignore[arg-type]
    return {d: dict(v) for d, v in sorted(out.items())}, first, last


def breakdown_rows(data: Mapping[str, Any], dimension: str) -> list[dict[str, Any]]:
    """Rows of one breakdown for tables and files: the key column(s), one column per state, the
    outcome groups, segments and cost_vnd (not for ``status`` and ``day``: '' there).

    ``dimension`` is ``status``, ``district``, ``ward`` (two key columns: district, ward),
    ``carrier``, ``channel``, ``gateway`` or ``day``. The last row is the total (key ``TỔNG``).
    """
    rows: list[dict[str, Any]] = []
    cost = data.get("cost", {}).get(dimension, {})

    def make(keys: dict[str, str], counts: Mapping[str, int], c: Mapping[str, Any] | None) -> dict:
        row: dict[str, Any] = dict(keys)
        row.update({s: counts.get(s, 0) for s in states.ALL_STATES})
        row.update(outcome(counts))
        row["segments"] = c["segments"] if c else ""
        row["cost_vnd"] = c["cost_vnd"] if c else ""
        return row

    if dimension == "status":
        return [{"status": s, "count": n} for s, n in data["by_status"].items()] + [
            {"status": "TỔNG", "count": data["deliveries"]}]
    if dimension == "ward":
        for district, wards in data["by_ward"].items():
            for ward, counts in wards.items():
                rows.append(make({"district": district, "ward": ward}, counts, None))
        total_keys = {"district": "TỔNG", "ward": ""}
    else:
        for key, counts in data[f"by_{dimension}"].items():
            rows.append(make({dimension: key}, counts, cost.get(key) if cost else None))
        total_keys = {dimension: "TỔNG"}
    with_cost = dimension in data.get("cost", {})
    rows.append(make(total_keys, data["by_status"],
                     {"segments": data["segments"], "cost_vnd": data["cost_vnd"]}
                     if with_cost else None))
    return rows


def explain_sql(conn: Connection, campaign_id: str) -> str:
    """The SQL of the main scan with the campaign inlined (for ``EXPLAIN QUERY PLAN``)."""
    cols = (Delivery.district, Delivery.ward, Delivery.carrier, Delivery.channel, Delivery.gateway,
            Delivery.status)
    stmt = (select(*cols, func.count(), func.sum(Delivery.segments), func.sum(Delivery.cost_vnd))
            .where(Delivery.campaign_id == campaign_id).group_by(*cols))
    return str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))


def import_totals(conn: Connection, list_name: str) -> dict[str, int]:
    """The counts of the latest import of a list (rows_read = imported + rejected + duplicates)."""
    row = conn.execute(select(Import.rows_read, Import.imported, Import.rejected, Import.duplicates)
                       .where(Import.list_name == list_name).order_by(Import.id.desc())).first()
    if row is None:
        return {}
    return dict(row._mapping)

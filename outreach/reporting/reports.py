"""Delivery reports read from the ledger: every delivery counted exactly once in every breakdown.

Definitions (the same in the table, JSON, CSV, XLSX and the official report):

- **deliveries**: delivery rows (a recipient resent, or reached by fallback on a second channel,
  has more than one); **recipients**: distinct recipients with at least one delivery;
  **reached**: distinct recipients with at least one ``delivered`` delivery.
- Outcome groups, a partition of the states (so they add up to ``deliveries``):
  ``delivered``; ``failures`` = failed + undelivered (the provider or the carrier said it did not
  arrive); ``awaiting`` = sending + sent + unknown (outcome not known yet, or never: see
  ``outreach deliveries resolve``); ``not_sent`` = queued + skipped + opted_out.
  ``attempted`` = delivered + failures + awaiting (handed to a gateway);
  ``delivery_rate`` = delivered / attempted (None when nothing was attempted).
  ``sent`` keeps its historical meaning: accepted by a provider (sent + delivered + undelivered,
  :data:`outreach.ledger.states.ACCEPTED_STATES`).
- **segments** (SMS parts; 1 per Zalo message) and **cost_vnd** (VND) are summed over accepted
  deliveries only: a message refused at send is not billed.
- **day**: the calendar day in Asia/Ho_Chi_Minh (UTC+7, no daylight saving) of the delivery's
  last send attempt (``sending_at``), or of its queueing (``queued_at``) for a delivery never
  handed to a gateway (queued, skipped, opted out). Sends happen inside the daily window
  (07:00–22:00), so the send day and the ``sent_at`` day are the same day.
- ``since``/``until`` select deliveries by that same instant, ``coalesce(sending_at, queued_at)``:
  ``since <= t < until``.

Speed: without ``since``/``until`` the report reads covering indexes only, each in the order of
its GROUP BY (no table row, no sort). They are partial (``outreach/models.py``): they hold the
deliveries that have left the queue (``SETTLED_SQL``: neither queued nor sending), so that the
dispatcher's moves touch none of them until a send has an outcome; each query here repeats
the index's predicate word for word, which is what lets SQLite use it.
``ix_deliveries_report`` (every breakdown but the day), the unique key (distinct recipients),
``ix_deliveries_reached``, ``ix_deliveries_campaign_status_time`` (days) and
``ix_deliveries_campaign_status_reason`` (failure reasons). Queued and in-flight deliveries are
read through ``ix_deliveries_run_status`` and their rows (few once a campaign has sent; all of
them right after an enqueue-only launch, when the report reads every queued row). Days are
counted with index range counts (one per status and day but the first), not with a date
function over every row, which in SQLite costs more than the rest of the report.
``benchmarks/report_1m.py`` times it over 1,000,000 deliveries. With ``since``/``until`` the
rows are read too (slower, still one pass per query).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select
from sqlalchemy.orm import aliased
from sqlalchemy import text as sql_text

from outreach.ledger import states
from outreach.clock import VN_TZ
from outreach import i18n
from outreach.i18n import N_, _
from outreach.ledger.models import REACHED_SQL, REASON_SQL, SETTLED_SQL, Campaign, Delivery, Import, Run

UNKNOWN_DISTRICT = "(không rõ)"
UNKNOWN_VALUE = "(không rõ)"

#: Outcome groups: a partition of :data:`outreach.ledger.states.ALL_STATES`.
DELIVERED_STATES = (states.DELIVERED,)
FAILED_STATES = (states.FAILED, states.UNDELIVERED)
AWAITING_STATES = (states.SENDING, states.SENT, states.UNKNOWN)
NOT_SENT_STATES = (states.QUEUED, states.SKIPPED, states.OPTED_OUT)
#: States listed in the failure-reasons table (everything final or stuck that is not delivered);
#: the states of ``outreach.ledger.models.REASON_SQL``.
REASON_STATES = (states.FAILED, states.UNDELIVERED, states.UNKNOWN, states.SKIPPED,
                 states.OPTED_OUT)
#: States not covered by the partial report indexes (``outreach.ledger.models.SETTLED_SQL``).
IN_FLIGHT_STATES = (states.QUEUED, states.SENDING)
#: The breakdowns, in report order (names accepted by :func:`breakdown_rows`).
DIMENSIONS = ("status", "district", "ward", "carrier", "channel", "gateway", "day")


def outcome(by_status: Mapping[str, int]) -> dict[str, Any]:
    """The outcome groups of a status -> count mapping (see the module docstring).

    Returns ``{"deliveries", "attempted", "delivered", "failures", "awaiting", "not_sent",
    "delivery_rate"}``; the rate is a float in [0, 1] rounded to 4 places, or None.
    """
    n = lambda group: sum(by_status.get(s, 0) for s in group)  # noqa: E731
    delivered, failed, awaiting = n(DELIVERED_STATES), n(FAILED_STATES), n(AWAITING_STATES)
    total = sum(by_status.values())
    attempted = delivered + failed + awaiting
    return {"deliveries": total, "attempted": attempted, "delivered": delivered,
            "failures": failed, "awaiting": awaiting, "not_sent": total - attempted,
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
    largest first, covering every failed, undelivered, unknown, skipped and opted-out delivery;
    ``local_gateways``: the gateways used that reach no phone (``["outbox"]`` for a trial run);
    ``carrier_broadcasts``: the operators' own broadcasts at the Department's request, as they
    reported them (:func:`carrier_summary`), never part of ``recipients`` or ``reached``;
    ``resends``: deliveries that are an explicit resend of failures (dedupe key ``resend:<run>``);
    ``replies``: citizens' replies that most likely answer the campaign, by kind, keyword, day
    and channel (:func:`reply_summary`; ``since``/``until`` by the time of receipt);
    ``document``: the campaign file's ``[report]`` table (number, signer... of the official
    report; no figure).

    The sum over every breakdown equals ``deliveries`` provided every statement reads one
    snapshot: pass a connection from :func:`report_connection` (SQLite: the connection's one
    transaction; PostgreSQL: REPEATABLE READ). Raises OperatorError for an unknown campaign.
    """
    camp = conn.execute(select(Campaign.id, Campaign.name, Campaign.source_ref, Campaign.text,
                               Campaign.text_sha256, Campaign.definition)
                        .where(Campaign.id == campaign_id)).first()
    if camp is None:
        from outreach.sending.ops import OperatorError

        raise OperatorError(i18n._("no campaign {id!r} in the database (launch it "
                                   "first)").format(
            id=campaign_id))
    conds = _conds(campaign_id, since, until)

    # 1. settled rows: one scan of ix_deliveries_report, every breakdown but the day, with
    #    segments and cost; queued and in-flight rows through the run index, with their day
    cols = (Delivery.district, Delivery.ward, Delivery.carrier, Delivery.channel, Delivery.gateway,
            Delivery.status)
    sums = (func.count(), func.coalesce(func.sum(Delivery.segments), 0),
            func.coalesce(func.sum(Delivery.cost_vnd), 0.0))
    settled_rows = conn.execute(select(*cols, *sums).where(*conds, sql_text(SETTLED_SQL))
                                .group_by(*cols)).all()
    at = func.coalesce(Delivery.sending_at, Delivery.queued_at)
    open_rows = conn.execute(
        select(*cols, *sums, at).where(
            Delivery.run_id.in_(select(Run.id).where(Run.campaign_id == campaign_id)),
            Delivery.status.in_(IN_FLIGHT_STATES), *conds)
        .group_by(*cols, at)).all()
    in_flight_days: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in open_rows:
        in_flight_days[vn_day(_aware(row[-1])).isoformat()][row[5]] += row[6]  # type: ignore[arg-type]
    by_status: dict[str, int] = defaultdict(int)
    dims: dict[str, dict[str, dict[str, int]]] = {d: {} for d in
                                                  ("district", "carrier", "channel", "gateway")}
    by_ward: dict[str, dict[str, dict[str, int]]] = {}
    cost: dict[str, dict[str, dict[str, float]]] = {d: {} for d in
                                                    ("district", "carrier", "channel", "gateway")}
    segments_total, cost_total = 0, 0.0
    for district, ward, carrier, channel, gateway, status, n, segs, vnd, *_ in (
            *settled_rows, *open_rows):
        district = district or UNKNOWN_DISTRICT
        keys = {"district": district, "carrier": carrier or UNKNOWN_VALUE,
                "channel": channel or UNKNOWN_VALUE, "gateway": gateway or UNKNOWN_VALUE}
        by_status[status] += n
        for dim, key in keys.items():
            row = dims[dim].setdefault(key, {})
            row[status] = row.get(status, 0) + n
        wrow = by_ward.setdefault(district, {}).setdefault(ward or UNKNOWN_VALUE, {})
        wrow[status] = wrow.get(status, 0) + n
        billed = status in states.ACCEPTED_STATES
        if billed:
            segments_total += int(segs or 0)
            cost_total += float(vnd or 0.0)
        for dim, key in keys.items():
            c = cost[dim].setdefault(key, {"segments": 0, "cost_vnd": 0.0})
            if billed:
                c["segments"] += int(segs or 0)
                c["cost_vnd"] += float(vnd or 0.0)

    # 2. distinct recipients (unique key, ordered by recipient) and reached (ix_deliveries_reached)
    # (DISTINCT subqueries, not count(DISTINCT ...): SQLite then reads each index in recipient
    # order instead of building a temporary B-tree of a million ids: reached 0.36 -> 0.12 s at
    # 1,000,000 deliveries, benchmarks/report_1m.py)
    recipients = conn.execute(select(func.count()).select_from(
        select(Delivery.recipient_id).where(*conds).distinct().subquery())).scalar_one()
    reached = conn.execute(select(func.count()).select_from(
        select(Delivery.recipient_id).where(*conds, sql_text(REACHED_SQL)).distinct()
        .subquery())).scalar_one()
    # 3. days, and first and last send (settled rows; in-flight rows were counted above)
    by_day, first_send, last_send = _by_day(
        conn, conds, {s: n for s, n in by_status.items() if s not in IN_FLIGHT_STATES})
    for day, counts in in_flight_days.items():
        for s, n in counts.items():
            by_day.setdefault(day, {})[s] = by_day.get(day, {}).get(s, 0) + n
    by_day = dict(sorted(by_day.items()))
    sending_at = [_aware(r[-1]) for r in open_rows if r[5] == states.SENDING]
    if sending_at:
        first_send = min(filter(None, [first_send, *sending_at]))
        last_send = max(filter(None, [last_send, *sending_at]))
    # 4. failure reasons (failure rows only, in ix_deliveries_campaign_status_reason order)
    reasons = [{"status": s, "gateway": g, "error_code": code, "error_reason": why, "count": n}
               for s, g, code, why, n in conn.execute(
                   select(Delivery.status, Delivery.gateway, Delivery.error_code,
                          Delivery.error_reason, func.count())
                   .where(*conds, sql_text(REASON_SQL))
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
        # place names in Vietnamese alphabetical order ("Ô Môn" before "Phong Điền")
        "by_district": dict(i18n.vi_sorted_items(dims["district"])),
        "by_ward": {d: dict(i18n.vi_sorted_items(w)) for d, w in i18n.vi_sorted_items(by_ward)},
        "by_carrier": dict(sorted(dims["carrier"].items())),
        "by_channel": dict(sorted(dims["channel"].items())),
        "by_gateway": dict(sorted(dims["gateway"].items())),
        "by_day": by_day,
        "cost": {d: {k: {"segments": v["segments"], "cost_vnd": round(v["cost_vnd"], 2)}
                     for k, v in (i18n.vi_sorted_items(cost[d]) if d in ("district", "ward")
                                  else sorted(cost[d].items()))} for d in cost},
        "failure_reasons": reasons,
        "local_gateways": local_gateways(dims["gateway"]),
        "unknown_no_fallback": _unknown_no_fallback(conn, campaign_id, definition),
        # the operators' own broadcasts: counts they report, kept apart from per-person reach
        "carrier_broadcasts": carrier_summary(conn, campaign_id),
        "resends": conn.execute(select(func.count()).where(
            *conds, _is_resend(conn))).scalar_one(),
        # citizens' replies that most likely answer this campaign (issue #20)
        "replies": reply_summary(conn, campaign_id, since=since, until=until),
        # the official report's fixed parts from the campaign file's [report] table (no figure)
        "document": dict(definition.get("report") or {}),
    }


def _is_resend(conn: Connection) -> Any:
    """The condition "dedupe key ``resend:<run>``" (:mod:`outreach.ledger.runs`). On SQLite a
    range of the key (``'resend:' <= key < 'resend;'``, ``;`` the character after ``:``), which
    compares bytes and costs half the case-folding LIKE over the unique key; elsewhere LIKE,
    since a PostgreSQL collation other than C may not order punctuation by code point."""
    if conn.dialect.name == "sqlite":
        return and_(Delivery.dedupe_key >= "resend:", Delivery.dedupe_key < "resend;")
    return Delivery.dedupe_key.like("resend:%")


def reply_summary(conn: Connection, campaign_id: str, *, since: dt.datetime | None = None,
                  until: dt.datetime | None = None) -> dict[str, Any]:
    """Citizens' replies to the campaign counted by kind, keyword, day (Asia/Ho_Chi_Minh day
    of receipt) and channel: :func:`outreach.receipts.inbound.reply_counts`."""
    from outreach.receipts.inbound import reply_counts

    return reply_counts(conn, campaign_id, since=since, until=until)


def carrier_summary(conn: Connection, campaign_id: str) -> dict[str, Any]:
    """The mobile operators' reported broadcasts (outreach.carriers.ledger.summary): subscribers
    messaged per carrier, day and area. Never added into ``recipients`` or ``reached``."""
    from outreach.carriers.ledger import summary

    return summary(conn, campaign_id)


def _unknown_no_fallback(conn: Connection, campaign_id: str,
                         definition: Mapping[str, Any]) -> dict[str, int]:
    """Channel -> deliveries whose outcome is unknown on a channel that has a next one, and
    for which the next channel was not used: "Zalo outcome unknown, SMS not sent" (issue
    #15: nobody is sent a second message while the first may have arrived). Empty for a
    campaign with one channel."""
    chans = [c.get("channel") for c in (definition.get("channels") or []) if isinstance(c, dict)]
    out: dict[str, int] = {}
    for cur, nxt in zip(chans, chans[1:]):
        other = aliased(Delivery)
        later = select(other.id).where(other.campaign_id == Delivery.campaign_id,
                                       other.recipient_id == Delivery.recipient_id,
                                       other.dedupe_key == Delivery.dedupe_key,
                                       other.channel == nxt)
        n = conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id == campaign_id, Delivery.channel == cur,
            Delivery.status == states.UNKNOWN, ~later.exists())).scalar_one()
        if n:
            out[cur] = n
    return out


def local_gateways(names: Any) -> list[str]:
    """The gateways among ``names`` that reach no phone (``outbox``: a local file for trials);
    deliveries through them are a test, never a result to report. Unknown names count as
    reaching phones."""
    from outreach.gateways import REGISTRY, gateway_class

    return sorted(n for n in names if n in REGISTRY and not gateway_class(n).reaches_phones)


def _by_day(conn: Connection, conds: list[Any], by_status: Mapping[str, int],
            ) -> tuple[dict[str, dict[str, int]], dt.datetime | None, dt.datetime | None]:
    """Day -> status -> count of settled deliveries (``SETTLED_SQL``; ``by_status`` holds only
    settled states), plus their first and last ``sending_at``.

    Rows without a ``sending_at`` are grouped by ``queued_at`` (one value per run). Rows with
    one are counted per status and Vietnamese day with index range counts on
    ``(campaign_id, status, sending_at)`` (no per-row date function, no sort), except the first
    day of each status, which is what remains of that status's total (``by_status``, read in
    the same snapshot): a status sent on one day costs no count at all.
    """
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    present = sorted(s for s, n in by_status.items() if n)
    if not present:
        return {}, None, None
    unsent: dict[str, int] = defaultdict(int)
    for s, queued_at, n in conn.execute(
            select(Delivery.status, Delivery.queued_at, func.count())
            .where(*conds, sql_text(SETTLED_SQL), Delivery.status.in_(present),
                   Delivery.sending_at.is_(None))
            .group_by(Delivery.status, Delivery.queued_at)):
        out[vn_day(_aware(queued_at)).isoformat()][s] += n  # type: ignore[arg-type]
        unsent[s] += n
    sent = [s for s in present if by_status[s] > unsent[s]]
    first = last = None
    if not sent:
        return {d: dict(v) for d, v in sorted(out.items())}, first, last
    bounds_q = []
    for s in sent:
        where = and_(*conds, sql_text(SETTLED_SQL), Delivery.status == s,
                     Delivery.sending_at.is_not(None))
        bounds_q += [select(func.min(Delivery.sending_at)).where(where).scalar_subquery(),
                     select(func.max(Delivery.sending_at)).where(where).scalar_subquery()]
    row = conn.execute(select(*bounds_q)).one()
    for i, s in enumerate(sent):
        lo, hi = _aware(row[2 * i]), _aware(row[2 * i + 1])
        assert lo is not None and hi is not None
        first = lo if first is None or lo < first else first
        last = hi if last is None or hi > last else last
        days = [vn_day(lo) + dt.timedelta(days=k) for k in range((vn_day(hi) - vn_day(lo)).days + 1)]
        remaining = by_status[s] - unsent[s]
        counts = []
        for d in days[1:]:
            start, end = _day_start(d), _day_start(d + dt.timedelta(days=1))
            counts.append(select(func.count()).where(
                *conds, sql_text(SETTLED_SQL), Delivery.status == s, Delivery.sending_at >= start,
                Delivery.sending_at < end).scalar_subquery())
        for start_i in range(0, len(counts), 500):  # SQLite allows 2000 result columns
            values = conn.execute(select(*counts[start_i:start_i + 500])).one()
            for d, n in zip(days[1 + start_i:1 + start_i + 500], values):
                if n:
                    out[d.isoformat()][s] += n
                    remaining -= n
        out[days[0].isoformat()][s] += remaining
    return {d: dict(v) for d, v in sorted(out.items())}, first, last


def breakdown_rows(data: Mapping[str, Any], dimension: str, *,
                   total_label: str = "TOTAL") -> list[dict[str, Any]]:
    """Rows of one breakdown for tables and files, the total last (key ``total_label``).

    ``dimension`` is one of :data:`DIMENSIONS`. Each row: ``key`` (district, carrier, day...;
    the state for ``status``), ``subkey`` (the ward for ``ward``, else ''), one count per state,
    the outcome groups of :func:`outcome` and ``segments``/``cost_vnd`` (VND; '' where the
    breakdown has no cost: status, ward, day).
    """
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown breakdown {dimension!r} (one of {', '.join(DIMENSIONS)})")
    cost = data.get("cost", {}).get(dimension)

    def make(key: str, subkey: str, counts: Mapping[str, int],
             c: Mapping[str, Any] | None) -> dict[str, Any]:
        row: dict[str, Any] = {"key": key, "subkey": subkey}
        row.update({s: counts.get(s, 0) for s in states.ALL_STATES})
        row.update(outcome(counts))
        row["segments"] = c["segments"] if c else ""
        row["cost_vnd"] = c["cost_vnd"] if c else ""
        return row

    rows: list[dict[str, Any]] = []
    if dimension == "status":
        rows = [make(s, "", {s: n}, None) for s, n in data["by_status"].items()]
    elif dimension == "ward":
        rows = [make(d, w, counts, None) for d, wards in data["by_ward"].items()
                for w, counts in wards.items()]
    else:
        rows = [make(k, "", counts, cost.get(k) if cost is not None else None)
                for k, counts in data[f"by_{dimension}"].items()]
    rows.append(make(total_label, "", data["by_status"],
                     {"segments": data["segments"], "cost_vnd": data["cost_vnd"]}
                     if cost is not None else None))
    return rows


#: Columns of :func:`breakdown_rows` rows, in file order.
ROW_COLUMNS = ("key", "subkey", *states.ALL_STATES, "deliveries", "attempted", "failures",
               "awaiting", "not_sent", "delivery_rate", "segments", "cost_vnd")
#: Headline figures, in order, for the summary sheet and table.
SUMMARY_KEYS = ("campaign", "name", "source", "text_sha256", "since", "until", "generated_at",
                "recipients", "reached", "not_reached", "reach_rate", "deliveries", "attempted",
                "delivered", "failures", "awaiting", "not_sent", "delivery_rate", "sent",
                "segments", "cost_vnd", "first_send", "last_send")
REASON_COLUMNS = ("status", "gateway", "error_code", "error_reason", "count")


#: The XLSX sheet of each breakdown (msgids: English keeps these names; a sheet name cannot
#: hold "/", so they are not the column terms).
SHEETS = {"summary": N_("summary"), "status": N_("by status"), "district": N_("by district"),
          "ward": N_("by ward"), "carrier": N_("by carrier"), "channel": N_("by channel"),
          "gateway": N_("by gateway"), "day": N_("by day"), "province": N_("by province"),
          "commune": N_("by commune"), "failure_reasons": N_("failure_reasons"),
          "carrier_broadcasts": N_("carrier_broadcasts")}
#: Column headings of the exports (CSV and XLSX), as msgids: in English the column names
#: themselves, in Vietnamese the Department's words (outreach/locale/vi).
EXPORT_HEADINGS = (N_("key"), N_("subkey"), N_("queued"), N_("sending"), N_("sent"), N_("delivered"),
           N_("undelivered"), N_("failed"), N_("skipped"), N_("opted_out"), N_("unknown"),
           N_("deliveries"), N_("attempted"), N_("failures"), N_("awaiting"), N_("not_sent"),
           N_("delivery_rate"), N_("segments"), N_("cost_vnd"), N_("campaign"), N_("name"),
           N_("source"), N_("text_sha256"), N_("since"), N_("until"), N_("generated_at"),
           N_("recipients"), N_("reached"), N_("not_reached"), N_("reach_rate"),
           N_("first_send"), N_("last_send"), N_("status"), N_("gateway"), N_("error_code"),
           N_("error_reason"), N_("count"), N_("figure"), N_("value"), N_("text"),
           N_("breakdown"), N_("total"), N_("area"), N_("subscribers_messaged"),
           N_("district"), N_("ward"), N_("carrier"), N_("channel"), N_("day"),
           N_("province"), N_("commune"), N_("description"))


def sheet_title(code: str) -> str:
    """The XLSX sheet of ``code``: its translation, or (English, no translation) the code
    itself (``summary``, ``district``, ``failure_reasons``...)."""
    text = _(SHEETS[code])
    return code if text == SHEETS[code] else text


def heading(code: str) -> str:
    """The export heading of column ``code`` in the interface language."""
    return _(code)


def headings(codes: Sequence[str]) -> list[str]:
    """:func:`heading` of each code, in order."""
    return [heading(c) for c in codes]


def shown_rows(data: Mapping[str, Any], dimension: str) -> list[dict[str, Any]]:
    """:func:`breakdown_rows` for a file a person reads (CSV, XLSX): the total row labelled in
    the interface language (``TOTAL``, vi ``TỔNG CỘNG``) and, for ``status``, the states in
    words, as the console table shows them; the JSON keeps the codes."""
    rows = breakdown_rows(data, dimension, total_label=_("TOTAL"))
    if dimension == "status":
        for row in rows[:-1]:
            row["key"] = _(row["key"])
    return rows


def to_csv(data: Mapping[str, Any], breakdowns: Sequence[str] = ("district",)) -> str:
    """The report as CSV text.

    One breakdown (default ``district``) gives a flat table: the key column(s) (``district``;
    ``district,ward`` for ``ward``), one column per state, ``total``, the outcome groups,
    ``delivery_rate``, ``segments``, ``cost_vnd``; the last row is ``TOTAL``. ``reasons`` gives
    the failure reasons (:data:`REASON_COLUMNS`). Several breakdowns give one long table:
    ``breakdown`` + :data:`ROW_COLUMNS`, the failure reasons as ``breakdown=failure_reason``
    rows (``key`` the gateway, ``subkey`` ``error_code: error_reason``, the count in its state's
    column).
    """
    import io

    from outreach import safeio

    buf = io.StringIO()
    w = safeio.csv_writer(buf, lineterminator="\n")  # district, ward, reasons come from data
    if len(breakdowns) == 1 and breakdowns[0] == "reasons":
        w.writerow(headings(REASON_COLUMNS))
        for r in data["failure_reasons"]:
            w.writerow([_cell(r[c]) for c in REASON_COLUMNS])
        return buf.getvalue()
    values = ROW_COLUMNS[2:]
    if len(breakdowns) == 1:
        dim = breakdowns[0]
        keys = ["district", "ward"] if dim == "ward" else [dim]
        w.writerow(headings([*keys, *("total" if c == "deliveries" else c for c in values)]))
        for row in shown_rows(data, dim):
            w.writerow([row["key"], *([row["subkey"]] if dim == "ward" else []),
                        *(_cell(row[c]) for c in values)])
        return buf.getvalue()
    w.writerow(headings(["breakdown", *ROW_COLUMNS]))
    for dim in breakdowns:
        if dim == "reasons":
            continue
        for row in shown_rows(data, dim):
            w.writerow([dim, *(_cell(row[c]) for c in ROW_COLUMNS)])
    if "reasons" in breakdowns:
        for r in data["failure_reasons"]:
            row = {c: "" for c in ROW_COLUMNS}
            row.update({s: 0 for s in states.ALL_STATES})
            row.update(outcome({r["status"]: r["count"]}))
            row[r["status"]] = r["count"]
            row["key"] = r["gateway"] or ""
            row["subkey"] = ": ".join(x for x in (r["error_code"], r["error_reason"]) if x)
            w.writerow(["failure_reason", *(_cell(row[c]) for c in ROW_COLUMNS)])
    return buf.getvalue()


def _cell(v: Any) -> Any:
    return "" if v is None else v


#: Summary figures that are times (ISO 8601 in the data; Excel times in the workbook).
_TIME_KEYS = frozenset({"since", "until", "generated_at", "first_send", "last_send"})
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def write_xlsx(data: Mapping[str, Any], path: str | Any) -> None:
    """An Excel workbook: sheet ``summary`` (figure, value), one sheet per breakdown of
    :data:`DIMENSIONS` (columns :data:`ROW_COLUMNS`, total last) and ``failure_reasons``
    (:data:`REASON_COLUMNS`, then ``description``: the reason in the interface language);
    ``carrier_broadcasts`` when operators were asked (carrier, day or
    area, subscribers they reported). Rates are numbers formatted as percentages, cost in VND.

    Every text cell is a string cell, never a formula (:func:`outreach.safeio.xlsx_append`); a
    path is written 0600 (:func:`outreach.safeio.open_private`), a file object as given."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from outreach import safeio

    wb = Workbook()
    ws = wb.active
    ws.title = sheet_title("summary")
    safeio.xlsx_append(ws, headings(["figure", "value"]))
    for k in SUMMARY_KEYS:
        safeio.xlsx_append(ws, [heading(k), data.get(k)])
        if k.endswith("rate"):
            ws.cell(ws.max_row, 2).number_format = "0.00%"
        elif k in _TIME_KEYS and data.get(k):
            # a time Excel knows, in Vietnam's time, shown as 08:00 30/07/2024
            from outreach.clock import VN_TZ

            moment = dt.datetime.fromisoformat(data[k]).astimezone(VN_TZ)
            ws.cell(ws.max_row, 2).value = moment.replace(tzinfo=None, microsecond=0)
            ws.cell(ws.max_row, 2).number_format = "HH:MM DD/MM/YYYY"
    safeio.xlsx_append(ws, [heading("text"), data.get("text")])
    ws.column_dimensions["A"].width = 16
    ws.column_dimensions["B"].width = 70
    for dim in DIMENSIONS:
        sh = wb.create_sheet(sheet_title(dim))
        safeio.xlsx_append(sh, headings(ROW_COLUMNS))
        rate_col = ROW_COLUMNS.index("delivery_rate") + 1
        for row in shown_rows(data, dim):
            safeio.xlsx_append(sh, [_cell(row[c]) for c in ROW_COLUMNS])
            sh.cell(sh.max_row, rate_col).number_format = "0.00%"
            if dim == "day" and _DAY.fullmatch(str(row["key"])):
                sh.cell(sh.max_row, 1).value = dt.date.fromisoformat(row["key"])
                sh.cell(sh.max_row, 1).number_format = "DD/MM/YYYY"
        for cell in sh[sh.max_row]:
            cell.font = Font(bold=True)
        sh.column_dimensions["A"].width = 22
        sh.column_dimensions["B"].width = 18
        sh.freeze_panes = "C2"
    from outreach.sending.reasons import describe

    sh = wb.create_sheet(sheet_title("failure_reasons"))
    # the codes as in the JSON and CSV, then what the operator reads: the reason in words
    safeio.xlsx_append(sh, headings([*REASON_COLUMNS, "description"]))
    for r in data["failure_reasons"]:
        safeio.xlsx_append(sh, [_cell(r[c]) for c in REASON_COLUMNS]
                           + [describe(r["error_reason"])])
    sh.column_dimensions["F"].width = 60
    cb = data.get("carrier_broadcasts") or {}
    if cb.get("carriers"):
        # the operators' own counts, in their own sheet: never summed with the figures above
        sh = wb.create_sheet(sheet_title("carrier_broadcasts"))
        safeio.xlsx_append(sh, headings(["carrier", "day", "area", "subscribers_messaged"]))
        for day, per in cb["by_day"].items():
            for carrier, n in sorted(per.items()):
                safeio.xlsx_append(sh, [carrier, day, "", n])
        for area, per in cb["by_area"].items():
            for carrier, n in sorted(per.items()):
                safeio.xlsx_append(sh, [carrier, "", area, n])
        for carrier, v in cb["carriers"].items():
            safeio.xlsx_append(sh, [carrier, _("TOTAL"), v["status"], v["sent"]])
        safeio.xlsx_append(sh, ["note", cb["note"]])
    for sheet in wb.worksheets:
        for cell in sheet[1]:
            cell.font = Font(bold=True)
    if isinstance(path, (str, os.PathLike)):
        with safeio.open_private(path, "wb") as fh:
            wb.save(fh)
    else:
        wb.save(path)


def explain_sql(conn: Connection, campaign_id: str) -> str:
    """The SQL of the main scan with the campaign inlined (for ``EXPLAIN QUERY PLAN``)."""
    cols = (Delivery.district, Delivery.ward, Delivery.carrier, Delivery.channel, Delivery.gateway,
            Delivery.status)
    stmt = (select(*cols, func.count(), func.sum(Delivery.segments), func.sum(Delivery.cost_vnd))
            .where(Delivery.campaign_id == campaign_id, sql_text(SETTLED_SQL)).group_by(*cols))
    return str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))


def import_totals(conn: Connection, list_name: str) -> dict[str, int]:
    """The counts of the latest import of a list (rows_read = imported + rejected + duplicates)."""
    row = conn.execute(select(Import.rows_read, Import.imported, Import.rejected, Import.duplicates)
                       .where(Import.list_name == list_name).order_by(Import.id.desc())).first()
    if row is None:
        return {}
    return dict(row._mapping)

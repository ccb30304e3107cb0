"""The follow-up of each carrier request in the database: status moves, reported figures, summaries; every change audited."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from outreach.reporting import audit
from outreach.carriers import areas
from outreach.carriers.results import Figure
from outreach.clock import VN_TZ
from outreach.i18n import N_, _, day as _day, ngettext, vi_sorted_items
from outreach.ledger.models import CarrierRequest, CarrierResult

DRAFTED, REQUESTED, CONFIRMED, BROADCAST, RESULTS, DECLINED = (
    "drafted", "requested", "confirmed", "broadcast", "results", "declined")
#: Forward order of the follow-up; ``declined`` ends it (the operator refused).
ORDER = (DRAFTED, REQUESTED, CONFIRMED, BROADCAST, RESULTS)
STATUSES = (*ORDER, DECLINED)
#: Which date column each status sets.
DAY_COLUMN = {DRAFTED: "drafted_on", REQUESTED: "requested_on", CONFIRMED: "confirmed_on",
              BROADCAST: "broadcast_on", RESULTS: "results_on", DECLINED: "declined_on"}
_REQ = CarrierRequest.__table__
#: What a person reads for each status code (translated where shown, see :func:`status_label`).
STATUS_LABELS = {DRAFTED: N_("drafted"), REQUESTED: N_("requested"), CONFIRMED: N_("confirmed"),
                 BROADCAST: N_("broadcast"), RESULTS: N_("results"), DECLINED: N_("declined"),
                 "not drafted": N_("not drafted")}
STATUS_VI = {DRAFTED: "Đã soạn công văn", REQUESTED: "Đã gửi đề nghị", CONFIRMED: "Đã xác nhận",
             BROADCAST: "Đã nhắn tin", RESULTS: "Đã báo cáo kết quả", DECLINED: "Từ chối"}


def status_label(code: str | None) -> str:
    """The status ``code`` as a person reads it in the current language (the code itself when
    unknown); ``–`` for None."""
    if code is None:
        return "–"
    return _(STATUS_LABELS[code]) if code in STATUS_LABELS else code


class CarrierError(ValueError):
    """A follow-up step that cannot be taken (unknown carrier for this campaign, a move back)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ensure(conn: Connection, campaign_id: str, carriers: list[str], *, text_sha256: str,
           short_sha256: str | None, now: dt.datetime | None = None) -> None:
    """A request row (status ``drafted``) for each carrier that has none."""
    now = now or _now()
    have = set(conn.execute(select(CarrierRequest.carrier)
                            .where(CarrierRequest.campaign_id == campaign_id)).scalars())
    for c in carriers:
        if c not in have:
            conn.execute(insert(CarrierRequest).values(
                campaign_id=campaign_id, carrier=c, status=DRAFTED, text_sha256=text_sha256,
                short_sha256=short_sha256, created_at=now, updated_at=now))


def get(conn: Connection, campaign_id: str, carrier: str) -> Any:
    row = conn.execute(select(_REQ).where(CarrierRequest.campaign_id == campaign_id,
                                          CarrierRequest.carrier == carrier)).first()
    if row is None:
        raise CarrierError(_("campaign {campaign}: no request to {carrier} (write the letters "
                             "first: outreach carriers request {campaign})").format(
                                 campaign=campaign_id, carrier=carrier))
    return row


def record_letter(conn: Connection, campaign_id: str, carrier: str, *, number: str,
                  letter_date: dt.date, files: list[str], text_sha256: str,
                  short_sha256: str | None, operator: str | None = None) -> None:
    """Record that a letter was written (number, date, files, text hashes offered)."""
    today = dt.datetime.now(VN_TZ).date()
    req = get(conn, campaign_id, carrier)
    values: dict[str, Any] = dict(letter_number=number, letter_date=letter_date,
                                  text_sha256=text_sha256, short_sha256=short_sha256,
                                  updated_at=_now())
    if req.drafted_on is None:
        values["drafted_on"] = today
    conn.execute(update(CarrierRequest).where(CarrierRequest.id == req.id).values(**values))
    audit.record(conn, "carrier-letter", operator=operator, campaign_id=campaign_id,
                 text_sha256=text_sha256,
                 details={"carrier": carrier, "letter_number": number,
                          "letter_date": letter_date.isoformat(), "files": files,
                          "short_sha256": short_sha256})


def mark(conn: Connection, campaign_id: str, carrier: str, status: str, *, day: dt.date,
         note: str | None = None, number: str | None = None, by: str | None = None,
         operator: str | None = None) -> tuple[str, str]:
    """Move ``carrier``'s request to ``status`` on ``day`` (Vietnam date); returns (old, new).

    Moves go forward only (drafted → requested → confirmed → broadcast → results; a step may be
    skipped); ``declined`` is allowed from any state before results. Marking the current status
    again only updates its day and note. Raises CarrierError otherwise. Audited as
    ``carrier-status`` with the old and new status."""
    if status not in STATUSES:
        raise CarrierError(_("unknown status {status} (one of {known})").format(
            status=repr(status), known=", ".join(STATUSES)))
    req = get(conn, campaign_id, carrier)
    old = req.status
    if old == DECLINED and status != DECLINED:
        raise CarrierError(_("{carrier} declined on {day}: a new request needs a new "
                             "letter (outreach carriers request --carrier)").format(
                                 carrier=carrier, day=_day(req.declined_on)))
    if status == DECLINED and old == RESULTS:
        raise CarrierError(_("{carrier} has already reported results").format(carrier=carrier))
    if status != DECLINED and old != DECLINED and ORDER.index(status) < ORDER.index(old):
        raise CarrierError(_("{carrier} is already {status}: a status only moves forward "
                             "({order})").format(carrier=carrier, status=status_label(old),
                                                 order=" → ".join(status_label(x) for x in ORDER)))
    values: dict[str, Any] = {"status": status, DAY_COLUMN[status]: day, "updated_at": _now()}
    if note:
        values["note"] = note
    if number:
        values["letter_number"] = number
    if by:
        values["requested_by"] = by
    conn.execute(update(CarrierRequest).where(CarrierRequest.id == req.id).values(**values))
    audit.record(conn, "carrier-status", operator=operator, campaign_id=campaign_id,
                 details={"carrier": carrier, "from": old, "to": status, "day": day.isoformat(),
                          **({"note": note} if note else {}), **({"by": by} if by else {}),
                          **({"letter_number": number} if number else {})})
    return old, status


def store_results(conn: Connection, campaign_id: str, carrier: str, figures: list[Figure], *,
                  source: str, operator: str | None = None, received: dt.date | None = None,
                  now: dt.datetime | None = None) -> dict[str, int]:
    """Store an operator's figures; a (day, area) already stored for that operator is replaced
    (a corrected report). Moves the request to ``results`` on ``received`` (default today,
    Asia/Ho_Chi_Minh) and audits ``carrier-result``.
    Returns {"added", "replaced", "sent"} (sent: subscribers in these figures)."""
    now = now or _now()
    req = get(conn, campaign_id, carrier)
    if req.status == DECLINED:
        raise CarrierError(_("{carrier} declined the request: no results to import").format(
            carrier=carrier))
    added = replaced = 0
    for f in figures:
        code = f.area.code if f.area else ""
        gone = conn.execute(delete(CarrierResult).where(
            CarrierResult.campaign_id == campaign_id, CarrierResult.carrier == carrier,
            CarrierResult.day == f.day, CarrierResult.area_code == code)).rowcount
        replaced += 1 if gone else 0
        added += 0 if gone else 1
        conn.execute(insert(CarrierResult).values(
            campaign_id=campaign_id, carrier=carrier, day=f.day, area_code=code,
            area_name=f.area.name if f.area else "", sent=f.sent, delivered=f.delivered,
            source=f.source[:255], recorded_at=now))
    total = sum(f.sent for f in figures)
    today = received or now.astimezone(VN_TZ).date()
    conn.execute(update(CarrierRequest).where(CarrierRequest.id == req.id).values(
        status=RESULTS, results_on=today, updated_at=now))
    audit.record(conn, "carrier-result", operator=operator, campaign_id=campaign_id,
                 details={"carrier": carrier, "source": source, "rows": len(figures),
                          "added": added, "replaced": replaced, "sent": total,
                          "from": req.status, "received": today.isoformat()})
    return {"added": added, "replaced": replaced, "sent": total}


def status(conn: Connection, campaign_id: str, plan: Any, today: dt.date) -> list[dict[str, Any]]:
    """One dict per carrier of the plan, in the plan's order: ``carrier``, ``status``,
    ``letter_number``, ``letter_date``, the day of each step (ISO or None), ``sent``
    (subscribers reported), ``flags`` (list of warnings: results missing with the report
    deadline ``plan.warn_days`` days or less away, confirmation missing after ``reply_by``,
    results overdue after ``results_by``)."""
    reqs = {r.carrier: r for r in conn.execute(
        select(_REQ).where(CarrierRequest.campaign_id == campaign_id))}
    sent: dict[str, int] = defaultdict(int)
    for carrier, n in conn.execute(select(CarrierResult.carrier, CarrierResult.sent)
                                   .where(CarrierResult.campaign_id == campaign_id)):
        sent[carrier] += n
    out = []
    days_left = (plan.report_deadline - today).days
    for c in dict.fromkeys([*plan.operators, *reqs]):
        r = reqs.get(c)
        st = r.status if r else None
        flags = []
        missing = False
        if st not in (RESULTS, DECLINED):
            if st in (None, DRAFTED) and today >= plan.start_date:
                flags.append(_("not requested and the broadcast has started"))
            elif st == REQUESTED and today > plan.reply_by:
                flags.append(_("no confirmation (due {day})").format(day=_day(plan.reply_by)))
            if today > plan.results_by:
                flags.append(_("results overdue (due {day})").format(day=_day(plan.results_by)))
            if days_left <= plan.warn_days:
                missing = True
                when = (_("passed") if days_left < 0 else _("today") if days_left == 0
                        else ngettext("in {n} day", "in {n} days", days_left).format(n=days_left))
                flags.append(_("RESULTS MISSING: the city's report is due {day} ({when})").format(
                    day=_day(plan.report_deadline), when=when))
        out.append({
            "carrier": c, "status": st or "not drafted", "in_plan": c in plan.operators,
            "letter_number": r.letter_number if r else None,
            "letter_date": _iso(r.letter_date) if r else None,
            **{col: _iso(getattr(r, col)) if r else None for col in DAY_COLUMN.values()},
            "requested_by": r.requested_by if r else None, "note": r.note if r else None,
            "sent": sent.get(c, 0), "flags": flags, "results_missing": missing})
    return out


def _iso(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


def summary(conn: Connection, campaign_id: str) -> dict[str, Any]:
    """The carriers' reported figures for the reports, JSON-ready.

    Keys: ``note`` (what the figures are), ``sent`` (subscribers messaged, all carriers),
    ``carriers``: carrier -> {"status", "letter_number", "letter_date", "requested_on",
    "results_on", "sent", "delivered" (None unless every figure gave it)}; ``by_day``:
    ``YYYY-MM-DD`` -> carrier -> sent; ``by_area``: area -> carrier -> sent, the area as
    ``"name (code)"`` or ``"(không rõ)"`` for figures without an area. Subscribers are counted by
    each operator: not people, not receipts, never part of ``reached``."""
    reqs = list(conn.execute(select(_REQ).where(
        CarrierRequest.campaign_id == campaign_id).order_by(CarrierRequest.id)))
    rows = conn.execute(select(CarrierResult.carrier, CarrierResult.day, CarrierResult.area_code,
                               CarrierResult.area_name, CarrierResult.sent,
                               CarrierResult.delivered)
                        .where(CarrierResult.campaign_id == campaign_id)).all()
    carriers: dict[str, dict[str, Any]] = {}
    for r in reqs:
        carriers[r.carrier] = {"status": r.status, "letter_number": r.letter_number,
                               "letter_date": _iso(r.letter_date),
                               "requested_on": _iso(r.requested_on),
                               "results_on": _iso(r.results_on), "sent": 0, "delivered": 0}
    by_day: dict[str, dict[str, int]] = {}
    by_area: dict[str, dict[str, int]] = {}
    partial: set[str] = set()
    for carrier, day, code, name, n, delivered in rows:
        c = carriers.setdefault(carrier, {"status": RESULTS, "letter_number": None,
                                          "letter_date": None, "requested_on": None,
                                          "results_on": None, "sent": 0, "delivered": 0})
        c["sent"] += n
        if delivered is None:
            partial.add(carrier)
        else:
            c["delivered"] += delivered
        d = by_day.setdefault(day.isoformat(), {})
        d[carrier] = d.get(carrier, 0) + n
        key = f"{name} ({code})" if code else "(không rõ)"
        a = by_area.setdefault(key, {})
        a[carrier] = a.get(carrier, 0) + n
    for name, c in carriers.items():
        if name in partial or not c["sent"]:
            c["delivered"] = None
    return {
        "note": "subscribers messaged as reported by each mobile operator: counts, not "
                "per-person receipts; not included in recipients or reached",
        "sent": sum(c["sent"] for c in carriers.values()),
        "carriers": carriers,
        "by_day": dict(sorted(by_day.items())),
        "by_area": dict(vi_sorted_items(by_area, last="(không rõ)")),  # Vietnamese order
    }


def area_scopes(plan: Any) -> list[areas.Area]:
    return [areas.lookup(code, plan.start_date) for code in plan.area]

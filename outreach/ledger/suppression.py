"""The opt-out (suppression) list: applied when a run is created and again just before each send.

An entry is a number (E.164) or a Zalo user id (digits, no ``+``) with a channel scope:
``channel`` None stops every channel, ``"zalo"`` only Zalo (a Zalo unfollow, issue #20). One
entry per address: a wider opt-out later widens the scope (``zalo`` → every channel), never
the reverse. Deliveries match on their ``address`` and ``channel``
(:func:`blocks_sql`, used by the claim in :mod:`outreach.ledger.states`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from typing import Any

from sqlalchemy import Connection, delete, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite

from outreach import i18n
from outreach.i18n import N_, _, label
from outreach.reporting import audit
from outreach.ledger.models import SUPPRESSED_SQL, Suppression


def add(conn: Connection, numbers: Iterable[str], *, reason: str, source: str,
        operator: str | None = None, now: dt.datetime | None = None, log: bool = True,
        action: str = "optout-add", channel: str | None = None, evidence: str | None = None,
        inbound_id: int | None = None, reasons: Mapping[str, str] | None = None) -> int:
    """Suppress E.164 numbers (or Zalo user ids) on ``channel`` (None: every channel); returns
    how many were new. Already suppressed numbers keep their first reason and source; an entry
    limited to one channel becomes an every-channel one when ``channel`` is None or the other
    channel (SMS and Zalo are then both stopped; its reason, source and evidence become this
    one's). ``reasons`` gives a number its own reason (an opt-out file's reason column) instead
    of ``reason``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    reasons = reasons or {}
    rows = [{"e164": n, "reason": reasons.get(n) or reason, "source": source, "created_at": now,
             "channel": channel, "evidence": evidence, "inbound_id": inbound_id}
            for n in dict.fromkeys(numbers)]
    if not rows:
        return 0
    before = count(conn)
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(Suppression)
    conn.execute(ins.on_conflict_do_nothing(), rows)
    added = count(conn) - before
    nums = [r["e164"] for r in rows]
    for i in range(0, len(nums), 900):
        # widen: an entry for another single channel now stops both, i.e. every channel
        narrower = (Suppression.channel.is_not(None) if channel is None
                    else Suppression.channel.is_not(None) & (Suppression.channel != channel))
        conn.execute(update(Suppression).where(Suppression.e164.in_(nums[i:i + 900]), narrower)
                     .values(channel=None, reason=reason, source=source, evidence=evidence,
                             inbound_id=inbound_id, created_at=now))
    if log:
        audit.record(conn, action, operator=operator, now=now,
                     details={"numbers": len(rows), "added": added, "reason": reason,
                              "source": source})
    return added


def remove(conn: Connection, numbers: Iterable[str], *, operator: str | None = None,
           now: dt.datetime | None = None) -> int:
    nums = list(dict.fromkeys(numbers))
    n = conn.execute(delete(Suppression).where(Suppression.e164.in_(nums))).rowcount
    audit.record(conn, "optout-remove", operator=operator, now=now,
                 details={"numbers": len(nums), "removed": n})
    return n


def applies_to(channel: str | None) -> Any:
    """The condition "this entry stops ``channel``": every-channel entries and that channel's
    (``channel`` None: any entry at all)."""
    if channel is None:
        return true()
    return or_(Suppression.channel.is_(None), Suppression.channel == channel)


#: The claim's test in SQL over a ``deliveries`` row (:data:`outreach.ledger.models.SUPPRESSED_SQL`).
BLOCKS_SQL = SUPPRESSED_SQL


def is_suppressed(conn: Connection, e164: str, channel: str | None = None) -> bool:
    """True when ``e164`` (a number or Zalo user id) may not receive on ``channel`` (None: is
    on the list for any channel)."""
    return conn.execute(select(Suppression.e164).where(
        Suppression.e164 == e164, applies_to(channel))).first() is not None


def suppressed_among(conn: Connection, numbers: Iterable[str],
                     channel: str | None = None) -> set[str]:
    """The numbers among ``numbers`` that may not receive on ``channel`` (None: on the list
    for any channel)."""
    nums = list(numbers)
    out: set[str] = set()
    for i in range(0, len(nums), 900):
        out.update(conn.execute(select(Suppression.e164).where(
            Suppression.e164.in_(nums[i:i + 900]), applies_to(channel))).scalars())
    return out


def count(conn: Connection) -> int:
    from sqlalchemy import func

    return conn.execute(select(func.count()).select_from(Suppression)).scalar_one()


def all_entries(conn: Connection) -> list[Suppression]:
    from sqlalchemy.orm import Session

    with Session(bind=conn) as s:
        return list(s.scalars(select(Suppression).order_by(Suppression.created_at)))


#: The reasons the program stores for an opt-out (``optout|<code>``: translated in Vietnamese,
#: the code itself in English); a reason typed by an operator or read from a file is shown as
#: it is.
REASON_LABELS = {
    "citizen-request": N_("optout|citizen-request"),
    "reply-keyword": N_("optout|reply-keyword"),
    "zalo-unfollow": N_("optout|zalo-unfollow"),
    "provider-opt-out": N_("optout|provider-opt-out"),
}


def reason_label(reason: str | None) -> str:
    """An opt-out's stored reason as the console shows it (:data:`REASON_LABELS`)."""
    key = REASON_LABELS.get(reason or "")
    return label(key) if key else (reason or "")


def source_label(source: str | None) -> str:
    """An opt-out's stored source as the console shows it: ``operator`` and ``reply:<gateway>``
    in the interface language (English: as stored), a file name as it is."""
    if not source or i18n.current() == "en":
        return source or ""
    if source == "operator":
        return _("entered by an operator")
    kind, sep, gateway = source.partition(":")
    if sep and kind == "reply":
        return _("citizen's reply through {gateway}").format(gateway=gateway)
    if sep and kind == "gateway":
        return _("reported by the gateway {gateway}").format(gateway=gateway)
    return source

"""Reconciliation: deliveries whose sender died, and the operator's decisions on ``unknown`` ones.

Nothing here needs a sending engine: :func:`recover` asks the gateways about orphaned rows
(``sending`` rows whose holder is gone, see :mod:`outreach.sending.leases`) and every ``unknown`` one;
found → ``sent``/``delivered``, certainly never received → back to ``queued``, cannot be told →
stays ``unknown`` for the operator, who decides with :func:`resolve_unknown`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from sqlalchemy import Connection, select, update

from outreach.i18n import _
from outreach.ledger import runstates, states
from outreach.sending import leases, outbound
from outreach.input.campaigns import CampaignSpec
from outreach.clock import SYSTEM_CLOCK, VN_TZ, Clock
from outreach.ledger.db import Database
from outreach.gateways import base as gw
from outreach.ledger.models import Delivery

log = logging.getLogger(__name__)


class Reconciled(dict):  # type: ignore[type-arg]
    """Counts of one :func:`recover` (a dict: ``orphaned``, ``found``, ``requeued``,
    ``still_unknown``, ``deferred``), with :attr:`decide_after`: when the last deferred
    delivery can be decided (aware UTC), None when nothing was deferred."""

    decide_after: dt.datetime | None = None


#: Lookups in flight at once during reconciliation, and answers saved per transaction.
LOOKUP_THREADS = 32
SAVE_EVERY = 32


def recover(db: Database, spec: CampaignSpec, run_id: int, gateways: dict[str, gw.Gateway], *,
            clock: Clock = SYSTEM_CLOCK) -> Reconciled:
    """Settle the ``sending`` rows of dead holders, then reconcile every ``unknown`` one.

    A holder is dead as :func:`outreach.sending.leases.orphaned` says: on this host when its process no
    longer exists, elsewhere when its lease expired. Its rows whose request never started
    (no ``sending_at``: :func:`outreach.ledger.states.mark_started` commits it before a request
    leaves) go straight back to ``queued``; the others become ``unknown``. Each ``unknown`` row
    is looked up with its gateway (:meth:`Gateway.lookup`, up to :data:`LOOKUP_THREADS` at once,
    each answer committed as it arrives so a kill meanwhile loses none):

    * found → ``sent``/``delivered`` (its error reason cleared);
    * not found, and the gateway can confirm (:attr:`Gateway.can_confirm`) and its request
      started more than :attr:`Gateway.lookup_horizon_seconds` ago → ``queued`` (certainly
      never received: safe to send). Not found earlier proves nothing — the provider may
      still be creating it — so the row stays ``unknown`` and counts as ``deferred`` until
      :attr:`Reconciled.decide_after`;
    * cannot be told, but the gateway refuses a repeated request id
      (:attr:`Gateway.idempotent_resend`: the brandname aggregators) and the row was
      interrupted by a dead process before :meth:`Gateway.idempotent_until` → ``queued``: sent
      again under the same request id, the provider accepts it once or answers "duplicate";
    * cannot be told → stays ``unknown`` for the operator (``outreach deliveries resolve``).

    Safe with several workers recovering the same run at once: each decision is re-checked on
    the locked row before it is applied. Returns the counts (:class:`Reconciled`).
    """
    now = clock.now()
    out = Reconciled(orphaned=0, found=0, requeued=0, still_unknown=0, deferred=0)
    with db.engine.begin() as conn:
        cols = (Delivery.id, Delivery.lease_owner, Delivery.lease_expires_at, Delivery.sending_at)
        rows = conn.execute(select(*cols).where(Delivery.run_id == run_id,
                                                Delivery.status == states.SENDING)).all()
        dead = [r for r in rows if leases.orphaned(r.lease_owner, r.lease_expires_at, now)]
        if dead and conn.dialect.name == "postgresql":
            # decide again on the locked rows: a lease renewed or an outcome recorded since
            # the first read wins; rows locked by a living owner's record are skipped
            locked = conn.execute(select(*cols).where(Delivery.id.in_([r.id for r in dead]),
                                                      Delivery.status == states.SENDING)
                                  .order_by(Delivery.id).with_for_update(skip_locked=True)).all()
            dead = [r for r in locked if leases.orphaned(r.lease_owner, r.lease_expires_at, now)]
        never = [r.id for r in dead if r.sending_at is None]
        started = [r.id for r in dead if r.sending_at is not None]
        if never:
            states.apply(conn, [states.Change(i, states.QUEUED, backward="not-sent",
                                              detail="claimed by a sending process that stopped "
                                                     "before this request left") for i in never],
                         source="reconcile", now=now)
        if started:
            states.apply(conn, [states.Change(i, states.UNKNOWN, {"error_reason": "interrupted"},
                                              detail="the sending process stopped before "
                                                     "recording the outcome") for i in started],
                         source="reconcile", now=now)
        out["orphaned"] = len(dead)
        out["requeued"] = len(never)
        unknown = conn.execute(select(Delivery.id, Delivery.channel, Delivery.address,
                                      Delivery.body, Delivery.segments, Delivery.recipient_id,
                                      Delivery.carrier, Delivery.sending_at,
                                      Delivery.error_reason)
                               .where(Delivery.run_id == run_id,
                                      Delivery.status == states.UNKNOWN)
                               .order_by(Delivery.id)).all()
    if not unknown:
        return out
    parts: outbound.ChannelParts = {}
    asks = []
    for r in unknown:
        g = gateways.get(r.channel)
        if g is None:
            out["still_unknown"] += 1
        else:
            asks.append((r, g, outbound.message(spec, r._mapping, parts)))

    def ask(item: tuple[Any, gw.Gateway, gw.OutboundMessage]) -> Any:
        r, g, msg = item
        since = (r.sending_at or now) - dt.timedelta(minutes=5)
        try:
            return g.lookup(msg, since, clock.now() + dt.timedelta(minutes=5))
        except gw.GatewayError as exc:
            log.warning(_("reconciliation of delivery {id} failed: {error}").format(id=r.id, error=exc))
            return None

    pending: list[states.Change] = []
    last = time.monotonic()

    def save() -> None:
        nonlocal last
        for c in _apply_if_unknown(db, pending, clock.now()):
            out["requeued" if c.new_status == states.QUEUED else "found"] += 1
        pending.clear()
        last = time.monotonic()

    with ThreadPoolExecutor(max_workers=max(1, min(LOOKUP_THREADS, len(asks))),
                            thread_name_prefix="outreach-lookup") as pool:
        futures = {pool.submit(ask, item): item for item in asks}
        for fut in as_completed(futures):
            r, g, _msg = futures[fut]
            change = _decide(r, g, fut.result(), clock.now(), out)
            if change is not None:
                pending.append(change)
            # answers are saved as they come, a few at a time: a kill meanwhile loses at most
            # the last few, which the next reconciliation simply asks about again
            if len(pending) >= SAVE_EVERY or (pending and time.monotonic() - last > 0.2):
                save()
        if pending:
            save()
    return out


def _decide(r: Any, g: gw.Gateway, found: Any, now: dt.datetime,
            out: Reconciled) -> states.Change | None:
    """The change a lookup's answer allows for unknown row ``r``, or None (counted)."""
    if found is None or (found is False and not g.can_confirm):
        until = (g.idempotent_until(r.sending_at) if g.idempotent_resend and r.sending_at
                 and r.error_reason == "interrupted" else None)
        if until is not None and now < until:
            # the process died with this request in flight (or marked ahead); the provider
            # refuses the same request id twice until `until`, so sending it again is safe
            return states.Change(r.id, states.QUEUED, backward="not-sent",
                                 detail=f"sent again under the same request id: {g.name} "
                                        "refuses a second message with it until "
                                        f"{until.astimezone(VN_TZ):%H:%M} (Vietnam time)")
        out["still_unknown"] += 1
        return None
    if found is False:
        started = r.sending_at or now
        horizon = started + dt.timedelta(seconds=g.lookup_horizon_seconds)
        if now < horizon:
            out["deferred"] += 1
            if out.decide_after is None or horizon > out.decide_after:
                out.decide_after = horizon
            return None
        return states.Change(r.id, states.QUEUED, backward="not-sent",
                             detail=f"{g.name} confirms it never received this message "
                                    f"({g.lookup_horizon_seconds:g} s after its request)")
    return states.Change(r.id, found.status if found.status in
                         (states.SENT, states.DELIVERED, states.UNDELIVERED, states.FAILED)
                         else states.SENT,
                         {"provider_message_id": found.provider_message_id,
                          "provider_status": found.provider_status,
                          "error_code": found.error_code},
                         detail=f"reconciled with {g.name}")


def _apply_if_unknown(db: Database, changes: list[states.Change],
                      now: dt.datetime) -> list[states.Change]:
    """Apply the changes in one transaction to the rows still ``unknown`` (another worker may
    have reconciled, requeued and a third claimed one meanwhile); returns those applied."""
    with db.engine.begin() as conn:
        stmt = select(Delivery.id).where(Delivery.id.in_([c.delivery_id for c in changes]),
                                         Delivery.status == states.UNKNOWN)
        if conn.dialect.name == "postgresql":
            stmt = stmt.order_by(Delivery.id).with_for_update()
        still = set(conn.execute(stmt).scalars())
        todo = [c for c in changes if c.delivery_id in still]
        result = states.apply(conn, todo, source="reconcile", now=now)
        done = [c for c in todo if result.get(c.delivery_id)]
        # sent after all, or to be sent anew: "interrupted" (or a timeout) no longer
        # describes them
        for c in done:
            conn.execute(update(Delivery).where(Delivery.id == c.delivery_id).values(
                error_reason=None, error_code=c.fields.get("error_code")))
        found = [c for c in done if c.fields.get("provider_message_id")]
        if found:
            # receipts that arrived while the outcome was unknown wait for the provider id,
            # which is known now
            from outreach.receipts import writer as receipts

            receipts.apply_pending(conn, now=now, delivery_ids=[c.delivery_id for c in found],
                                   provider_ids=[c.fields["provider_message_id"] for c in found])
    return done


def resolve_unknown(conn: Connection, delivery_ids: list[int], *, action: str,
                    now: dt.datetime) -> dict[int, bool]:
    """The operator's explicit decision on ``unknown`` deliveries: ``resend`` (back to the queue),
    ``sent`` (treat as sent), ``skip``, or ``fallback`` (the outcome stays unknown, and the
    campaign's next channel may take over: :data:`outreach.sending.fallback.OPERATOR_FALLBACK`).
    Returns delivery id -> changed (False for a delivery that is not ``unknown``)."""
    if action == "fallback":
        from outreach.sending.fallback import OPERATOR_FALLBACK

        result = {}
        for i in delivery_ids:
            result[i] = conn.execute(update(Delivery).where(
                Delivery.id == i, Delivery.status == states.UNKNOWN).values(
                error_reason=OPERATOR_FALLBACK, updated_at=now)).rowcount == 1
        _reopen(conn, [i for i, ok in result.items() if ok], now,
                "the operator allowed the next channel for deliveries of unknown outcome")
        return result
    if action == "resend":
        changes = [states.Change(i, states.QUEUED, backward="operator",
                                 detail="operator chose to resend") for i in delivery_ids]
    elif action == "sent":
        changes = [states.Change(i, states.SENT, detail="operator marked as sent")
                   for i in delivery_ids]
    elif action == "skip":
        changes = [states.Change(i, states.SKIPPED, {"error_reason": "operator-skipped"},
                                 backward="operator", detail="operator chose not to resend")
                   for i in delivery_ids]
    else:
        raise ValueError(f"unknown action {action!r}")
    result = states.apply(conn, changes, source="operator", now=now)
    if action == "resend":
        _reopen(conn, [i for i, ok in result.items() if ok], now,
                "deliveries requeued by the operator")
    return result


def _reopen(conn: Connection, delivery_ids: list[int], now: dt.datetime, why: str) -> None:
    """A finished run of these deliveries is open again for ``campaign resume``."""
    if not delivery_ids:
        return
    run_ids = conn.execute(select(Delivery.run_id).where(
        Delivery.id.in_(delivery_ids)).distinct()).scalars().all()
    for run_id in run_ids:
        runstates.move(conn, run_id, runstates.PAUSED, why, now=now,
                       only_from=(runstates.COMPLETED,))


def stale_sending(conn: Connection, run_id: int, now: dt.datetime) -> int:
    """How many ``sending`` rows of the run have a dead owner (:func:`outreach.sending.leases.orphaned`)."""
    rows = conn.execute(select(Delivery.lease_owner, Delivery.lease_expires_at).where(
        Delivery.run_id == run_id, Delivery.status == states.SENDING)).all()
    return sum(1 for r in rows if leases.orphaned(r.lease_owner, r.lease_expires_at, now))


__all__ = ["recover", "Reconciled", "resolve_unknown", "stale_sending", "LOOKUP_THREADS"]

"""Channel fallback: a recipient not reached on one channel (Zalo) is tried on the next (SMS)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from outreach.ledger import runs, states, suppression
from outreach.input import text as textmod
from outreach.input.campaigns import CampaignSpec
from outreach.ledger.models import Campaign, Delivery, Recipient, Run

#: Failure reasons that mean "the gateway or account is broken", not "this recipient cannot be
#: reached here": no fallback (the run pauses and the delivery is retried after the operator
#: acts). Base reasons from outreach.gateways.base plus the Zalo stop codes (zalo_errors.json).
STOP_REASONS = frozenset({
    "stop", "authentication", "configuration", "no-token", "refresh-token-unusable",
    "refresh-token-rejected", "refresh-outcome-unknown", "refresh-interrupted",
    "token-store-failed", "no-refresher", "bad-endpoint",
    "out-of-balance", "oa-not-permitted", "app-misconfigured",
})

#: States after which the next channel is tried at once: the message certainly did not arrive.
_FAILED_STATES = (states.FAILED, states.UNDELIVERED)
#: States in which a message may still arrive: the next channel waits for
#: ``fallback_after_minutes`` after the send (``sent_at``, else ``sending_at``).
_WAITING_STATES = (states.SENT,)
#: The reason the operator gives an ``unknown`` delivery to let the next channel take over
#: (``outreach deliveries resolve ID --fallback``): its outcome stays unknown, and the person
#: may be charged twice if the first channel did deliver, which the operator accepted.
OPERATOR_FALLBACK = "operator-fallback"


@dataclass(frozen=True)
class _Step:
    channel: str
    next_channel: str
    after: dt.timedelta
    gateway: str | None
    next_gateway: str | None


def _steps(channels: Sequence[Mapping[str, Any]]) -> list[_Step]:
    out = []
    for cur, nxt in zip(channels, channels[1:]):
        out.append(_Step(channel=cur["channel"], next_channel=nxt["channel"],
                         after=dt.timedelta(minutes=int(cur.get("fallback_after_minutes") or 60)),
                         gateway=cur.get("gateway"), next_gateway=nxt.get("gateway")))
    return out


def _spec_channels(spec: CampaignSpec) -> list[dict[str, Any]]:
    return [{"channel": c.channel, "fallback_after_minutes": c.fallback_after_minutes,
             "gateway": c.gateway} for c in spec.channels]


def _stored_channels(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    """Channels of the run's campaign from the stored definition (``CampaignSpec.to_json``)."""
    row = conn.execute(select(Campaign.definition).join(Run, Run.campaign_id == Campaign.id)
                       .where(Run.id == run_id)).first()
    if row is None or not isinstance(row[0], dict):
        return []
    chans = row[0].get("channels") or []
    return [c for c in chans if isinstance(c, dict) and c.get("channel")]


def _eligible(step: _Step, now: dt.datetime) -> Any:
    """SQL condition: a delivery on ``step.channel`` that the next channel should take over."""
    cutoff = now - step.after
    sent_time = func.coalesce(Delivery.sent_at, Delivery.sending_at, Delivery.queued_at)
    failed = and_(Delivery.status.in_(_FAILED_STATES),
                  or_(Delivery.error_reason.is_(None), Delivery.error_reason.not_in(STOP_REASONS)))
    waited = and_(Delivery.status.in_(_WAITING_STATES), sent_time <= cutoff)
    # an unknown outcome may well have been delivered (Zalo accepted it, then the answer was
    # lost): never a second message unless reconciled as not received or the operator says so
    allowed = and_(Delivery.status == states.UNKNOWN, Delivery.error_reason == OPERATOR_FALLBACK)
    return and_(Delivery.channel == step.channel, or_(failed, waited, allowed))


def plan_fallbacks(conn: Connection, spec: CampaignSpec, run_id: int, now: dt.datetime,
                   gateway_names: Mapping[str, str] | None = None) -> int:
    """Create next-channel deliveries for recipients not reached on a channel; returns how many.

    For each channel i that is not the last in ``spec.channels``, a delivery of run ``run_id``
    on channel i qualifies when it

    - ended ``failed`` or ``undelivered`` with a reason that is not a stop reason
      (:data:`STOP_REASONS`: the account is broken, not the recipient), e.g. Zalo -118
      ``no-zalo-account``; or
    - is ``sent`` and no delivery receipt came within the channel's
      ``fallback_after_minutes`` since it was sent; or
    - is ``unknown`` and the operator allowed the fallback (:data:`OPERATOR_FALLBACK`, set by
      ``outreach deliveries resolve --fallback``). An ``unknown`` delivery otherwise never
      falls back: the provider may have accepted it, and nobody is charged twice.

    Each creates, in the same run, a ``queued`` delivery on channel i+1 for the same campaign,
    recipient and ``dedupe_key``, addressed to the recipient's E.164 number; ``gateway`` is
    ``gateway_names[next channel]`` (else the campaign's channel gateway); segments, encoding
    and ``cost_vnd`` (VND: segments × ``spec.price_per_segment``) follow :mod:`outreach.input.text`
    like :func:`outreach.ledger.runs.create_run` (a ZNS message counts 1). A suppressed number gets an
    ``opted_out`` row, a missing personalisation field a ``skipped`` row. The unique key
    (campaign, recipient, channel, dedupe_key) with ``INSERT … ON CONFLICT DO NOTHING`` makes
    this idempotent: calling it again, or for a recipient who already had a delivery on that
    channel, creates nothing. Runs in the caller's transaction.
    """
    names = dict(gateway_names or {})
    created = 0
    for step in _steps(_spec_channels(spec)):
        gateway = names.get(step.next_channel) or step.next_gateway
        if not gateway:
            raise ValueError(f"no gateway named for channel {step.next_channel!r} "
                             "(pass gateway_names)")
        nxt = aliased(Delivery)
        already = select(nxt.id).where(nxt.campaign_id == Delivery.campaign_id,
                                       nxt.recipient_id == Delivery.recipient_id,
                                       nxt.dedupe_key == Delivery.dedupe_key,
                                       nxt.channel == step.next_channel)
        rows = conn.execute(
            select(Delivery.campaign_id, Delivery.recipient_id, Delivery.dedupe_key,
                   Recipient.e164, Recipient.name, Recipient.district, Recipient.ward,
                   Recipient.carrier)
            .join(Recipient, Recipient.id == Delivery.recipient_id)
            .where(Delivery.run_id == run_id, _eligible(step, now), ~already.exists())
            .order_by(Delivery.id)).all()
        if not rows:
            continue
        channel = spec.channel(step.next_channel)
        unacc = spec.unaccented or channel.unaccented
        gsafe = spec.gsm_safe or channel.gsm_safe
        personalised = runs.is_personalised(spec, channel)
        suppressed = suppression.suppressed_among(conn, [r.e164 for r in rows],
                                                 channel=step.next_channel)
        ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(Delivery)
        for r in rows:
            status, reason, body, tdata, text = states.QUEUED, None, None, None, spec.text
            if personalised:
                # the same personalisation as the first channel (ZNS template data included)
                try:
                    body, tdata = runs.personalise(spec, channel, runs.recipient_fields(r))
                    text = body if body is not None else spec.text
                except textmod.MissingFieldError as exc:
                    status, reason = states.SKIPPED, f"missing-field:{exc.field}"
            analysis = textmod.analyse(text, unaccented=unacc, gsm_safe=gsafe)
            if body is not None:
                body = analysis.text
            if r.e164 in suppressed:
                status, reason = states.OPTED_OUT, "suppressed"
            is_sms = step.next_channel == "sms"
            segments = analysis.segments if is_sms else 1
            cost = textmod.estimate_cost(segments, spec.price_per_segment(step.next_channel,
                                                                          r.carrier))
            res = conn.execute(ins.values(
                campaign_id=r.campaign_id, run_id=run_id, recipient_id=r.recipient_id,
                dedupe_key=r.dedupe_key, channel=step.next_channel, gateway=gateway,
                address=r.e164, district=r.district, ward=r.ward, carrier=r.carrier,
                status=status, body=body, encoding=analysis.encoding if is_sms else None,
                template_data=json.dumps(tdata, ensure_ascii=False) if tdata is not None else None,
                segments=segments, cost_vnd=cost, error_reason=reason, attempts=0,
                queued_at=now, updated_at=now,
                final_at=now if status in states.FINAL_STATES else None,
            ).on_conflict_do_nothing())
            created += max(res.rowcount, 0)
    return created


def cancel_superseded(conn: Connection, run_id: int, now: dt.datetime) -> int:
    """Skip queued deliveries of run ``run_id`` whose recipient was already reached on another
    channel of the same campaign and dedupe key; returns how many were skipped.

    The case: the SMS fallback was created because the Zalo receipt was late, then Zalo's
    ``user_received_message`` arrived before the SMS left. The SMS moves ``queued → skipped``
    with reason ``reached-by-zalo`` (``reached-by-<channel>``) through :func:`states.apply`,
    so nobody is charged twice. A delivery already ``sending`` is not touched (too late).
    """
    other = aliased(Delivery)
    rows = conn.execute(
        select(Delivery.id, func.min(other.channel))
        .join(other, and_(other.campaign_id == Delivery.campaign_id,
                          other.recipient_id == Delivery.recipient_id,
                          other.dedupe_key == Delivery.dedupe_key,
                          other.channel != Delivery.channel,
                          other.status == states.DELIVERED))
        .where(Delivery.run_id == run_id, Delivery.status == states.QUEUED)
        .group_by(Delivery.id).order_by(Delivery.id)).all()
    if not rows:
        return 0
    changes = [states.Change(did, states.SKIPPED, {"error_reason": f"reached-by-{channel}"},
                             detail=f"recipient already reached by {channel}")
               for did, channel in rows]
    applied = states.apply(conn, changes, source="dispatcher", now=now)
    return sum(1 for ok in applied.values() if ok)


def pending_fallback(conn: Connection, run_id: int, now: dt.datetime,
                     spec: CampaignSpec | None = None) -> dt.datetime | None:
    """The earliest instant (aware UTC) at which a delivery of run ``run_id`` that is still
    unconfirmed (``sending`` or ``sent``) on a channel that is not the campaign's
    last becomes eligible for fallback: its send time + ``fallback_after_minutes``. None when
    nothing is waiting. May be ≤ ``now`` (eligible already: call :func:`plan_fallbacks`).

    ``spec`` gives the channel order; without it the campaign definition stored with the run's
    campaign (``campaigns.definition``) is read. Recipients who already have a delivery on the
    next channel are not waited for.
    """
    channels = _spec_channels(spec) if spec is not None else _stored_channels(conn, run_id)
    earliest: dt.datetime | None = None
    for step in _steps(channels):
        nxt = aliased(Delivery)
        already = select(nxt.id).where(nxt.campaign_id == Delivery.campaign_id,
                                       nxt.recipient_id == Delivery.recipient_id,
                                       nxt.dedupe_key == Delivery.dedupe_key,
                                       nxt.channel == step.next_channel)
        sent_time = func.coalesce(Delivery.sent_at, Delivery.sending_at, Delivery.queued_at)
        first = conn.execute(
            select(func.min(sent_time)).where(
                Delivery.run_id == run_id, Delivery.channel == step.channel,
                Delivery.status.in_((states.SENDING, *_WAITING_STATES)), ~already.exists())
        ).scalar()
        if first is None:
            continue
        first = _aware(first)
        due = first + step.after
        if earliest is None or due < earliest:
            earliest = due
    return earliest


def _aware(value: Any) -> dt.datetime:
    # func.min over a TypeDecorator column comes back raw on SQLite (a naive string/datetime)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value

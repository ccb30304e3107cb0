"""What each provider will refuse, found before any send request.

Every gateway states its provider's published limits as data next to its adapter (Twilio
``twilio_limits.json``: 1,600 characters, 10 segments advised; SMPP ``smpp_limits.json`` and
``OUTREACH_SMPP_MAX_SEGMENTS``; Zalo ZNS: each template's parameters from Zalo's template
information API, cached; Zalo OA: 2,000 characters) and answers
:meth:`outreach.gateways.base.Gateway.refusals` for one message. This module asks it:

* :func:`check_campaign`, for the campaign's own content (``campaign check``, ``launch
  --dry-run`` and every launch, before the lists are read): a refusal that holds for every
  recipient raises :class:`outreach.input.campaigns.CampaignError` naming the campaign field,
  its length and the limit, and nothing is sent;
* :func:`recipient_checker`, for what personalisation makes of it per recipient
  (``{{name}}`` in the text or in a ZNS ``template_fields`` value): a message the provider
  would refuse becomes a ``skipped`` delivery with the reason (:func:`outreach.ledger.runs.create_run`),
  never a send.

The brandname customer-care template (``brandname_template``) is checked the same way on the
personalised text (:func:`outreach.input.text.brandname_template_mismatch`); the campaign's
own text is checked when the campaign file is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from outreach.i18n import _
from outreach.gateways import base as gw
from outreach.input import text as textmod
from outreach.input.campaigns import CampaignError, CampaignSpec, Channel
from outreach.sending import outbound

log = logging.getLogger(__name__)

#: (channel, personalised body, personalised ZNS template data or None) -> reason or None
RecipientChecker = Callable[[str, str, "Mapping[str, str] | None"], "str | None"]


@dataclass
class CampaignLimits:
    """What :func:`check_campaign` found: ``advice`` lines (recommendations, nothing refused)."""

    advice: list[str] = field(default_factory=list)


def _strip_placeholders(value: str) -> str:
    """The literal part of a personalised value: every ``{{field}}`` removed (what every
    recipient's message holds at least)."""
    return textmod._PLACEHOLDER_RE.sub("", value)


def field_name(spec: CampaignSpec, index: int, part: str) -> str:
    """The campaign field a refused ``part`` comes from: ``body`` -> ``message.text``,
    ``template_data.X`` -> ``channels[i].template_fields.X``, ``template_id`` ->
    ``channels[i].template_id``."""
    if part.startswith("template_data."):
        return f"channels[{index}].template_fields.{part.split('.', 1)[1]}"
    if part == "template_id":
        return f"channels[{index}].template_id"
    return "message.text"


def _probe(spec: CampaignSpec, ch: Channel) -> gw.OutboundMessage:
    body, sender, template_id, data = outbound.channel_parts(spec, ch.channel)
    return gw.OutboundMessage(
        delivery_id=0, campaign_id=spec.id, channel=ch.channel, to="+84000000000",
        body=_strip_placeholders(body), sender=sender, template_id=template_id,
        template_data={k: _strip_placeholders(v) for k, v in data.items()})


def check_campaign(spec: CampaignSpec, gateways: Mapping[str, gw.Gateway]) -> CampaignLimits:
    """Ask each channel's gateway what it would refuse in the campaign's message (the text in
    the channel's variant; ZNS template data; personalisation placeholders left out, so what
    is refused here is refused for every recipient). Sends nothing.

    Raises :class:`CampaignError` (``<file>: field '<field>': <length> <unit>, over the limit
    of <limit> (<whose rule>); <gateway> would refuse it for every recipient, nothing was
    sent``) on the first refusal, or when the provider's limits cannot be read (the Zalo
    template information API failing). Returns the advice (e.g. Twilio's recommended 10
    segments) as lines."""
    out = CampaignLimits()
    file = spec.file or spec.id
    for i, ch in enumerate(spec.channels):
        g = gateways.get(ch.channel)
        if g is None:
            continue
        try:
            found = g.refusals(_probe(spec, ch))
        except gw.GatewayError as exc:
            raise CampaignError(file, f"channels[{i}]", _(
                "cannot read {gateway}'s limits for this message ({reason}: {detail}); nothing "
                "was sent").format(gateway=g.name, reason=exc.reason,
                                   detail=exc.detail or exc)) from None
        for r in found:
            if r.unit == "required" and r.part.startswith("template_data.") and \
                    textmod.placeholders(ch.template_fields.get(r.part.split(".", 1)[1], "")):
                continue  # filled per recipient: checked for each one (recipient_checker)
            where = field_name(spec, i, r.part)
            if r.advisory:
                out.advice.append(f"{where}: {r.describe()}")
                continue
            raise CampaignError(file, where, _(
                "{refusal}; {gateway} would refuse it for every recipient, nothing was sent"
            ).format(refusal=r.describe(), gateway=g.name))
    return out


def recipient_checker(spec: CampaignSpec, gateways: Mapping[str, gw.Gateway], *,
                      tolerant: bool = False) -> RecipientChecker:
    """A function (channel, personalised body, personalised template data or None) -> the
    reason the provider would refuse this recipient's message, or None. The reason reads
    ``too-long:<field> (<length>/<limit> <unit>)`` (``missing:<field>`` for a required ZNS
    parameter left empty, ``brandname-template:<field>`` for a text the registered template
    does not admit); it is stored as the skipped delivery's ``error_reason``.

    A gateway that cannot tell (Zalo's template information unreachable) raises its
    :class:`~outreach.gateways.base.GatewayError`; with ``tolerant`` (the scheduler's day runs,
    which nobody watches) the message is let through instead, logged, and the engine's
    content-level pause remains the safety net."""
    index = {ch.channel: i for i, ch in enumerate(spec.channels)}

    def check(channel: str, body: str, template_data: Mapping[str, str] | None) -> str | None:
        g = gateways.get(channel)
        i = index.get(channel)
        if g is None or i is None:
            return None
        ch = spec.channels[i]
        if ch.brandname_template and channel == "sms":
            why = textmod.brandname_template_mismatch(ch.brandname_template, body)
            if why:
                return f"brandname-template:channels[{i}].brandname_template"
        _channel, sender, template_id, data = outbound.channel_parts(spec, channel)
        msg = gw.OutboundMessage(
            delivery_id=0, campaign_id=spec.id, channel=channel, to="+84000000000", body=body,
            sender=sender, template_id=template_id,
            template_data=dict(template_data) if template_data is not None else dict(data))
        try:
            found = g.refusals(msg)
        except gw.GatewayError as exc:
            if not tolerant:
                raise
            log.warning(_("campaign {id}: {gateway} limits not checked ({reason})").format(
                id=spec.id, gateway=g.name, reason=exc.reason))
            return None
        for r in found:
            if r.advisory:
                continue
            where = field_name(spec, i, r.part)
            if r.unit in ("required", "status"):
                return f"{'missing' if r.unit == 'required' else 'refused'}:{where}"[:255]
            kind = "too-short" if r.length < r.limit else "too-long"
            return f"{kind}:{where} ({r.length}/{r.limit} {r.unit})"[:255]
        return None

    return check


__all__ = ["CampaignLimits", "RecipientChecker", "check_campaign", "recipient_checker",
           "field_name"]

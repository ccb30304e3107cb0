"""The message a delivery row becomes: body, sender and template of its channel, for a gateway."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from outreach.input import text as textmod
from outreach.input.campaigns import CampaignSpec
from outreach.gateways.base import OutboundMessage

#: channel -> (body, sender, template id, template data), computed once per channel
ChannelParts = dict[str, tuple[str, str | None, str | None, dict[str, str]]]


def channel_parts(spec: CampaignSpec, channel: str, cache: ChannelParts | None = None
                  ) -> tuple[str, str | None, str | None, dict[str, str]]:
    """(body, sender, template id, template data) of ``channel``: the campaign's NFC text in
    the channel's variant (unaccented / GSM-safe as configured), its sender ID or brandname,
    and its ZNS template. Raises KeyError for a channel the campaign does not have."""
    if cache is not None and channel in cache:
        return cache[channel]
    ch = spec.channel(channel)
    body = textmod.analyse(spec.text, unaccented=spec.unaccented or ch.unaccented,
                           gsm_safe=spec.gsm_safe or ch.gsm_safe).text
    parts = (body, ch.sender, ch.template_id, dict(ch.template_fields))
    if cache is not None:
        cache[channel] = parts
    return parts


def message(spec: CampaignSpec, row: Mapping[str, Any], cache: ChannelParts | None = None
            ) -> OutboundMessage:
    """The :class:`OutboundMessage` of a delivery row (``id``, ``channel``, ``address``,
    ``body`` — personalised text or None for the campaign's —, ``segments``, optionally
    ``template_data`` — the recipient's ZNS data as JSON, or None for the channel's). A Zalo address
    that is not an E.164 number is a Zalo user id (Official Account messages)."""
    channel, address = row["channel"], row["address"]
    body, sender, template_id, template_data = channel_parts(spec, channel, cache)
    if row["body"] is not None:
        body = row["body"]  # personalised
    if row.get("template_data"):
        # ZNS data personalised per recipient (outreach.ledger.runs.personalise), stored as JSON
        stored = row["template_data"]
        template_data = json.loads(stored) if isinstance(stored, str) else dict(stored)
    zalo_uid = address if channel == "zalo" and not address.startswith("+") else None
    return OutboundMessage(
        delivery_id=row["id"], campaign_id=spec.id, channel=channel, to=address, body=body,
        segments=row["segments"] or 1, sender=sender, zalo_user_id=zalo_uid,
        template_id=template_id, template_data=dict(template_data) if template_data else {},
        receipt_token=row.get("receipt_token"))


__all__ = ["channel_parts", "message"]

"""Gateways by name: ``mock``, ``outbox``, ``twilio``, ``zalo``; chosen from settings like mail backends."""

from __future__ import annotations

import importlib
import os
from typing import Any

from outreach.gateways.base import ConfigurationError, Gateway

REGISTRY: dict[str, str] = {
    "mock": "outreach.gateways.mock:MockGateway",
    "outbox": "outreach.gateways.outbox:OutboxGateway",
    "twilio": "outreach.gateways.twilio:TwilioGateway",
    "zalo": "outreach.gateways.zalo:ZaloGateway",
}


def gateway_class(name: str) -> type[Gateway]:
    try:
        module, cls = REGISTRY[name].split(":")
    except KeyError:
        raise ConfigurationError(f"unknown gateway {name!r}; known: {', '.join(sorted(REGISTRY))}",
                                 reason="unknown-gateway") from None
    return getattr(importlib.import_module(module), cls)


def make_gateway(name: str, **options: Any) -> Gateway:
    """Build a gateway by name; options are passed to its constructor (which validates them)."""
    return gateway_class(name)(**options)


def default_gateway_name(channel: str = "sms") -> str:
    """The gateway used when none is named: a real one only when its credentials are set.

    SMS: ``twilio`` if ``TWILIO_ACCOUNT_SID`` is set, Zalo: ``zalo`` if ``ZALO_APP_ID`` is set;
    otherwise ``outbox``, which reaches no phone.
    """
    if channel == "sms" and os.environ.get("TWILIO_ACCOUNT_SID"):
        return "twilio"
    if channel == "zalo" and os.environ.get("ZALO_APP_ID"):
        return "zalo"
    return "outbox"

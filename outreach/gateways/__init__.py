"""Gateways by name: ``mock``, ``outbox``, ``twilio``, ``zalo``, ``esms``, ``esms-sandbox``, ``smpp``; chosen from settings like mail backends."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from outreach.i18n import _
from outreach.gateways.base import ConfigurationError, Gateway

REGISTRY: dict[str, str] = {
    "mock": "outreach.gateways.mock:MockGateway",
    "outbox": "outreach.gateways.outbox:OutboxGateway",
    "twilio": "outreach.gateways.twilio:TwilioGateway",
    "zalo": "outreach.gateways.zalo:ZaloGateway",
    "esms": "outreach.gateways.brandname.esms:ESMSGateway",
    "esms-sandbox": "outreach.gateways.brandname.esms:ESMSSandboxGateway",
    "smpp": "outreach.gateways.smpp:SmppGateway",
}


def gateway_class(name: str) -> type[Gateway]:
    """The class of a registered gateway. Raises ConfigurationError for an unknown name, or
    (reason ``missing-extra``) when its optional dependency is not installed: the message names
    ``pip install 'outreach[twilio]'`` / ``[smpp]`` (:mod:`outreach.extras`)."""
    try:
        module, cls = REGISTRY[name].split(":")
    except KeyError:
        raise ConfigurationError(_("unknown gateway {name!r}; known: {known}").format(
            name=name, known=", ".join(sorted(REGISTRY))),
                                 reason="unknown-gateway") from None
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        from outreach import extras

        missing = extras.for_module(exc.name, f"the {name} gateway")
        if missing is None:
            raise
        raise ConfigurationError(str(missing), reason="missing-extra") from None
    return getattr(mod, cls)


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


def gateway_names_for(spec: Any, override: str | None) -> dict[str, str]:
    """Channel -> gateway name for a campaign: ``--gateway`` (applies to every channel), else the
    channel's ``gateway`` in the campaign file, else :func:`default_gateway_name`."""
    return {ch.channel: override or ch.gateway or default_gateway_name(ch.channel)
            for ch in spec.channels}


def run_gateway_names(options: Mapping[str, Any] | None, spec: Any,
                      override: str | None = None) -> dict[str, str]:
    """Channel -> gateway name for an existing run: the names it was created with (stored in
    ``runs.options["gateways"]``), else the campaign's; ``override`` replaces every one."""
    names = dict((options or {}).get("gateways") or gateway_names_for(spec, override))
    if override:
        names = {ch: override for ch in names}
    return names


def build_gateways(names: Mapping[str, str], db: Any, clock: Any = None,
                   **options: Any) -> dict[str, Gateway]:
    """Instantiate each channel's gateway (``options`` maps gateway name -> constructor
    options). Raises ConfigurationError; touches no network."""
    built: dict[str, Gateway] = {}
    for channel, name in names.items():
        opts = dict(options.get(name, {}))
        if name in ("mock", "outbox"):
            opts.setdefault("channel", channel)
        if name == "mock":
            opts.setdefault("keep", False)  # nobody reads a built mock's lists: counts only
        if name in ("zalo", "smpp"):
            opts.setdefault("db", db)
        if name == "zalo":
            if clock is not None:
                opts.setdefault("clock", clock)
        built[channel] = make_gateway(name, **opts)
    return built


class GatewayCache:
    """Gateways built once per set of (channel, name) and closed together: a sending process
    that serves many runs (the scheduler, a worker) builds each provider client once.
    ``factory(names) -> gateways`` replaces :func:`build_gateways` (tests)."""

    def __init__(self, db: Any, *, factory: Callable[[dict[str, str]], dict[str, Gateway]] | None
                 = None, clock: Any = None, options: Mapping[str, Any] | None = None,
                 owned: bool = True) -> None:
        self.db, self.factory, self.clock = db, factory, clock
        self.options = dict(options or {})
        self.owned = owned if factory is None else False
        self._built: dict[tuple[tuple[str, str], ...], dict[str, Gateway]] = {}

    def get(self, names: Mapping[str, str]) -> dict[str, Gateway]:
        key = tuple(sorted(names.items()))
        if key not in self._built:
            self._built[key] = (self.factory(dict(names)) if self.factory is not None else
                                build_gateways(names, self.db, self.clock, **self.options))
        return self._built[key]

    def close(self) -> None:
        """Close every gateway built here (not those a factory lent)."""
        if self.owned:
            for gws in self._built.values():
                for g in gws.values():
                    g.close()
        self._built.clear()

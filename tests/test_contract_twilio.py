"""The gateway contract run against TwilioGateway and the real SDK over HTTP to the fake server."""

from __future__ import annotations

import pytest
from tests.contract import GatewayContract, Make, ProviderRecord, Script
from tests.fakes.twilio_server import AUTH_TOKEN, FakeTwilio, twilio_server  # noqa: F401 (fixture)

from outreach.gateways.twilio import TwilioGateway


class TestTwilioContract(GatewayContract):
    secrets = (AUTH_TOKEN,)
    retry_after = 2.0  # the fake's 429 carries Retry-After: 2

    @pytest.fixture
    def make(self, twilio_server: FakeTwilio) -> Make:
        gateways: list[TwilioGateway] = []

        def build(script: Script) -> tuple[TwilioGateway, object]:
            for number, outcomes in script.items():
                twilio_server.script(number, *outcomes)  # same vocabulary as the contract
            gw = TwilioGateway(**twilio_server.gateway_options(timeout=5))
            gateways.append(gw)

            def observer() -> list[ProviderRecord]:
                return [ProviderRecord(m["to"], m["body"], m["sid"])
                        for m in twilio_server.messages]

            return gw, observer

        yield build
        for gw in gateways:
            gw.close()

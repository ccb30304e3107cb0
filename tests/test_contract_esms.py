"""The gateway contract run against ESMSGateway over HTTP to the loopback fake of eSMS.

The adapter re-sends a maybe-sent request under the same RequestId by itself
(``idempotent_retries``); the contract's ``lost`` outcome is about one request whose answer is
lost, so the gateway here is built with ``idempotent_retries=0``. ``lookup`` always answers
None (eSMS's status query needs the SMSID a lost answer never gave): ``lookup_supported``
is False. The retries are tested in tests/test_esms.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.contract import GatewayContract, Make, ProviderRecord, Script
from tests.fakes.esms_server import API_KEY, SECRET_KEY, FakeESMS, esms_server  # noqa: F401

from outreach.gateways.brandname.esms import ESMSGateway


class TestESMSContract(GatewayContract):
    secrets = (API_KEY, SECRET_KEY)
    retry_after = 2.0  # the fake's HTTP 429 carries Retry-After: 2
    lookup_supported = False

    @pytest.fixture
    def make(self, esms_server: FakeESMS) -> Iterator[Make]:  # noqa: F811
        gateways: list[ESMSGateway] = []

        def build(script: Script) -> tuple[ESMSGateway, object]:
            for number, outcomes in script.items():
                esms_server.script(number, *outcomes)
            gw = ESMSGateway(**esms_server.gateway_options(idempotent_retries=0))
            gateways.append(gw)

            def observer() -> list[ProviderRecord]:
                return [ProviderRecord("+84" + m["phone"][1:], m["content"], m["smsid"])
                        for m in esms_server.messages]

            return gw, observer

        yield build
        for gw in gateways:
            gw.close()

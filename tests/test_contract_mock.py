"""The gateway contract run against the in-memory MockGateway."""

from __future__ import annotations

import pytest
from tests.contract import GatewayContract, Make, ProviderRecord, Script

from outreach.gateways.mock import OUTCOMES, MockGateway


class TestMockContract(GatewayContract):
    retry_after = 2.0  # mock.OUTCOMES["throttled"]

    @pytest.fixture
    def make(self) -> Make:
        def build(script: Script) -> tuple[MockGateway, object]:
            assert all(o in OUTCOMES for outcomes in script.values() for o in outcomes)
            gw = MockGateway(script=script)

            def observer() -> list[ProviderRecord]:
                return [ProviderRecord(m.to, m.body, gw._by_delivery.get(m.delivery_id))
                        for m in gw.outbox]

            return gw, observer

        return build

"""The gateway contract run against SmppGateway (smpplib) over a loopback SMSC."""

from __future__ import annotations

import pytest
from tests.contract import GatewayContract, Make, ProviderRecord, Script
from tests.fakes.smpp_server import PASSWORD, FakeSmsc, smsc  # noqa: F401 (fixture)

from outreach.gateways.smpp import SmppGateway


class TestSmppContract(GatewayContract):
    secrets = (PASSWORD,)
    retry_after = 1.0  # ESME_RTHROTTLED in smpp_errors.json
    # query_sm needs the SMSC's message id, which a lost response never carried
    lookup_supported = False
    # SMPP 3.4 has no command_status for "the recipient unsubscribed"
    unsupported = frozenset({"opted_out"})

    @pytest.fixture
    def make(self, smsc: FakeSmsc) -> Make:  # noqa: F811
        gateways: list[SmppGateway] = []

        def build(script: Script) -> tuple[SmppGateway, object]:
            auth = any("auth" in outcomes for outcomes in script.values())
            for number, outcomes in script.items():
                smsc.script(number, *[o for o in outcomes if o != "auth"])
            gw = SmppGateway(**smsc.options(password="wrongpw" if auth else PASSWORD))
            gateways.append(gw)

            def observer() -> list[ProviderRecord]:
                return [ProviderRecord("+" + m.to, m.text, m.message_id) for m in smsc.messages]

            return gw, observer

        yield build
        for gw in gateways:
            gw.close()

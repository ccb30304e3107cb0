"""The gateway contract run against ZaloGateway (ZNS by phone) over HTTP to the fake Zalo server."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.contract import GatewayContract, Make, ProviderRecord, Script
from tests.fakes.zalo_server import (FIRST_ACCESS_TOKEN, FIRST_REFRESH_TOKEN, SECRET_KEY,
                                     FakeZalo, zalo_server)  # noqa: F401 (fixture)

from outreach.ledger.db import Database
from outreach.gateways.zalo import ZaloGateway
from outreach.ledger.models import Base

#: Contract outcome -> what the fake Zalo does, one entry per request it receives.
#: ``auth`` is two token rejections: the gateway refreshes and retries once, then gives up.
TRANSLATE = {
    "accept": ["accept"],
    "invalid": ["error:-108"],
    "throttled": ["error:-32"],
    "unavailable": ["http:503"],
    "auth": ["error:-216", "error:-216"],
    "lost": ["drop_after"],
}
BODY_PARAM = "noi_dung"


class TestZaloContract(GatewayContract):
    secrets = (SECRET_KEY, FIRST_ACCESS_TOKEN, FIRST_REFRESH_TOKEN)
    retry_after = 60.0  # -32 carries no Retry-After: zalo_errors.json says 60 s
    # Zalo can only be asked by msg_id, which an unknown delivery never got stored.
    lookup_supported = False
    # Zalo's refusals (-114/-119/-139/-141) concern Zalo only, not the number: they must not
    # join the suppression list that also blocks SMS, so no OptedOutError exists for Zalo.
    unsupported = frozenset({"opted_out"})

    @pytest.fixture
    def make(self, zalo_server: FakeZalo, tmp_path: Path) -> Make:  # noqa: F811
        db = Database(f"sqlite:///{tmp_path / 'contract.db'}")
        Base.metadata.create_all(db.engine)
        gateways: list[ZaloGateway] = []

        def build(script: Script) -> tuple[ZaloGateway, object]:
            for number, outcomes in script.items():
                zalo_server.script(number, *[x for o in outcomes for x in TRANSLATE[o]])
            # the contract's message carries text, not a template: a template with one
            # free-text parameter receives it
            gw = ZaloGateway(db=db, template_id="301234", body_param=BODY_PARAM,
                             read_timeout=5.0, **zalo_server.gateway_options())
            zalo_server.seed(gw.tokens)
            gateways.append(gw)

            def observer() -> list[ProviderRecord]:
                return [ProviderRecord("+" + s.phone, s.template_data[BODY_PARAM], s.msg_id)
                        for s in zalo_server.zns()]

            return gw, observer

        yield build
        for gw in gateways:
            gw.close()
        db.dispose()

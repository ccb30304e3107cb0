"""The gateway contract run against the OutboxGateway, the default: what it writes is what a
provider would have recorded, and reconciliation can ask it as it asks a provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.contract import GatewayContract, Make, ProviderRecord, Script

from outreach.gateways.outbox import OutboxGateway


class TestOutboxContract(GatewayContract):
    # A local file cannot refuse a number, throttle, be down, refuse credentials or lose an
    # answer: those outcomes have no equivalent here (the outbox always accepts).
    unsupported = frozenset({"invalid", "opted_out", "throttled", "unavailable", "auth", "lost"})

    @pytest.fixture
    def make(self, tmp_path: Path) -> Make:
        def build(script: Script) -> tuple[OutboxGateway, object]:
            assert not (set(o for outs in script.values() for o in outs) & self.unsupported)
            gw = OutboxGateway(directory=tmp_path / "outbox")

            def observer() -> list[ProviderRecord]:
                out: list[ProviderRecord] = []
                for path in sorted((tmp_path / "outbox").glob("*.jsonl")):
                    for line in path.read_text(encoding="utf-8").splitlines():
                        rec = json.loads(line)
                        out.append(ProviderRecord(rec["to"], rec["body"], rec["message_id"]))
                return out

            return gw, observer

        return build

"""The ledger records the gateway that really sent each message: a worker's (or a resume's)
--gateway replaces the one the run was created with, in the delivery rows, the report and
`runs list`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from outreach.cli import main
from outreach.gateways.mock import MockGateway
from outreach.input import campaigns
from outreach.ledger import runs
from outreach.ledger.db import Database
from outreach.ledger.models import Delivery
from outreach.reporting import reports
from outreach.sending.engine import send_run
from tests.helpers import fresh_db
from tests.pg import pg_db, pg_url, seed_run  # noqa: F401
from tests.web_helpers import open_campaign


def cli(url: str, *args: str, lang: str = "en") -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--lang", lang, "--wide", "--database-url", url, *args])
    return r.exit_code, r.stdout, r.stderr


def gateways_of(db: Database) -> dict[str, int]:
    out: dict[str, int] = {}
    with db.engine.connect() as conn:
        for g in conn.execute(select(Delivery.gateway)).scalars():
            out[g] = out.get(g, 0) + 1
    return out


def assert_shown_as_mock(url: str, run_id: int, cid: str, n: int) -> None:
    code, out, err = cli(url, "report", cid, "--format", "json")
    data = json.loads(out)
    assert data["by_gateway"] == {"mock": {"sent": n}} and data["local_gateways"] == []
    code, out, err = cli(url, "report", cid)
    assert "outbox" not in out and "no message reached a phone" not in " ".join(out.split())
    code, out, err = cli(url, "runs", "list", cid, "--format", "json")
    row = json.loads(out)[0]
    assert (row["id"], row["gateway"], row["gateways_used"]) == (run_id, "outbox", ["mock"])
    code, out, err = cli(url, "runs", "list", cid)
    assert "mock (created with outbox)" in out
    code, out, err = cli(url, "runs", "list", cid, lang="vi")
    assert "mock (đợt gửi tạo với outbox)" in out


def test_a_run_created_for_the_outbox_and_sent_by_the_mock_records_the_mock(
        tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    spec = campaigns.load(open_campaign(tmp_path, "ghi-cong", "outbox", n=4))
    now = dt.datetime.now(dt.timezone.utc)
    from outreach.input import recipients

    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=now)
    recipients.import_files(db, spec.list_files(), list_name=spec.list_name, now=now)
    with db.engine.begin() as conn:
        plan = runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "outbox"},
                               now=now)
    assert plan.run_id is not None and gateways_of(db) == {"outbox": 4}
    mock = MockGateway()
    send_run(db, spec, plan.run_id, {"sms": mock})
    assert len(mock.outbox) == 4 and gateways_of(db) == {"mock": 4}
    with reports.report_connection(db.engine) as conn:
        data = reports.campaign_report(conn, spec.id)
    assert data["by_gateway"] == {"mock": {"sent": 4}} and data["local_gateways"] == []
    assert_shown_as_mock(db.url, plan.run_id, spec.id, 4)


def test_a_run_not_sent_yet_shows_the_gateway_it_was_created_with(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    toml = open_campaign(tmp_path, "cho-gui", "outbox", n=2)
    assert cli(url, "campaign", "launch", str(toml), "--no-progress", "--enqueue-only")[0] == 0
    code, out, err = cli(url, "runs", "list", "cho-gui", "--format", "json")
    row = json.loads(out)[0]
    assert (row["gateway"], row["gateways_used"]) == ("outbox", [])
    code, out, err = cli(url, "runs", "list", "cho-gui")
    assert "outbox" in out and "created with" not in out


def test_outreach_worker_gateway_mock_on_postgresql_records_the_mock(
        pg_db: Database, pg_url: str, tmp_path: Path) -> None:  # noqa: F811
    spec, run_id = seed_run(pg_db, tmp_path, 6, cid="tho-pg", gateway="outbox")
    assert gateways_of(pg_db) == {"outbox": 6}
    code, out, err = cli(pg_url, "worker", "--gateway", "mock", "--exit-when-done",
                         "--idle", "0.05")
    assert code == 0, err
    assert "sent 6" in err
    assert gateways_of(pg_db) == {"mock": 6}
    with pg_db.engine.connect() as conn:
        ids = set(conn.execute(select(Delivery.provider_message_id)).scalars())
    assert all(i.startswith("MOCK") for i in ids) and len(ids) == 6
    assert_shown_as_mock(pg_url, run_id, spec.id, 6)

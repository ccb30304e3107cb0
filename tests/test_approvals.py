"""Maker–checker: sends that reach phones need a second person's approval of this text and
these lists; rehearsals need none; the requirement is lifted only by an audited admin setting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from outreach import users
from outreach.input import campaigns
from outreach.reporting import audit
from outreach.sending import approvals, ops, scheduling
from outreach.cli import main
from outreach.clock import VN_TZ
from outreach.gateways.twilio import TwilioGateway
from outreach.ledger.models import Delivery, Run
from tests.fakes.twilio_server import FakeTwilio
from tests.pg import pg_db, pg_url  # noqa: F401
from tests.web_helpers import PASSWORD, World, make_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def twilio() -> FakeTwilio:
    with FakeTwilio() as server:
        yield server


def launch_twilio(w: World, server: FakeTwilio, operator: str = "olga") -> ops.LaunchResult:
    spec = campaigns.load(w.twilio_file)
    return ops.launch(w.db, spec, operator=operator,
                      gateway_options={"twilio": server.gateway_options()})


def submit(w: World, path: Path, who: str = "olga") -> None:
    with w.db.engine.begin() as conn:
        approvals.prepare(conn, campaigns.load(path), operator=who)


def approve(w: World, path: Path, who: str = "anna") -> None:
    with w.db.engine.begin() as conn:
        approvals.approve(conn, campaigns.load(path), approver=who)


def count_deliveries(w: World, cid: str) -> int:
    with w.db.engine.connect() as conn:
        return len(conn.execute(select(Delivery.id).where(Delivery.campaign_id == cid)).all())


def test_launch_through_a_real_gateway_is_refused_without_approval(world: World,
                                                                   twilio: FakeTwilio) -> None:
    with pytest.raises(approvals.ApprovalError, match="needs the approval of a second person"):
        launch_twilio(world, twilio)
    assert twilio.creates() == [] and count_deliveries(world, "that-twilio") == 0
    # a request alone is not an approval
    submit(world, world.twilio_file)
    with pytest.raises(approvals.ApprovalError):
        launch_twilio(world, twilio)
    assert twilio.creates() == []


def test_approved_by_a_second_person_it_sends_and_the_record_names_both(world: World,
                                                                      twilio: FakeTwilio) -> None:
    submit(world, world.twilio_file, "olga")
    with pytest.raises(approvals.ApprovalError, match="not an active approver"):
        approve(world, world.twilio_file, "olga")  # an operator cannot approve at all
    with world.db.engine.begin() as conn:
        users.add(conn, "olga2", "approver", password=PASSWORD)
    submit(world, world.twilio_file, "olga2")
    with pytest.raises(approvals.ApprovalError, match="different person"):
        approve(world, world.twilio_file, "olga2")  # the preparer, though an approver
    approve(world, world.twilio_file, "anna")
    res = launch_twilio(world, twilio)
    assert res.report is not None and res.report.counts.get("sent") == 4
    assert len(twilio.creates()) == 4
    with world.db.engine.connect() as conn:
        a = approvals.latest(conn, "that-twilio", "approved")
        entry = audit.entries(conn, campaign_id="that-twilio", action="approve")[0]
    assert (a.prepared_by, a.approved_by, a.rows) == ("olga2", "anna", 4)
    assert a.text_sha256 == campaigns.load(world.twilio_file).text_sha256
    assert [x["rows"] for x in a.lists] == [4] and len(a.lists[0]["sha256"]) == 64
    assert entry.operator == "anna" and entry.details["prepared_by"] == "olga2"


def test_viewer_and_disabled_accounts_cannot_approve(world: World) -> None:
    submit(world, world.twilio_file)
    with pytest.raises(approvals.ApprovalError, match="not an active approver"):
        approve(world, world.twilio_file, "vera")
    with world.db.engine.begin() as conn:
        users.set_active(conn, "anna", False)
    with pytest.raises(approvals.ApprovalError, match="not an active approver"):
        approve(world, world.twilio_file, "anna")
    approve(world, world.twilio_file, "adam")


def test_changing_a_list_voids_the_approval(world: World, twilio: FakeTwilio) -> None:
    submit(world, world.twilio_file)
    approve(world, world.twilio_file)
    lst = world.twilio_file.parent / "that-twilio-list.csv"
    lst.write_text(lst.read_text(encoding="utf-8") + "+84965599999,Người mới,Ninh Kiều,An Hòa\r\n",
                   encoding="utf-8")
    with pytest.raises(approvals.ApprovalError,
                       match=r"void because the recipient lists changed: that-twilio-list.csv "
                             r"\(4 → 5 rows\)"):
        launch_twilio(world, twilio)
    assert twilio.creates() == []


def test_changing_the_text_voids_the_approval(world: World, twilio: FakeTwilio) -> None:
    from outreach.input import text as textmod

    submit(world, world.twilio_file)
    approve(world, world.twilio_file)
    body = world.twilio_file.read_text(encoding="utf-8")
    old = campaigns.load(world.twilio_file)
    new_text = old.text + " Xin cảm ơn."
    body = body.replace(old.text, new_text).replace(old.text_sha256, textmod.text_sha256(new_text))
    world.twilio_file.write_text(body, encoding="utf-8")
    with pytest.raises(approvals.ApprovalError, match="void because the message text changed"):
        launch_twilio(world, twilio)
    # a request prepared before the change cannot be approved after it either
    submit(world, world.twilio_file)
    world.twilio_file.write_text(body.replace("Xin cảm ơn.", "Trân trọng.").replace(
        textmod.text_sha256(new_text), textmod.text_sha256(old.text + " Trân trọng.")),
        encoding="utf-8")
    with pytest.raises(approvals.ApprovalError, match="is void: the message text changed"):
        approve(world, world.twilio_file)


def test_mock_and_outbox_rehearsals_need_no_approval(world: World) -> None:
    spec = campaigns.load(world.mock_file)
    res = ops.launch(world.db, spec, operator="olga")
    assert res.report is not None and res.report.counts.get("sent") == 6
    res = ops.launch(world.db, campaigns.load(world.twilio_file), gateway="outbox", operator="olga")
    assert res.report is not None and res.report.counts.get("sent") == 4


def test_resume_through_a_real_gateway_needs_a_valid_approval(world: World,
                                                             twilio: FakeTwilio) -> None:
    submit(world, world.twilio_file)
    approve(world, world.twilio_file)
    spec = campaigns.load(world.twilio_file)
    res = ops.launch(world.db, spec, operator="olga", dispatch=False,
                     gateway_options={"twilio": twilio.gateway_options()})
    assert res.plan is not None and res.plan.run_id is not None
    lst = world.twilio_file.parent / "that-twilio-list.csv"
    lst.write_text(lst.read_text(encoding="utf-8").replace("Người 0", "Người không"),
                   encoding="utf-8")
    with pytest.raises(approvals.ApprovalError, match="resume through twilio"):
        ops.resume(world.db, spec, operator="olga",
                   gateway_options={"twilio": twilio.gateway_options()})
    assert twilio.creates() == []


def test_relaxing_needs_an_admin_and_a_reason_and_every_send_is_noted(world: World,
                                                                      twilio: FakeTwilio) -> None:
    with world.db.engine.begin() as conn:
        with pytest.raises(approvals.ApprovalError, match="only an admin"):
            approvals.set_required(conn, False, operator="anna", reason="thử")
        with pytest.raises(approvals.ApprovalError, match="needs --reason"):
            approvals.set_required(conn, False, operator="adam", reason=" ")
        approvals.set_required(conn, False, operator="adam", reason="diễn tập khẩn cấp")
    res = launch_twilio(world, twilio)
    assert res.report is not None and res.report.counts.get("sent") == 4
    with world.db.engine.connect() as conn:
        setting = audit.entries(conn, action="approval-setting")[0]
        waived = audit.entries(conn, action="approval-waived")
    assert setting.operator == "adam" and setting.details == {"required": False,
                                                             "reason": "diễn tập khẩn cấp"}
    assert [(e.campaign_id, e.details["gateways"]) for e in waived] == [("that-twilio",
                                                                        ["twilio"])]
    with world.db.engine.begin() as conn:
        approvals.set_required(conn, True, operator="adam", reason=None)
        assert approvals.is_required(conn)


def test_the_scheduler_fires_only_approved_campaigns(world: World, twilio: FakeTwilio,
                                                     tmp_path: Path) -> None:
    from tests.helpers import write_daily_campaign

    # registered now (real time): the tick is one minute after the first firing owed, the one
    # register() names (today's 08:00 in Vietnam if still within the lateness limit, else the
    # next one), so no earlier day is found missed whatever the hour the suite runs at
    path = write_daily_campaign(tmp_path, cid="lich-that", start="2026-01-01", end="2099-12-31",
                                numbers=["0965550101", "0965550102"], key_dates="[]")
    spec = campaigns.load(path)
    _, first = scheduling.register(world.db, spec, operator="olga")
    assert first is not None and first.at.astimezone(VN_TZ).time() == dt.time(8, 0)
    now = first.at + dt.timedelta(minutes=1)

    def factory(names: dict[str, str]) -> dict:
        return {ch: TwilioGateway(**twilio.gateway_options()) for ch in names}

    res = scheduling.tick(world.db, gateways_factory=factory, now=now, gateway="twilio")
    assert [(r.action, "approval of a second person" in (r.detail or "")) for r in res] == [
        ("error", True)]
    with world.db.engine.connect() as conn:
        assert conn.execute(select(Run.id).where(Run.campaign_id == "lich-that")).all() == []
    submit(world, path)
    approve(world, path)
    res = scheduling.tick(world.db, gateways_factory=factory, now=now, gateway="twilio")
    assert [r.action for r in res] == ["created"]
    assert count_deliveries(world, "lich-that") == 2  # sent when the daily window opens


def test_cli_users_submit_approve_and_refusal(world: World, twilio: FakeTwilio,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    url = str(world.db.url)
    run = CliRunner().invoke
    monkeypatch.setenv("NEW_PW", "mot-mat-khau-dai")
    r = run(main, ["--database-url", url, "--operator", "adam", "users", "add", "bao",
                   "--role", "approver", "--password-env", "NEW_PW", "--name", "Trần Bảo"])
    assert r.exit_code == 0, r.output
    assert "mot-mat-khau-dai" not in r.output
    r = run(main, ["--database-url", url, "users", "list", "--format", "json"])
    assert {"username": "bao", "name": "Trần Bảo", "role": "approver", "active": True} in \
        __import__("json").loads(r.output)
    r = run(main, ["--database-url", url, "--operator", "olga", "campaign", "submit",
                   str(world.twilio_file)])
    assert r.exit_code == 0 and "4 rows" in r.output, r.output
    r = run(main, ["--database-url", url, "--operator", "olga", "campaign", "approve",
                   str(world.twilio_file)])
    assert r.exit_code == 1 and "not an active approver" in r.output
    assert "Traceback" not in r.output
    r = run(main, ["--database-url", url, "users", "disable", "bao"])
    assert r.exit_code == 0
    r = run(main, ["--database-url", url, "--operator", "bao", "campaign", "approve",
                   str(world.twilio_file)])
    assert r.exit_code == 1 and "not an active approver" in r.output
    r = run(main, ["--database-url", url, "--operator", "anna", "campaign", "approve",
                   str(world.twilio_file)])
    assert r.exit_code == 0 and "approved" in r.output and "prepared by olga" in r.output
    r = run(main, ["--database-url", url, "users", "add", "Bad Name!", "--role", "viewer",
                   "--no-password"])
    assert r.exit_code == 1 and "user name" in r.output and len(r.output.strip().splitlines()) <= 2


def test_cli_launch_refused_without_approval_is_one_line(world: World,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "x" * 32)
    monkeypatch.setenv("TWILIO_FROM", "SYTECANTHO")
    monkeypatch.setenv("OUTREACH_TWILIO_API_URL", "http://127.0.0.1:9")
    r = CliRunner().invoke(main, ["--database-url", str(world.db.url), "campaign", "launch",
                                  str(world.twilio_file), "--no-progress"])
    assert r.exit_code == 1, r.output
    assert "needs the approval of a second person" in r.output and "Traceback" not in r.output
    assert count_deliveries(world, "that-twilio") == 0


@pytest.mark.postgres
def test_approvals_and_accounts_on_postgresql(pg_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from tests.web_helpers import add_accounts, open_campaign

    add_accounts(pg_db)
    path = open_campaign(tmp_path, "pg-twilio", "twilio", n=3)
    spec = campaigns.load(path)
    with pytest.raises(approvals.ApprovalError):
        with pg_db.engine.begin() as conn:
            approvals.require_approval(conn, spec, {"sms": "twilio"})
    with pg_db.engine.begin() as conn:
        approvals.prepare(conn, spec, operator="olga")
    with pg_db.engine.begin() as conn:
        a = approvals.approve(conn, spec, approver="anna")
        assert approvals.require_approval(conn, spec, {"sms": "twilio"}).id == a.id
        assert users.authenticate(conn, "anna", PASSWORD).role == "approver"
        assert users.authenticate(conn, "anna", "sai-mat-khau-roi") is None

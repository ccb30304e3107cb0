"""ESMSGateway against the loopback fake of eSMS: request shapes, every documented code, the
retry of a maybe-sent request under the same RequestId, whole runs through the engine (every
recipient exactly once), the GET callback, polling, templates and sandbox trials."""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from tests.fakes.esms_server import (API_KEY, CALLBACK_SECRET, SECRET_KEY, FakeESMS,
                                     esms_server)  # noqa: F401 (fixture)
from tests.helpers import approve, fresh_db, in_window, load, numbers, statuses, write_campaign

from outreach.input import campaigns
from outreach.receipts import sync
from outreach.reporting import reports
from outreach.sending import ops
from outreach.clock import FakeClock
from outreach.gateways import base, make_gateway
from outreach.gateways.base import OutboundMessage
from outreach.gateways.brandname.base import TemplateMismatchError, callback_token
from outreach.gateways.brandname.esms import ESMSGateway, ESMSSandboxGateway, table
from outreach.ledger.db import Database
from outreach.ledger.models import Delivery, Run

TEXT = "Thông báo: tiêm chủng mở rộng ngày 30/7 tại trạm y tế phường An Hòa."
PUBLIC = "https://hooks.example.vn"


def msg(to: str = "+84912345001", delivery_id: int = 1, body: str = TEXT) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, campaign_id="c", channel="sms", to=to,
                           body=body, sender="UBNDCANTHO")


@pytest.fixture
def gw(esms_server: FakeESMS) -> ESMSGateway:  # noqa: F811
    g = ESMSGateway(**esms_server.gateway_options(callback_secret=CALLBACK_SECRET,
                                                  public_base_url=PUBLIC))
    yield g
    g.close()


# -- request shape and configuration -------------------------------------------------------------

def test_request_carries_the_documented_fields(gw: ESMSGateway, esms_server: FakeESMS) -> None:
    result = gw.send(msg(delivery_id=42))
    (body,) = esms_server.requests
    rid = gw.request_id(msg(delivery_id=42))
    assert body["Phone"] == "0912345001" and body["Content"] == TEXT
    assert body["SmsType"] == "2" and body["IsUnicode"] == "1" and body["Sandbox"] == "0"
    assert body["Brandname"] == "UBNDCANTHO" and body["RequestId"] == rid
    assert rid.startswith("42-") and len(rid) <= 50
    token = callback_token(CALLBACK_SECRET, "esms", 42)
    assert body["CallbackUrl"] == f"{PUBLIC}/webhooks/esms/status/42/{token}"
    assert result.provider_message_id == esms_server.messages[0]["smsid"]
    assert result.price_vnd is None  # the price comes with the receipt


def test_request_id_is_stable_and_differs_by_delivery_salt_and_text(gw: ESMSGateway,
                                                                    esms_server: FakeESMS) -> None:
    a = gw.request_id(msg(delivery_id=7))
    assert a == gw.request_id(msg(delivery_id=7))
    assert a != gw.request_id(msg(delivery_id=8))
    assert a != gw.request_id(msg(delivery_id=7, body=TEXT + "!"))
    salted = ESMSGateway(**esms_server.gateway_options(request_salt="so-tttt-cantho"))
    assert salted.request_id(msg(delivery_id=7)) != a
    assert len(gw.request_id(msg(delivery_id=2**63 - 1))) <= 50


def test_options_from_the_environment_and_bad_options(esms_server: FakeESMS,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(base.ConfigurationError, match="OUTREACH_ESMS_API_KEY"):
        make_gateway("esms")
    monkeypatch.setenv("OUTREACH_ESMS_API_KEY", API_KEY)
    monkeypatch.setenv("OUTREACH_ESMS_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("OUTREACH_ESMS_API_URL", esms_server.base_url)
    g = make_gateway("esms", loopback_only=True)
    assert g.api_url == esms_server.base_url and g.callback_url(1) is None
    facts = g.check()
    assert facts["balance_vnd"] == 36693 and SECRET_KEY not in repr(facts) + repr(g)
    monkeypatch.setenv("OUTREACH_ESMS_API_URL", "http://esms.example.vn")
    with pytest.raises(base.ConfigurationError, match="https"):
        make_gateway("esms")
    with pytest.raises(base.ConfigurationError, match="11 characters"):
        ESMSGateway(**esms_server.gateway_options(sender="Ủy ban Cần Thơ"))
    with pytest.raises(base.ConfigurationError, match="16 characters"):
        ESMSGateway(**esms_server.gateway_options(callback_secret="short"))


def test_not_a_vietnamese_mobile_is_refused_before_any_request(gw: ESMSGateway,
                                                               esms_server: FakeESMS) -> None:
    with pytest.raises(base.InvalidAddressError):
        gw.send(msg(to="+12025550100"))
    assert esms_server.requests == []


# -- every documented code -------------------------------------------------------------------------

REFUSALS = sorted(c for c, e in table()["codes"].items() if e["class"] not in
                  ("accepted", "duplicate"))


@pytest.mark.parametrize("code", REFUSALS)
def test_every_documented_code_is_classified_and_records_nothing(gw: ESMSGateway,
                                                                 esms_server: FakeESMS,
                                                                 code: str) -> None:
    entry = table()["codes"][code]
    esms_server.script("+84912345001", f"code:{code}")
    with pytest.raises(base.GatewayError) as info:
        gw.send(msg())
    assert type(info.value).__name__ == entry["class"]
    assert info.value.reason == entry["reason"] and info.value.provider_code == code
    assert esms_server.messages == []
    assert SECRET_KEY not in str(info.value) and API_KEY not in str(info.value)


def test_146_is_a_stop_with_the_template_explanation(gw: ESMSGateway,
                                                      esms_server: FakeESMS) -> None:
    esms_server.script("+84912345001", "template")
    with pytest.raises(TemplateMismatchError) as info:
        gw.send(msg())
    assert isinstance(info.value, base.StopRunError)
    assert "registered with the carriers" in str(info.value)


# -- maybe sent: retried under the same RequestId ------------------------------------------------

@pytest.mark.parametrize("fault", ["slow:0.6", "lost", "drop_before", "garbage"])
def test_a_maybe_sent_request_is_retried_and_sent_exactly_once(esms_server: FakeESMS,  # noqa: F811
                                                               fault: str) -> None:
    g = ESMSGateway(**esms_server.gateway_options(timeout=0.3))
    esms_server.script("+84912345001", fault)
    if fault == "garbage":
        # a 2xx we cannot read is not a transport failure: unknown, and the provider has it
        with pytest.raises(base.OutcomeUnknownError):
            g.send(msg())
        assert len(esms_server.messages) == 1
        return
    result = g.send(msg())
    assert len(esms_server.messages) == 1
    rids = {r["RequestId"] for r in esms_server.requests}
    assert len(esms_server.requests) == 2 and len(rids) == 1
    if fault == "drop_before":  # the first never arrived: the retry is the accepted one
        assert result.provider_message_id == esms_server.messages[0]["smsid"]
    else:  # the first was accepted: 124 is read as "already accepted"
        assert result.provider_message_id == f"rid:{rids.pop()}"
        assert result.raw["duplicate"] is True


def test_every_try_lost_is_unknown_and_still_one_message(esms_server: FakeESMS) -> None:  # noqa: F811
    g = ESMSGateway(**esms_server.gateway_options(idempotent_retries=2))
    esms_server.script("+84912345001", "drop_before", "drop_before", "drop_before")
    with pytest.raises(base.OutcomeUnknownError):
        g.send(msg())
    assert len(esms_server.requests) == 3 and esms_server.messages == []


def test_after_a_lost_answer_an_unavailable_retry_is_unknown_not_transient(
        esms_server: FakeESMS) -> None:  # noqa: F811
    g = ESMSGateway(**esms_server.gateway_options(idempotent_retries=1))
    esms_server.script("+84912345001", "drop_before", "unavailable")
    with pytest.raises(base.OutcomeUnknownError) as info:
        g.send(msg())  # the first may have been accepted, for all we can tell
    assert "same RequestId" in str(info.value)
    assert esms_server.messages == []


def test_duplicate_answers_on_a_first_try(gw: ESMSGateway, esms_server: FakeESMS) -> None:
    gw.send(msg(delivery_id=5))
    again = gw.send(msg(delivery_id=5))  # an operator's resend, the sender's retry
    assert again.provider_message_id.startswith("rid:5-")
    assert len(esms_server.messages) == 1
    esms_server.script("+84912345002", "dup_unconfirmed")
    with pytest.raises(base.OutcomeUnknownError):
        gw.send(msg(to="+84912345002", delivery_id=6))
    esms_server.script("+84912345003", "dup_rejected")
    with pytest.raises(base.PermanentError) as info:
        gw.send(msg(to="+84912345003", delivery_id=7))
    assert info.value.reason == "duplicate-of-rejected"


# -- whole runs through the engine -----------------------------------------------------------------

def campaign(tmp: Path, n: int, *, gateway: str = "esms", extra_channel: str = "",
             text: str | None = None) -> campaigns.CampaignSpec:
    chan = f"""
[[channels]]
channel = "sms"
sender = "UBNDCANTHO"
gateway = "{gateway}"
concurrency = 8
{extra_channel}
"""
    kw = {"text": text} if text else {}
    return load(write_campaign(tmp, phones=numbers(n), channels=chan, **kw))


def test_a_run_with_every_fault_reaches_every_recipient_exactly_once(
        tmp_path: Path, esms_server: FakeESMS) -> None:  # noqa: F811
    spec = campaign(tmp_path, 40)
    phones = numbers(40)
    faults = ["slow:0.5", "lost", "drop_before", "throttled", "unavailable", "dup_unconfirmed"]
    for i, p in enumerate(phones[:24]):
        esms_server.script(p, faults[i % len(faults)])
    g = ESMSGateway(**esms_server.gateway_options(timeout=0.3))
    db = fresh_db(tmp_path)
    approve(db, spec)  # esms reaches phones
    res = ops.launch(db, spec, gateways={"sms": g}, clock=FakeClock(in_window()))
    got = statuses(db)
    sent_to = sorted("+84" + m["phone"][1:] for m in esms_server.messages)
    dup_unconfirmed = {p for i, p in enumerate(phones[:24]) if i % len(faults) == 5}
    assert sent_to == sorted(set(phones) - dup_unconfirmed)  # once each, never twice
    assert {p for p, s in got.items() if s == "unknown"} == dup_unconfirmed
    assert all(s == "sent" for p, s in got.items() if p not in dup_unconfirmed)
    assert res.report is not None and res.report.stopped is None


def test_146_at_send_time_pauses_the_run_with_the_explanation(
        tmp_path: Path, esms_server: FakeESMS) -> None:  # noqa: F811
    spec = campaign(tmp_path, 5)
    for p in numbers(5):
        esms_server.script(p, "template")
    g = ESMSGateway(**esms_server.gateway_options())
    db = fresh_db(tmp_path)
    approve(db, spec)  # esms reaches phones
    rep = ops.launch(db, spec, gateways={"sms": g}, clock=FakeClock(in_window())).report
    assert rep is not None and rep.stopped == "gateway"
    assert "template-mismatch" in rep.reason and "registered with the carriers" in rep.reason
    assert set(statuses(db).values()) == {"queued"} and esms_server.messages == []
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status)).scalar() == "paused"


# -- receipts: the GET callback and polling ------------------------------------------------------

def test_shuffled_and_repeated_callbacks_apply_once_with_carrier_and_price(
        tmp_path: Path, esms_server: FakeESMS, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from outreach.receipts.receiver import create_app

    spec = campaign(tmp_path, 6)
    g = ESMSGateway(**esms_server.gateway_options(callback_secret=CALLBACK_SECRET,
                                                  public_base_url=PUBLIC))
    db = fresh_db(tmp_path)
    approve(db, spec)  # esms reaches phones
    ops.launch(db, spec, gateways={"sms": g}, clock=FakeClock(in_window()))
    monkeypatch.setenv("OUTREACH_ESMS_CALLBACK_SECRET", CALLBACK_SECRET)
    client = create_app(db).test_client()
    calls = []
    for i, m in enumerate(esms_server.messages):
        final = dict(success=0, failed=1) if i == 0 else dict(success=1, failed=0)
        calls.append(esms_server.callback_path(m, send_status=7, success=0, failed=0))
        calls += [esms_server.callback_path(m, telcoid=2, price=850.0, **final)] * 3
    random.Random(19).shuffle(calls)
    for path in calls:
        assert client.get(path).status_code == 200
    got = statuses(db)
    first = "+84" + esms_server.messages[0]["phone"][1:]
    assert got.pop(first) == "undelivered"
    assert set(got.values()) == {"delivered"}
    with db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.carrier, Delivery.cost_vnd)).all()
    assert set(rows) == {("MobiFone", 850.0)}
    with reports.report_connection(db.engine) as conn:
        rep = reports.campaign_report(conn, spec.id)
    assert set(rep["by_carrier"]) == {"MobiFone"} and rep["cost_vnd"] == 6 * 850.0
    # a forged token, a token for another delivery, no SMSID
    m = esms_server.messages[1]
    path = urlsplit(m["callback_url"]).path
    other = path.rsplit("/", 2)[0] + "/999/" + path.rsplit("/", 1)[1]
    assert client.get(path[:-4] + "0000?SMSID=x").status_code == 403
    assert client.get(other + "?SMSID=x").status_code == 403
    assert client.get(path).status_code == 400


def test_polling_by_smsid_settles_sent_rows(tmp_path: Path, esms_server: FakeESMS) -> None:  # noqa: F811
    spec = campaign(tmp_path, 3)
    g = ESMSGateway(**esms_server.gateway_options())
    db = fresh_db(tmp_path)
    approve(db, spec)  # esms reaches phones
    ops.launch(db, spec, gateways={"sms": g}, clock=FakeClock(in_window()))
    a, b, c = esms_server.messages
    esms_server.set_status(a["smsid"], 5, success=1, price=850)
    esms_server.set_status(b["smsid"], 4)
    counts = sync.sync_campaign(db, spec.id, g)
    assert counts["delivered"] == 1 and counts["failed"] == 1 and counts["unchanged"] == 1
    got = statuses(db)
    assert got["+84" + a["phone"][1:]] == "delivered" and got["+84" + c["phone"][1:]] == "sent"
    bad = ESMSGateway(**esms_server.gateway_options(secret_key="wrong-secret-key-000"))
    esms_server.set_status(c["smsid"], 5, success=1)
    with pytest.raises(base.AuthenticationError):
        bad.fetch_statuses([c["smsid"]])


# -- templates and the sandbox ---------------------------------------------------------------------

def test_campaign_check_refuses_a_message_that_does_not_match_the_template(
        tmp_path: Path) -> None:
    ok = 'brandname_template = "Thông báo: tiêm chủng mở rộng ngày {P1,10} tại trạm y tế phường {P2,30}."'
    spec = campaign(tmp_path, 2, extra_channel=ok, text=TEXT)
    assert spec.channels[0].brandname_template.startswith("Thông báo")
    bad = 'brandname_template = "Thong bao: {P1,60}"'
    with pytest.raises(campaigns.CampaignError) as info:
        campaign(tmp_path, 2, extra_channel=bad, text=TEXT)
    assert "channels[0].brandname_template" in str(info.value)
    assert "does not match the registered template (from character 3" in str(info.value)
    short = 'brandname_template = "Thông báo: tiêm chủng mở rộng ngày {P1,2} tại trạm y tế phường {P2,30}."'
    with pytest.raises(campaigns.CampaignError):
        campaign(tmp_path, 2, extra_channel=short, text=TEXT)  # "30/7" is longer than 2 characters


def test_campaign_check_command_refuses_before_anything_is_sent(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from outreach.cli import main

    path = write_campaign(tmp_path, phones=numbers(2), channels="""
[[channels]]
channel = "sms"
sender = "UBNDCANTHO"
gateway = "esms"
brandname_template = "Thong bao: {P1,60}"
""")
    result = CliRunner().invoke(main, ["campaign", "check", str(path)])
    assert result.exit_code == 1
    assert "brandname_template" in result.output and "Traceback" not in result.output


def test_a_sandbox_run_is_a_trial_in_every_report(tmp_path: Path,
                                                  esms_server: FakeESMS) -> None:  # noqa: F811
    spec = campaign(tmp_path, 4, gateway="esms-sandbox")
    g = ESMSSandboxGateway(**esms_server.gateway_options(callback_secret=CALLBACK_SECRET,
                                                         public_base_url=PUBLIC))
    assert not g.reaches_phones and g.callback_url(1) is None
    db = fresh_db(tmp_path)
    approve(db, spec)  # esms reaches phones
    ops.launch(db, spec, gateways={"sms": g}, clock=FakeClock(in_window()))
    assert {m["sandbox"] for m in esms_server.messages} == {"1"}
    assert set(statuses(db).values()) == {"sent"}
    with reports.report_connection(db.engine) as conn:
        rep = reports.campaign_report(conn, spec.id)
    assert rep["local_gateways"] == ["esms-sandbox"] and rep["cost_vnd"] == 0.0


# -- a process killed mid-send: the same RequestId again, the same day ----------------------------

GHOST = "ghost-host:1:dead"


def _killed_mid_send(tmp: Path, esms_server: FakeESMS, n: int, reached: int,  # noqa: F811
                     clock: FakeClock) -> tuple[campaigns.CampaignSpec, Database, ESMSGateway]:
    """A dead process claimed ``n`` rows, committed their starts (in flight or marked ahead),
    and its first ``reached`` requests reached eSMS before it died."""
    import datetime as dt

    from outreach.ledger import states
    from outreach.sending import outbound
    from outreach.sending.engine import RunEngine, SendSettings
    from outreach.sending.leases import Lease
    from tests.helpers import seed_run

    spec = campaign(tmp, n)
    db = fresh_db(tmp)
    approve(db, spec)
    run_id = seed_run(db, spec, clock.now())
    g = ESMSGateway(**esms_server.gateway_options())
    eng = RunEngine(db, spec, run_id, {"sms": g}, clock=clock,
                    settings=SendSettings(batch_size=n), lease=Lease(db, GHOST, clock=clock))
    batch = eng.claim()
    with db.engine.begin() as conn:
        states.mark_started(conn, [r["id"] for r in batch], owner=GHOST, now=clock.now())
        conn.execute(Delivery.__table__.update().values(
            lease_expires_at=clock.now() - dt.timedelta(seconds=1)))
    parts: dict = {}
    for r in batch[:reached]:
        g.send(outbound.message(spec, r, parts))  # accepted; the answer dies with the process
    return spec, db, g


def test_sends_of_a_killed_process_go_again_under_their_request_id_and_arrive_once(
        tmp_path: Path, esms_server: FakeESMS) -> None:  # noqa: F811
    clock = FakeClock(in_window())
    spec, db, g = _killed_mid_send(tmp_path, esms_server, 12, 5, clock)
    assert len(esms_server.messages) == 5
    rep = ops.resume(db, spec, gateways={"sms": g}, clock=clock)
    assert rep.reconciled["requeued"] == 12 and rep.reconciled["still_unknown"] == 0
    phones = [m["phone"] for m in esms_server.messages]
    assert sorted(phones) == sorted({p for p in phones}) and len(phones) == 12  # once each
    got = statuses(db)
    assert set(got.values()) == {"sent"} and len(got) == 12
    with db.engine.connect() as conn:
        ids = conn.execute(select(Delivery.provider_message_id)).scalars().all()
    assert sum(1 for i in ids if i.startswith("rid:")) == 5  # the duplicates eSMS refused


def test_after_the_providers_dedupe_day_an_interrupted_send_waits_for_the_operator(
        tmp_path: Path, esms_server: FakeESMS) -> None:  # noqa: F811
    import datetime as dt

    clock = FakeClock(in_window())
    spec, db, g = _killed_mid_send(tmp_path, esms_server, 6, 3, clock)
    clock.advance(dt.timedelta(days=1).total_seconds())  # eSMS forgets RequestIds by then
    rep = ops.resume(db, spec, gateways={"sms": g}, clock=clock, allow_late=True)
    assert rep.reconciled["requeued"] == 0 and rep.reconciled["still_unknown"] == 6
    assert len(esms_server.messages) == 3
    assert set(statuses(db).values()) == {"unknown"}


def test_idempotent_until_is_the_end_of_the_vietnamese_day_less_the_margin() -> None:
    import datetime as dt

    g = ESMSGateway(api_key="k", secret_key="s")
    utc = dt.timezone.utc
    # 2024-07-30 23:00 in Vietnam = 16:00 UTC; the day ends 17:00 UTC; less 15 minutes
    assert g.idempotent_until(dt.datetime(2024, 7, 30, 16, 0, tzinfo=utc)) == dt.datetime(
        2024, 7, 30, 16, 45, tzinfo=utc)
    # 2024-07-30 01:00 in Vietnam = 2024-07-29 18:00 UTC: the same Vietnamese day
    assert g.idempotent_until(dt.datetime(2024, 7, 29, 18, 0, tzinfo=utc)) == dt.datetime(
        2024, 7, 30, 16, 45, tzinfo=utc)

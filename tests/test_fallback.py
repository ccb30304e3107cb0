"""Channel fallback Zalo → SMS: who gets an SMS, when, once, and nobody reached twice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from outreach.input import campaigns
from outreach.ledger import states, suppression
from outreach.sending import fallback
from outreach.input import text as textmod
from outreach.ledger.db import Database
from outreach.ledger.models import Base, Campaign, Delivery, DeliveryEvent, Recipient, Run

NOW = dt.datetime(2024, 7, 30, 3, 0, tzinfo=dt.timezone.utc)  # 10:00 in Vietnam
TEXT = ("Toàn dân tích cực tham gia phòng, chống mua bán người. Gọi Tổng đài quốc gia 111 "
        "để được tư vấn, hỗ trợ kịp thời")
NAMES = {"zalo": "zalo", "sms": "twilio"}


def make_spec(text: str = TEXT, after: int = 60) -> campaigns.CampaignSpec:
    raw: dict[str, Any] = {
        "id": "pcmbn", "name": "Phòng, chống mua bán người", "theme": "pcmbn",
        "source": {"document": "126/KH-UBND", "issuer": "UBND thành phố Cần Thơ",
                   "date": dt.date(2024, 6, 25), "section": "II.6.b"},
        "message": {"text": text, "sha256": textmod.text_sha256(text)},
        "window": {"start_date": dt.date(2024, 7, 1), "end_date": dt.date(2024, 9, 30)},
        "channels": [
            {"channel": "zalo", "template_id": "301234", "fallback_after_minutes": after},
            {"channel": "sms", "sender": "UBND CT"},
        ],
        "recipients": {"lists": ["list.csv"]},
        "pricing": {"sms": {"default": 800, "Viettel": 850}, "zalo": {"default": 300}},
    }
    return campaigns.parse(raw, file="<test>")


@pytest.fixture
def spec() -> campaigns.CampaignSpec:
    return make_spec()


@pytest.fixture
def db(tmp_path: Path, spec: campaigns.CampaignSpec) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'fb.db'}")
    Base.metadata.create_all(database.engine)
    with database.engine.begin() as conn:
        conn.execute(insert(Campaign).values(
            id=spec.id, name=spec.name, source_ref=spec.source.reference(), text=spec.text,
            text_sha256=spec.text_sha256, definition=spec.to_json(), created_at=NOW,
            updated_at=NOW))
        conn.execute(insert(Run).values(
            id=1, campaign_id=spec.id, run_key="launch:1", kind="launch", run_date=NOW.date(),
            gateway="zalo", text_sha256=spec.text_sha256, due_at=NOW, created_at=NOW))
    yield database
    database.dispose()


_ids = iter(range(1, 10_000))


def recipient(db: Database, phone: str, carrier: str = "Viettel", name: str | None = "Bà Năm",
              district: str = "Ninh Kiều") -> int:
    with db.engine.begin() as conn:
        return conn.execute(insert(Recipient).values(
            e164=phone, carrier=carrier, name=name, district=district, ward="An Hòa",
            created_at=NOW)).inserted_primary_key[0]


def zalo_delivery(db: Database, rid: int, status: str, *, sent_minutes_ago: float | None = None,
                  reason: str | None = None, code: str | None = None) -> int:
    sent_at = NOW - dt.timedelta(minutes=sent_minutes_ago) if sent_minutes_ago is not None else None
    with db.engine.begin() as conn:
        phone = conn.execute(select(Recipient.e164).where(Recipient.id == rid)).scalar_one()
        return conn.execute(insert(Delivery).values(
            campaign_id="pcmbn", run_id=1, recipient_id=rid, dedupe_key="once", channel="zalo",
            gateway="zalo", address=phone, district="Ninh Kiều", ward="An Hòa", carrier="Viettel",
            status=status, segments=1, cost_vnd=300.0, error_reason=reason, error_code=code,
            provider_message_id=f"msg-{rid}" if sent_at else None,
            queued_at=NOW - dt.timedelta(hours=3), sending_at=sent_at, sent_at=sent_at,
            updated_at=NOW)).inserted_primary_key[0]


def plan(db: Database, spec: campaigns.CampaignSpec, now: dt.datetime = NOW) -> int:
    with db.engine.begin() as conn:
        return fallback.plan_fallbacks(conn, spec, 1, now, gateway_names=NAMES)


def sms_rows(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        return conn.execute(select(Delivery).where(Delivery.channel == "sms")
                            .order_by(Delivery.recipient_id)).all()


def move(db: Database, did: int, *path: str, now: dt.datetime = NOW, **fields: Any) -> None:
    with db.engine.begin() as conn:
        for status in path:
            assert states.apply(conn, [states.Change(did, status, dict(fields))], source="webhook",
                                now=now)[did]


# -- who falls back ---------------------------------------------------------------------------

def test_no_zalo_account_gets_one_sms_and_planning_again_creates_nothing(
        db: Database, spec: campaigns.CampaignSpec) -> None:
    rid = recipient(db, "+84961234567")
    zalo_delivery(db, rid, "failed", reason="no-zalo-account", code="-118")
    assert plan(db, spec) == 1
    assert plan(db, spec) == 0
    assert plan(db, spec, NOW + dt.timedelta(hours=5)) == 0
    [sms] = sms_rows(db)
    analysis = textmod.analyse(TEXT)
    assert (sms.channel, sms.gateway, sms.address, sms.status, sms.run_id, sms.dedupe_key) == (
        "sms", "twilio", "+84961234567", "queued", 1, "once")
    assert analysis.encoding == "UCS-2" and analysis.segments == 2
    assert (sms.encoding, sms.segments, sms.cost_vnd) == ("UCS-2", 2, 1700.0)  # 2 × 850 VND
    assert sms.body is None  # not personalised: the dispatcher sends the campaign text
    assert sms.queued_at == NOW


def test_sent_but_unconfirmed_falls_back_after_fallback_after_minutes(
        db: Database, spec: campaigns.CampaignSpec) -> None:
    late = zalo_delivery(db, recipient(db, "+84961234567"), "sent", sent_minutes_ago=61)
    fresh = zalo_delivery(db, recipient(db, "+84961234568"), "sent", sent_minutes_ago=59)
    assert plan(db, spec) == 1
    [sms] = sms_rows(db)
    assert sms.address == "+84961234567"
    with db.engine.connect() as conn:
        due = fallback.pending_fallback(conn, 1, NOW)
    assert due == NOW + dt.timedelta(minutes=1)  # the fresh one, 59 + 1 minutes
    assert plan(db, spec, due) == 1
    assert [r.address for r in sms_rows(db)] == ["+84961234567", "+84961234568"]
    with db.engine.connect() as conn:
        assert fallback.pending_fallback(conn, 1, due) is None
    with db.engine.connect() as conn:
        statuses = dict(conn.execute(select(Delivery.id, Delivery.status)
                                     .where(Delivery.id.in_([late, fresh]))).all())
    assert statuses == {late: "sent", fresh: "sent"}  # the Zalo rows themselves are untouched


def test_fallback_after_minutes_comes_from_the_campaign(db: Database) -> None:
    spec = make_spec(after=15)
    zalo_delivery(db, recipient(db, "+84961234567"), "sent", sent_minutes_ago=16)
    assert plan(db, spec) == 1


def test_delivered_on_zalo_gets_no_sms(db: Database, spec: campaigns.CampaignSpec) -> None:
    did = zalo_delivery(db, recipient(db, "+84961234567"), "sent", sent_minutes_ago=30)
    move(db, did, "delivered")
    assert plan(db, spec, NOW + dt.timedelta(days=1)) == 0
    assert sms_rows(db) == []
    with db.engine.connect() as conn:
        assert fallback.pending_fallback(conn, 1, NOW) is None


@pytest.mark.parametrize("reason", ["out-of-balance", "authentication", "stop"])
def test_a_broken_account_is_not_a_reason_to_fall_back(db: Database, spec: campaigns.CampaignSpec,
                                                       reason: str) -> None:
    zalo_delivery(db, recipient(db, "+84961234567"), "failed", reason=reason)
    assert plan(db, spec) == 0


@pytest.mark.parametrize(("status", "reason"), [("failed", "rate-limited"),
                                                ("failed", "user-refuses"),
                                                ("undelivered", None)])
def test_other_failures_fall_back_at_once(db: Database, spec: campaigns.CampaignSpec, status: str,
                                          reason: str | None) -> None:
    zalo_delivery(db, recipient(db, "+84961234567"), status, sent_minutes_ago=1, reason=reason)
    assert plan(db, spec) == 1


def test_an_unknown_outcome_never_falls_back_unless_the_operator_says_so(
        db: Database, spec: campaigns.CampaignSpec) -> None:
    """Zalo may have accepted a message whose answer was lost: no SMS on top (issue #15), and
    the report says so; the operator can allow the SMS explicitly."""
    from outreach.reporting import reports
    from outreach.sending import reconcile

    zalo_delivery(db, recipient(db, "+84961234567"), "unknown", sent_minutes_ago=600)
    assert plan(db, spec) == 0
    assert plan(db, spec, NOW + dt.timedelta(days=3)) == 0
    with db.engine.connect() as conn:
        assert fallback.pending_fallback(conn, 1, NOW) is None  # nothing to wait for either
        assert reports.campaign_report(conn, spec.id)["unknown_no_fallback"] == {"zalo": 1}
    with db.engine.begin() as conn:
        [did] = conn.execute(select(Delivery.id)).scalars().all()
        assert reconcile.resolve_unknown(conn, [did], action="fallback", now=NOW) == {did: True}
    assert plan(db, spec) == 1
    assert [r.status for r in sms_rows(db)] == ["queued"]
    with db.engine.connect() as conn:
        assert reports.campaign_report(conn, spec.id)["unknown_no_fallback"] == {}


def test_the_last_channel_never_falls_back(db: Database, spec: campaigns.CampaignSpec) -> None:
    rid = recipient(db, "+84961234567")
    zalo_delivery(db, rid, "failed", reason="no-zalo-account")
    plan(db, spec)
    [sms] = sms_rows(db)
    move(db, sms.id, "sending", "failed", error_reason="invalid-number")
    assert plan(db, spec, NOW + dt.timedelta(days=1)) == 0
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)).scalar_one() == 2


def test_personalised_text_is_rendered_and_a_missing_field_is_skipped(db: Database) -> None:
    spec = make_spec(text="Kính gửi {{name}}: tham gia phòng, chống mua bán người.")
    zalo_delivery(db, recipient(db, "+84961234567", name="Chị Hai"), "failed",
                  reason="no-zalo-account")
    zalo_delivery(db, recipient(db, "+84961234568", name=None), "failed", reason="no-zalo-account")
    assert plan(db, spec) == 2
    first, second = sms_rows(db)
    assert (first.status, first.body) == (
        "queued", "Kính gửi Chị Hai: tham gia phòng, chống mua bán người.")
    assert (second.status, second.error_reason) == ("skipped", "missing-field:name")


def test_a_suppressed_number_gets_an_opted_out_row(db: Database,
                                                   spec: campaigns.CampaignSpec) -> None:
    zalo_delivery(db, recipient(db, "+84961234567"), "failed", reason="no-zalo-account")
    with db.engine.begin() as conn:
        suppression.add(conn, ["+84961234567"], reason="sms-stop", source="test", now=NOW)
    assert plan(db, spec) == 1
    [sms] = sms_rows(db)
    assert (sms.status, sms.error_reason) == ("opted_out", "suppressed")


def test_pending_fallback_without_spec_reads_the_stored_campaign(db: Database) -> None:
    zalo_delivery(db, recipient(db, "+84961234567"), "sent", sent_minutes_ago=10)
    with db.engine.connect() as conn:
        assert fallback.pending_fallback(conn, 1, NOW) == NOW + dt.timedelta(minutes=50)
        assert fallback.pending_fallback(conn, 1, NOW, make_spec(after=20)) == (
            NOW + dt.timedelta(minutes=10))


# -- nobody charged twice ----------------------------------------------------------------------

def test_zalo_receipt_after_the_sms_was_planned_skips_the_sms(db: Database,
                                                              spec: campaigns.CampaignSpec) -> None:
    zid = zalo_delivery(db, recipient(db, "+84961234567"), "sent", sent_minutes_ago=65)
    assert plan(db, spec) == 1
    move(db, zid, "delivered")  # the late user_received_message
    with db.engine.begin() as conn:
        assert fallback.cancel_superseded(conn, 1, NOW) == 1
        assert fallback.cancel_superseded(conn, 1, NOW) == 0
    [sms] = sms_rows(db)
    assert (sms.status, sms.error_reason) == ("skipped", "reached-by-zalo")
    with db.engine.connect() as conn:
        ev = conn.execute(select(DeliveryEvent).where(DeliveryEvent.delivery_id == sms.id)).one()
    assert (ev.old_status, ev.new_status, ev.applied) == ("queued", "skipped", True)


def test_an_sms_already_being_sent_is_not_cancelled(db: Database,
                                                    spec: campaigns.CampaignSpec) -> None:
    zid = zalo_delivery(db, recipient(db, "+84961234567"), "sent", sent_minutes_ago=65)
    plan(db, spec)
    [sms] = sms_rows(db)
    move(db, sms.id, "sending")
    move(db, zid, "delivered")
    with db.engine.begin() as conn:
        assert fallback.cancel_superseded(conn, 1, NOW) == 0
    assert sms_rows(db)[0].status == "sending"


def test_every_recipient_ends_reached_by_exactly_one_channel(db: Database,
                                                             spec: campaigns.CampaignSpec) -> None:
    a = zalo_delivery(db, recipient(db, "+84961000001"), "sent", sent_minutes_ago=5)
    zalo_delivery(db, recipient(db, "+84961000002"), "failed", reason="no-zalo-account",
                  code="-118")
    c = zalo_delivery(db, recipient(db, "+84961000003"), "sent", sent_minutes_ago=70)
    zalo_delivery(db, recipient(db, "+84961000004"), "sent", sent_minutes_ago=70)
    move(db, a, "delivered")  # A: Zalo receipt in time
    assert plan(db, spec) == 3  # B at once; C and D past 60 minutes
    move(db, c, "delivered")  # C: Zalo receipt late, SMS still queued
    later = NOW + dt.timedelta(minutes=1)
    with db.engine.begin() as conn:
        assert fallback.cancel_superseded(conn, 1, later) == 1
    for sms in sms_rows(db):  # the dispatcher sends what is still queued
        if sms.status == "queued":
            move(db, sms.id, "sending", "sent", "delivered", now=later)
    assert plan(db, spec, later + dt.timedelta(days=1)) == 0
    with db.engine.connect() as conn:
        reached = conn.execute(select(Recipient.e164, Delivery.channel)
                               .join(Delivery, Delivery.recipient_id == Recipient.id)
                               .where(Delivery.status == "delivered")
                               .order_by(Recipient.e164)).all()
        assert fallback.pending_fallback(conn, 1, later) is None
    assert reached == [("+84961000001", "zalo"), ("+84961000002", "sms"),
                       ("+84961000003", "zalo"), ("+84961000004", "sms")]


# -- end to end: the dispatcher with the Zalo gateway (fake server) and an SMS mock -------------

def test_dispatcher_zalo_then_sms_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    from outreach.sending import ops
    from outreach.clock import FakeClock
    from outreach.gateways.mock import MockGateway
    from outreach.gateways.zalo import ZaloGateway
    from outreach.receipts.receiver import apply_zalo_event as apply_event
    from tests.fakes.zalo_server import FakeZalo, isolate
    from tests.helpers import approve, fresh_db, in_window, load, numbers, write_campaign

    isolate(monkeypatch)
    channels = """
[[channels]]
channel = "zalo"
template_id = "301234"
fallback_after_minutes = 60

[[channels]]
channel = "sms"
sender = "TEST"
"""
    spec = load(write_campaign(tmp_path, n=3, channels=channels))
    db = fresh_db(tmp_path)
    approve(db, spec)  # Zalo reaches phones: a second person's approval (outreach/approvals.py)
    no_zalo, receipt, silent = numbers(3)
    clock = FakeClock(in_window())
    with FakeZalo() as z:
        z.template("301234")  # approved, no parameter: the launch reads it first
        z.script(no_zalo, "no_zalo")
        zalo = ZaloGateway(db=db, clock=clock, **z.gateway_options())
        z.seed(zalo.tokens)
        sms = MockGateway(channel="sms")
        first = ops.launch(db, spec, gateways={"zalo": zalo, "sms": sms}, clock=clock).report
        assert first is not None and first.stopped == "awaiting-receipts"
        assert first.resume_at == clock.now() + dt.timedelta(minutes=60)
        assert sms.sent_to() == [no_zalo]  # -118: SMS at once
        [zns_receipt] = [s for s in z.zns() if s.phone == receipt[1:]]
        with db.engine.begin() as conn:  # Zalo's webhook for one of the two others
            apply_event(conn, {"event_name": "user_received_message", "timestamp": "1",
                               "message": {"msg_id": zns_receipt.msg_id,
                                           "tracking_id": zns_receipt.tracking_id,
                                           "delivery_time": "1722304980000"}}, now=clock.now())
        clock.set(first.resume_at)
        second = ops.resume(db, spec, gateways={"zalo": zalo, "sms": sms}, clock=clock)
        assert second.stopped is None, second
        assert sms.sent_to() == [no_zalo, silent]  # the silent one after 60 minutes
        assert len(z.zns()) == 2 and len(z.send_requests()) == 3  # Zalo: each number once
    with db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.address, Delivery.channel, Delivery.status)
                            .order_by(Delivery.address, Delivery.channel)).all()
    assert rows == [(no_zalo, "sms", "sent"), (no_zalo, "zalo", "failed"),
                    (receipt, "zalo", "delivered"),
                    (silent, "sms", "sent"), (silent, "zalo", "sent")]

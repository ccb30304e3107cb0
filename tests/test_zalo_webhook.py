"""The Zalo webhook: signature check, delivery receipts, idempotent retries, early receipts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import insert, select

from outreach.receipts import writer as receipts
from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.gateways.zalo_webhook import (compute_signature,
                                            parse_event, verify_signature, webhook_settings)
from outreach.receipts.receiver import apply_zalo_event as apply_event
from outreach.receipts.receiver import zalo_blueprint as blueprint
from outreach.ledger.models import (Base, Campaign, Delivery, DeliveryEvent, PendingReceipt, Recipient,
                             Run)

APP_ID = "3962172718436219112"
SECRET = "oa-webhook-s3cret"
NOW = dt.datetime(2024, 7, 30, 2, 5, tzinfo=dt.timezone.utc)
DELIVERY_MS = 1722304980000  # 2024-07-30 02:03:00 UTC


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'wh.db'}")
    Base.metadata.create_all(database.engine)
    with database.engine.begin() as conn:
        conn.execute(insert(Campaign).values(
            id="c", name="c", source_ref="-", text="x", text_sha256="0" * 64, definition={},
            created_at=NOW, updated_at=NOW))
        conn.execute(insert(Run).values(
            id=1, campaign_id="c", run_key="launch:1", kind="launch", run_date=NOW.date(),
            gateway="zalo", text_sha256="0" * 64, due_at=NOW, created_at=NOW))
        conn.execute(insert(Recipient).values(id=1, e164="+84912345678", created_at=NOW))
    yield database
    database.dispose()


def add_delivery(db: Database, did: int = 11, *, status: str = "sent",
                 msg_id: str | None = "msg-aaa") -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(Delivery).values(
            id=did, campaign_id="c", run_id=1, recipient_id=1, dedupe_key=f"k{did}",
            channel="zalo", gateway="zalo", address="+84912345678", status=status,
            provider_message_id=msg_id, queued_at=NOW, updated_at=NOW,
            sent_at=NOW if status == "sent" else None))


@pytest.fixture
def client(db: Database):  # noqa: ANN201
    app = Flask("zalo-webhook-test")
    app.config.update(OUTREACH_DB=db, ZALO_APP_ID=APP_ID, ZALO_WEBHOOK_SECRET=SECRET,
                      OUTREACH_CLOCK=FakeClock(NOW))
    app.register_blueprint(blueprint)
    return app.test_client()


def event(msg_id: str = "msg-aaa", tracking_id: str | None = "11",
          name: str = "user_received_message") -> dict:
    message = {"delivery_time": str(DELIVERY_MS), "msg_id": msg_id}
    if tracking_id is not None:
        message["tracking_id"] = tracking_id
    return {"event_name": name, "app_id": APP_ID, "timestamp": "1722304981000",
            "sender": {"id": "579745863508352884"}, "recipient": {"id": "84912345678"},
            "message": message}


def post(client, payload: dict, *, secret: str = SECRET, prefix: str = "mac=",  # noqa: ANN001
         signature: str | None = None, body: bytes | None = None):  # noqa: ANN201
    raw = body if body is not None else json.dumps(payload, separators=(",", ":")).encode()
    sig = signature if signature is not None else prefix + compute_signature(
        APP_ID, raw, str(payload.get("timestamp", "")), secret)
    return client.post("/webhooks/zalo", data=raw, content_type="application/json",
                       headers={"X-ZEvent-Signature": sig, "X-ZEvent-Server": "ZNS"})


def row(db: Database, did: int = 11) -> Delivery:
    with db.engine.connect() as conn:
        return conn.execute(select(Delivery).where(Delivery.id == did)).one()


def events(db: Database) -> list:
    with db.engine.connect() as conn:
        return conn.execute(select(DeliveryEvent).order_by(DeliveryEvent.id)).all()


def pending(db: Database) -> list:
    with db.engine.connect() as conn:
        return conn.execute(select(PendingReceipt).order_by(PendingReceipt.id)).all()


# -- signature ----------------------------------------------------------------------------------

def test_signature_formula_is_plain_sha256_of_app_id_body_timestamp_secret() -> None:
    import hashlib

    body = b'{"event_name":"user_received_message","timestamp":"1722304981000"}'
    expected = hashlib.sha256(APP_ID.encode() + body + b"1722304981000" + SECRET.encode()).hexdigest()
    assert compute_signature(APP_ID, body, "1722304981000", SECRET) == expected
    assert verify_signature(f"mac={expected}", APP_ID, body, "1722304981000", SECRET)
    assert verify_signature(expected.upper(), APP_ID, body, "1722304981000", SECRET)
    assert not verify_signature(expected, APP_ID, body + b" ", "1722304981000", SECRET)
    assert not verify_signature(None, APP_ID, body, "1722304981000", SECRET)


def test_secret_falls_back_from_config_to_oa_secret_to_app_secret() -> None:
    assert webhook_settings({"ZALO_APP_ID": "1", "ZALO_WEBHOOK_SECRET": "w"}, {}) == ("1", "w")
    assert webhook_settings({}, {"ZALO_APP_ID": "2", "ZALO_OA_SECRET_KEY": "oa",
                                 "ZALO_SECRET_KEY": "app"}) == ("2", "oa")
    assert webhook_settings({}, {"ZALO_APP_ID": "2", "ZALO_SECRET_KEY": "app"}) == ("2", "app")


# -- receipts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["mac=", ""])
def test_signed_delivery_receipt_marks_delivered_at_zalos_time(client, db: Database,  # noqa: ANN001
                                                               prefix: str) -> None:
    add_delivery(db)
    resp = post(client, event(), prefix=prefix)
    assert resp.status_code == 200
    d = row(db)
    assert d.status == "delivered"
    assert d.delivered_at == dt.datetime(2024, 7, 30, 2, 3, tzinfo=dt.timezone.utc)
    [ev] = events(db)
    assert (ev.source, ev.old_status, ev.new_status, ev.applied, ev.provider_status) == (
        "webhook", "sent", "delivered", True, "user_received_message")
    assert "msg-aaa" in ev.detail


@pytest.mark.parametrize("how", ["wrong-secret", "tampered-body", "missing", "garbage"])
def test_forged_webhook_is_403_and_changes_nothing(client, db: Database, how: str) -> None:  # noqa: ANN001
    add_delivery(db)
    payload = event()
    if how == "wrong-secret":
        resp = post(client, payload, secret="guess")
    elif how == "tampered-body":
        original = json.dumps(payload, separators=(",", ":")).encode()
        good = "mac=" + compute_signature(APP_ID, original, payload["timestamp"], SECRET)
        payload["message"]["msg_id"] = "msg-other"
        resp = post(client, payload, signature=good)
    elif how == "missing":
        resp = client.post("/webhooks/zalo", data=json.dumps(payload),
                           content_type="application/json")
    else:
        resp = post(client, payload, signature="mac=0123")
    assert resp.status_code == 403
    assert row(db).status == "sent"
    assert events(db) == [] and pending(db) == []


def test_retried_webhook_is_idempotent(client, db: Database) -> None:  # noqa: ANN001
    add_delivery(db)
    for _ in range(4):  # Zalo retries at 30 s, 5 min, 15 min...
        assert post(client, event()).status_code == 200
    assert row(db).status == "delivered"
    assert len(events(db)) == 1


def test_matches_by_tracking_id_before_the_msg_id_is_stored(client, db: Database) -> None:  # noqa: ANN001
    add_delivery(db, status="sending", msg_id=None)  # receipt beat our own write of msg_id
    assert post(client, event(msg_id="msg-new")).status_code == 200
    d = row(db)
    assert (d.status, d.provider_message_id) == ("delivered", "msg-new")


def test_a_foreign_tracking_id_is_not_trusted_when_msg_ids_differ(client, db: Database) -> None:  # noqa: ANN001
    # another system sharing the OA may use "11" as its own tracking id
    add_delivery(db, msg_id="msg-ours")
    assert post(client, event(msg_id="msg-theirs", tracking_id="11")).status_code == 200
    assert row(db).status == "sent"
    [p] = pending(db)
    assert p.provider_message_id == "msg-theirs" and p.delivery_id is None


def test_event_before_its_delivery_row_is_kept_then_applied(client, db: Database) -> None:  # noqa: ANN001
    payload = event(msg_id="msg-early", tracking_id="12")
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200  # Zalo's retry: still one pending row
    [p] = pending(db)
    assert (p.gateway, p.event_key, p.applied_at) == ("zalo", "msg-early:user_received_message",
                                                      None)
    add_delivery(db, 12, msg_id="msg-early")
    with db.engine.begin() as conn:
        assert receipts.apply_pending(conn, now=NOW, delivery_ids=[12]) == 1
    assert row(db, 12).status == "delivered"
    assert post(client, payload).status_code == 200  # a later retry adds nothing
    assert len(events(db)) == 1
    assert pending(db)[0].applied_at is not None


def test_seen_after_received_adds_an_event_but_never_regresses(client, db: Database) -> None:  # noqa: ANN001
    add_delivery(db)
    post(client, event())
    seen = event(name="user_seen_message")
    seen["message"] = {"msg_ids": ["msg-aaa"]}
    assert post(client, seen).status_code == 200
    assert post(client, seen).status_code == 200
    assert row(db).status == "delivered"
    assert [(e.provider_status, e.applied) for e in events(db)] == [
        ("user_received_message", True), ("user_seen_message", False)]


def test_seen_implies_delivered_when_the_receipt_was_lost(client, db: Database) -> None:  # noqa: ANN001
    add_delivery(db)
    seen = event(name="user_seen_message")
    seen["message"] = {"msg_ids": ["msg-aaa"]}
    post(client, seen)
    assert row(db).status == "delivered"


@pytest.mark.parametrize("name", ["user_send_text", "follow", "unfollow", "change_template_status"])
def test_other_events_are_acknowledged_and_ignored(client, db: Database, name: str) -> None:  # noqa: ANN001
    add_delivery(db)
    payload = event(name=name)
    payload["follower"] = {"id": "579745863508352884"}
    assert post(client, payload).status_code == 200
    assert row(db).status == "sent" and events(db) == [] and pending(db) == []


def test_unreadable_body_and_missing_configuration(client, db: Database) -> None:  # noqa: ANN001
    assert post(client, {}, body=b"not json", signature="mac=00").status_code == 400
    app = Flask("unconfigured")
    app.config.update(OUTREACH_DB=db)
    app.register_blueprint(blueprint)
    resp = post(app.test_client(), event())
    assert resp.status_code == 503


def test_parse_event_keys() -> None:
    updates, keys = parse_event(event())
    assert keys == ["msg-aaa:user_received_message"]
    assert updates[0].delivery_id == 11 and updates[0].provider_message_id == "msg-aaa"
    assert updates[0].status == "delivered"
    assert parse_event(event(name="user_send_text")) == ([], [])


def test_apply_event_counts(db: Database) -> None:
    add_delivery(db)
    with db.engine.begin() as conn:
        assert apply_event(conn, event(), now=NOW)["applied"] == 1
        assert apply_event(conn, event(), now=NOW)["duplicate"] == 1
        assert apply_event(conn, event(msg_id="zzz", tracking_id=None), now=NOW)["pending"] == 1
        assert apply_event(conn, event(name="follow"), now=NOW)["ignored"] == 1


def test_through_the_projects_webhook_app(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    webhooks = pytest.importorskip("outreach.receipts.receiver")
    monkeypatch.setenv("ZALO_APP_ID", APP_ID)
    monkeypatch.setenv("ZALO_OA_SECRET_KEY", SECRET)  # the OA secret wins over the app secret
    monkeypatch.setenv("ZALO_SECRET_KEY", "app-secret-not-used-for-webhooks")
    add_delivery(db)
    client = webhooks.create_app(db, clock=FakeClock(NOW)).test_client()
    assert post(client, event(), secret="app-secret-not-used-for-webhooks").status_code == 403
    assert row(db).status == "sent"
    assert post(client, event()).status_code == 200
    assert row(db).status == "delivered"


def test_a_tracking_id_naming_an_sms_delivery_is_not_trusted(client, db: Database) -> None:  # noqa: ANN001
    with db.engine.begin() as conn:
        conn.execute(insert(Delivery).values(
            id=11, campaign_id="c", run_id=1, recipient_id=1, dedupe_key="sms", channel="sms",
            gateway="twilio", address="+84912345678", status="sending", queued_at=NOW,
            updated_at=NOW))
    assert post(client, event(msg_id="msg-foreign", tracking_id="11")).status_code == 200
    assert row(db).status == "sending" and events(db) == []
    assert pending(db)[0].provider_message_id == "msg-foreign"

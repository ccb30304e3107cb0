"""Receipts into the ledger: signed Twilio callbacks (webhook app, CLI) and the status sync."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from tests.fakes import waitress_on_loopback
from tests.fakes.twilio_server import AUTH_TOKEN, FakeTwilio, twilio_server  # noqa: F401 (fixture)
from sqlalchemy import insert, select, update
from twilio.request_validator import RequestValidator

from outreach.receipts import writer as receipts
from outreach.cli.webhooks import webhooks as webhooks_cli
from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.gateways.base import OutboundMessage
from outreach.gateways.twilio import TwilioGateway
from outreach.ledger.models import (Base, Campaign, Delivery, DeliveryEvent, PendingReceipt, Recipient,
                             Run)
from outreach.receipts.sync import sync_campaign
from outreach.receipts.receiver import create_app

PUBLIC = "https://hooks.example.vn"
T0 = dt.datetime(2024, 7, 30, 1, 0, tzinfo=dt.timezone.utc)  # 08:00 in Cần Thơ


# -- a ledger in a fresh SQLite database -------------------------------------------------------


@pytest.fixture
def db(tmp_path: Any) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'outreach.db'}")
    Base.metadata.create_all(database.engine)
    with database.engine.begin() as conn:
        conn.execute(insert(Campaign).values(
            id="tiem-chung-2024", name="Tiêm chủng mở rộng", source_ref="test", text="Thông báo",
            text_sha256="0" * 64, definition={}, status="active", created_at=T0, updated_at=T0))
        conn.execute(insert(Run).values(
            id=1, campaign_id="tiem-chung-2024", run_key="launch:1", kind="launch",
            run_date=T0.date(), status="running", gateway="twilio", text_sha256="0" * 64,
            due_at=T0, created_at=T0, options={}))
    yield database
    database.dispose()


def poison_receipts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any batch holding a receipt for message SID ``SMpoison`` fail to apply."""
    real = receipts.apply_updates

    def poisoned(conn: Any, updates: Any, **kw: Any) -> Any:
        if any(u.provider_message_id == "SMpoison" for u in updates):
            raise RuntimeError("boom")
        return real(conn, updates, **kw)

    monkeypatch.setattr(receipts, "apply_updates", poisoned)


def add_delivery(db: Database, number: str, *, status: str = "sent", sid: str | None = None,
                 gateway: str = "twilio") -> int:
    with db.engine.begin() as conn:
        rid = conn.execute(insert(Recipient).values(e164=number, created_at=T0)
                           ).inserted_primary_key[0]
        return conn.execute(insert(Delivery).values(
            campaign_id="tiem-chung-2024", run_id=1, recipient_id=rid, dedupe_key="once",
            channel="sms", gateway=gateway, address=number, status=status,
            provider_message_id=sid, provider_status="queued" if sid else None, attempts=1,
            queued_at=T0, sending_at=T0, sent_at=T0 if status == "sent" else None,
            updated_at=T0)).inserted_primary_key[0]


def delivery(db: Database, did: int) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(select(Delivery).where(Delivery.id == did)).one()


def events(db: Database, did: int | None = None) -> list[Any]:
    stmt = select(DeliveryEvent).order_by(DeliveryEvent.id)
    if did is not None:
        stmt = stmt.where(DeliveryEvent.delivery_id == did)
    with db.engine.connect() as conn:
        return conn.execute(stmt).all()


# -- signed callbacks --------------------------------------------------------------------------


class Twilio:
    """Posts status callbacks the way Twilio does: form body, X-Twilio-Signature over the
    public URL and the sorted parameters."""

    def __init__(self, client: Any, token: str = AUTH_TOKEN) -> None:
        self.client = client
        self.validator = RequestValidator(token)

    def post(self, path: str, params: dict[str, str], *, signature: str | None = "sign",
             signed_url: str | None = None) -> Any:
        headers = {}
        if signature == "sign":
            signature = self.validator.compute_signature(signed_url or PUBLIC + path, params)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        return self.client.post(path, data=params, headers=headers)


def callback(sid: str, status: str, error_code: str | None = None,
             to: str = "+84912345001") -> dict[str, str]:
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
              "AccountSid": "AC0123456789abcdef0123456789abcdef", "From": "SYTECANTHO",
              "To": to, "ApiVersion": "2010-04-01"}
    if error_code:
        params["ErrorCode"] = error_code
    return params


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def twilio(db: Database, clock: FakeClock) -> Twilio:
    app = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC + "/", clock=clock)
    return Twilio(app.test_client())


SID_A = "SM" + "a" * 32
SID_B = "SM" + "b" * 32


class TestTwilioCallbacks:
    def test_healthz(self, twilio: Twilio) -> None:
        answer = twilio.client.get("/healthz")
        assert (answer.status_code, answer.get_json()) == (200, {"ok": True})

    def test_signed_delivered_callback_moves_the_row(self, db: Database, twilio: Twilio,
                                                     clock: FakeClock) -> None:
        did = add_delivery(db, "+84912345001", sid=SID_A)
        clock.advance(90)
        answer = twilio.post(f"/webhooks/twilio/status/{did}", callback(SID_A, "delivered"))
        assert answer.status_code == 204
        row = delivery(db, did)
        assert (row.status, row.provider_status, row.delivered_at, row.final_at) == (
            "delivered", "delivered", T0 + dt.timedelta(seconds=90),
            T0 + dt.timedelta(seconds=90))
        (event,) = events(db, did)
        assert (event.source, event.old_status, event.new_status, event.applied) == (
            "webhook", "sent", "delivered", True)
        assert "+84912345001" not in event.detail and "091****001" in event.detail

    @pytest.mark.parametrize("how", ["missing", "forged", "wrong-token", "internal-url",
                                     "tampered"])
    def test_bad_signature_is_403_and_changes_nothing(self, db: Database, twilio: Twilio,
                                                      how: str) -> None:
        did = add_delivery(db, "+84912345001", sid=SID_A)
        path = f"/webhooks/twilio/status/{did}"
        params = callback(SID_A, "failed", "30007")
        if how == "missing":
            answer = twilio.post(path, params, signature=None)
        elif how == "forged":
            answer = twilio.post(path, params, signature="bm90IGEgc2lnbmF0dXJl")
        elif how == "wrong-token":
            answer = Twilio(twilio.client, token="another-token").post(path, params)
        elif how == "internal-url":  # what a proxy forwards to, not what Twilio called
            answer = twilio.post(path, params, signed_url="http://localhost" + path)
        else:
            signature = twilio.validator.compute_signature(PUBLIC + path, params)
            answer = twilio.post(path, {**params, "MessageStatus": "delivered"},
                                 signature=signature)
        assert answer.status_code == 403
        assert delivery(db, did).status == "sent"
        assert events(db) == []
        with db.engine.connect() as conn:
            assert conn.execute(select(PendingReceipt)).all() == []

    def test_receipts_out_of_order_and_twice(self, db: Database, twilio: Twilio,
                                             clock: FakeClock) -> None:
        """cases/README.md "Receipts out of order and twice"."""
        a = add_delivery(db, "+84912345001", sid=SID_A)
        b = add_delivery(db, "+84912345002", sid=SID_B)
        script = [(a, SID_A, "queued", None), (a, SID_A, "delivered", None),
                  (b, SID_B, "sent", None), (a, SID_A, "sent", None),
                  (b, SID_B, "failed", "30003"), (a, SID_A, "delivered", None),
                  (b, SID_B, "sent", None)]
        first_delivered = None
        for did, sid, status, code in script:
            clock.advance(10)
            if did == a and status == "delivered" and first_delivered is None:
                first_delivered = clock.now()
            answer = twilio.post(f"/webhooks/twilio/status/{did}", callback(sid, status, code))
            assert 200 <= answer.status_code < 300
        row_a, row_b = delivery(db, a), delivery(db, b)
        assert (row_a.status, row_a.delivered_at) == ("delivered", first_delivered)
        assert (row_b.status, row_b.error_code, row_b.error_reason) == (
            "failed", "30003", "unreachable")
        assert row_b.delivered_at is None
        kept = events(db)
        assert len(kept) == 7
        assert [(e.delivery_id, e.provider_status, e.new_status, e.applied) for e in kept] == [
            (a, "queued", "sent", False), (a, "delivered", "delivered", True),
            (b, "sent", "sent", False), (a, "sent", "sent", False),
            (b, "failed", "failed", True), (a, "delivered", "delivered", False),
            (b, "sent", "sent", False)]
        assert sum(1 for e in kept if e.new_status == "delivered" and e.applied) == 1

    def test_callback_before_the_sid_is_stored_finds_the_delivery_by_url(
            self, db: Database, twilio: Twilio) -> None:
        did = add_delivery(db, "+84912345001", status="sending", sid=None)
        answer = twilio.post(f"/webhooks/twilio/status/{did}", callback(SID_A, "sent"))
        assert answer.status_code == 204
        row = delivery(db, did)
        assert (row.status, row.provider_message_id, row.provider_status) == (
            "sent", SID_A, "sent")

    def test_unknown_sid_without_id_is_pending_then_applied(self, db: Database, twilio: Twilio,
                                                            clock: FakeClock) -> None:
        for _ in range(2):  # Twilio may repeat a callback: kept once
            answer = twilio.post("/webhooks/twilio/status", callback(SID_B, "delivered"))
            assert answer.status_code == 204
        with db.engine.connect() as conn:
            (pending,) = conn.execute(select(PendingReceipt)).all()
        assert (pending.provider_message_id, pending.delivery_id, pending.applied_at) == (
            SID_B, None, None)
        assert "+84912345001" not in str(pending.payload)
        did = add_delivery(db, "+84912345002", status="sending")
        clock.advance(5)
        with db.engine.begin() as conn:  # the dispatcher stores the SID, then replays
            conn.execute(update(Delivery).where(Delivery.id == did)
                         .values(provider_message_id=SID_B, status="sent"))
            assert receipts.apply_pending(conn, now=clock.now(), provider_ids=[SID_B]) == 1
        row = delivery(db, did)
        assert (row.status, row.delivered_at) == ("delivered", clock.now())
        with db.engine.connect() as conn:
            assert conn.execute(select(PendingReceipt.applied_at)).scalar_one() == clock.now()

    def test_callback_without_id_matches_by_sid(self, db: Database, twilio: Twilio) -> None:
        did = add_delivery(db, "+84912345001", sid=SID_A)
        assert twilio.post("/webhooks/twilio/status",
                           callback(SID_A, "undelivered", "30005")).status_code == 204
        row = delivery(db, did)
        assert (row.status, row.error_code, row.error_reason) == (
            "undelivered", "30005", "unknown-handset")

    def test_inbound_and_malformed(self, db: Database, twilio: Twilio) -> None:
        did = add_delivery(db, "+84912345001", sid=SID_A)
        assert twilio.post(f"/webhooks/twilio/status/{did}",
                           callback(SID_A, "received")).status_code == 204
        assert twilio.post(f"/webhooks/twilio/status/{did}",
                           {"MessageSid": SID_A}).status_code == 400
        assert events(db) == []

    def test_without_a_token_the_twilio_routes_are_off(self, db: Database) -> None:
        client = create_app(db).test_client()
        assert client.post("/webhooks/twilio/status/1", data={}).status_code == 404
        assert client.get("/healthz").status_code == 200

    def test_the_zalo_route_is_registered_with_the_db(self, db: Database) -> None:
        # one receiver owns every provider's routes (issue #14): the Zalo route is this
        # module's, registered directly (no importlib back up from gateways/), on the same db
        from outreach.receipts import receiver as module
        from outreach.gateways import zalo_webhook

        app = create_app(db, twilio_auth_token=AUTH_TOKEN)
        assert module.zalo_blueprint.name in app.blueprints
        assert app.config["OUTREACH_DB"] is db
        assert "/webhooks/zalo" in {r.rule for r in app.url_map.iter_rules()}
        assert not hasattr(zalo_webhook, "blueprint")  # the adapter parses, it does not serve
        assert "flask" not in open(zalo_webhook.__file__, encoding="utf-8").read()

    def test_over_real_http_with_waitress_and_many_threads(self, db: Database) -> None:
        dids = [add_delivery(db, f"+849123450{i:02d}", sid=f"SM{i:032x}") for i in range(40)]
        app = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC)
        validator = RequestValidator(AUTH_TOKEN)
        codes: list[int] = []

        def post(base: str, did: int) -> None:
            with requests.Session() as session:
                for status in ("sent", "delivered", "delivered"):
                    path = f"/webhooks/twilio/status/{did}"
                    params = callback(f"SM{did - dids[0]:032x}", status)
                    signature = validator.compute_signature(PUBLIC + path, params)
                    codes.append(session.post(base + path, data=params, timeout=10,
                                              headers={"X-Twilio-Signature": signature}
                                              ).status_code)

        with waitress_on_loopback(app, threads=8) as port:
            workers = [threading.Thread(target=post, args=(f"http://127.0.0.1:{port}", d))
                       for d in dids]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        assert codes == [204] * 120
        with db.engine.connect() as conn:
            assert conn.execute(select(Delivery.status)).scalars().all() == ["delivered"] * 40
        assert len(events(db)) == 120


def test_group_commit_isolates_a_failing_receipt(db: Database,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach.receipts import receiver as module
    from outreach.gateways.base import StatusUpdate

    a = add_delivery(db, "+84912345001", sid=SID_A)
    b = add_delivery(db, "+84912345002", sid=SID_B)
    poison_receipts(monkeypatch)
    writer = module.ReceiptWriter(db)
    batch = [module._Item(StatusUpdate("delivered", SID_A, a, "delivered"), "k1", T0),
             module._Item(StatusUpdate("delivered", "SMpoison", None, "delivered"), "k2", T0),
             module._Item(StatusUpdate("failed", SID_B, b, "failed", error_code="30007"), "k3",
                          T0)]
    writer._apply(batch)
    assert [i.done for i in batch] == [True, True, True]
    assert [type(i.error).__name__ for i in batch] == ["NoneType", "RuntimeError", "NoneType"]
    assert (delivery(db, a).status, delivery(db, b).status) == ("delivered", "failed")
    assert writer.transactions == 2  # the batch failed, then two of three alone succeeded


def test_group_commit_under_concurrency(db: Database) -> None:
    from outreach.receipts import receiver as module
    from outreach.gateways.base import StatusUpdate

    dids = [add_delivery(db, f"+849123451{i:02d}", sid=f"SM{i:032x}") for i in range(32)]
    writer = module.ReceiptWriter(db)
    start = threading.Barrier(32)

    def receipt(i: int) -> None:
        start.wait()
        for status in ("sent", "delivered"):
            writer.write(StatusUpdate(status, f"SM{i:032x}", dids[i], status), f"k{i}{status}", T0)

    workers = [threading.Thread(target=receipt, args=(i,)) for i in range(32)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    with db.engine.connect() as conn:
        assert conn.execute(select(Delivery.status)).scalars().all() == ["delivered"] * 32
    assert len(events(db)) == 64
    assert 1 <= writer.transactions <= 64


def _row_and_events(db: Database, did: int) -> tuple[Any, list[Any]]:
    row = delivery(db, did)
    return ((row.status, row.provider_message_id, row.provider_status, row.error_code,
             row.error_reason, row.sent_at, row.delivered_at, row.final_at, row.updated_at),
            [(e.at, e.source, e.old_status, e.new_status, e.applied, e.provider_status,
              e.error_code, e.detail) for e in events(db, did)])


class TestStatusCallbacksMiddleware:
    """The WSGI fast path (form POSTs to the status routes with a public base URL) and the Flask
    route behind it write the same rows and answer the same codes."""

    SCRIPT = [("sent", None), ("delivered", None), ("delivered", None), ("sent", None)]

    def test_fast_path_writes_what_the_flask_route_writes(self, db: Database,
                                                          clock: FakeClock) -> None:
        fast_app = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC,
                              clock=clock)
        flask_app = create_app(db, twilio_auth_token=AUTH_TOKEN, clock=clock)  # request.url
        fast, slow = Twilio(fast_app.test_client()), Twilio(flask_app.test_client())
        a = add_delivery(db, "+84912345001", status="sending", sid=None)
        b = add_delivery(db, "+84912345002", status="sending", sid=None)
        c = add_delivery(db, "+84912345003", sid=SID_A)
        d = add_delivery(db, "+84912345004", sid=SID_B)
        for status, code in self.SCRIPT + [("undelivered", "30005")]:
            clock.advance(7)
            assert fast.post(f"/webhooks/twilio/status/{a}",
                             callback(SID_A[:-1] + "1", status, code)).status_code == 204
            assert slow.post(f"/webhooks/twilio/status/{b}", callback(
                SID_A[:-1] + "2", status, code), signed_url=f"http://localhost/webhooks/"
                f"twilio/status/{b}").status_code == 204
        for status, code in [("failed", "30007"), ("delivered", None)]:  # matched by SID
            clock.advance(7)
            assert fast.post("/webhooks/twilio/status",
                             callback(SID_A, status, code)).status_code == 204
            assert slow.post("/webhooks/twilio/status", callback(SID_B, status, code),
                             signed_url="http://localhost/webhooks/twilio/status"
                             ).status_code == 204
        assert fast_app.wsgi_app.handled == 7
        assert flask_app.wsgi_app.handled == 0  # no public base URL: Flask answered
        row_a, events_a = _row_and_events(db, a)
        row_b, events_b = _row_and_events(db, b)
        assert row_a[0] == "delivered" and row_a[1] == SID_A[:-1] + "1"
        assert (row_a[2:], len(events_a)) == (row_b[2:], 5)
        assert [e[:5] for e in events_a] == [
            (T0 + dt.timedelta(seconds=7), "webhook", "sending", "sent", True),
            (T0 + dt.timedelta(seconds=14), "webhook", "sent", "delivered", True),
            (T0 + dt.timedelta(seconds=21), "webhook", "delivered", "delivered", False),
            (T0 + dt.timedelta(seconds=28), "webhook", "delivered", "sent", False),
            (T0 + dt.timedelta(seconds=35), "webhook", "delivered", "undelivered", False)]
        assert [e[:7] for e in events_a] == [e[:7] for e in events_b]
        assert [e[7].replace(SID_A[:-1] + "1", SID_A[:-1] + "2") for e in events_a] == [
            e[7] for e in events_b]  # the same raw receipt kept, the number masked
        row_c, events_c = _row_and_events(db, c)
        row_d, events_d = _row_and_events(db, d)
        assert row_c[0] == "failed" and row_c[3:5] == ("30007", "carrier-filtered")
        assert (row_c[2:], [e[:7] for e in events_c]) == (row_d[2:], [e[:7] for e in events_d])

    def test_query_string_is_part_of_the_signed_url(self, db: Database, twilio: Twilio) -> None:
        did = add_delivery(db, "+84912345001", sid=SID_A)
        path = f"/webhooks/twilio/status/{did}?campaign=tiem-chung-2024"
        assert twilio.post(path, callback(SID_A, "delivered")).status_code == 204
        assert delivery(db, did).status == "delivered"

    def test_refusals_match_the_flask_route(self, db: Database, twilio: Twilio) -> None:
        did = add_delivery(db, "+84912345001", sid=SID_A)
        path = f"/webhooks/twilio/status/{did}"
        middleware = twilio.client.application.wsgi_app
        forged = twilio.post(path, callback(SID_A, "failed"), signature="bm90IGEgc2lnbmF0dXJl")
        assert (forged.status_code, forged.get_data(as_text=True)) == (403, "invalid signature")
        assert forged.content_type == "text/plain; charset=utf-8"
        incomplete = twilio.post(path, {"MessageSid": SID_A})
        assert (incomplete.status_code, incomplete.get_data(as_text=True)) == (
            400, "MessageSid and MessageStatus are required")
        assert twilio.post(path, callback(SID_A, "received")).status_code == 204  # inbound
        assert middleware.handled == 3
        # other shapes go to Flask, which routes and answers them
        assert twilio.client.get(path).status_code == 405
        assert twilio.post(path + "/", callback(SID_A, "failed")).status_code == 404
        assert twilio.post("/webhooks/twilio/status/x", callback(SID_A, "failed")
                           ).status_code == 404
        big = callback(SID_A, "failed")
        big["Body"] = "x" * (70 * 1024)
        assert twilio.post(path, big).status_code == 413
        assert middleware.handled == 3
        assert events(db) == [] and delivery(db, did).status == "sent"

    def test_multipart_form_goes_to_the_flask_route(self, db: Database, twilio: Twilio) -> None:
        did = add_delivery(db, "+84912345001", sid=SID_A)
        path = f"/webhooks/twilio/status/{did}"
        params = callback(SID_A, "delivered")
        signature = twilio.validator.compute_signature(PUBLIC + path, params)
        answer = twilio.client.post(path, data=params, content_type="multipart/form-data",
                                    headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 204
        assert twilio.client.application.wsgi_app.handled == 0
        assert delivery(db, did).status == "delivered"


def test_group_commit_applies_a_whole_batch_in_one_transaction(db: Database) -> None:
    from outreach.receipts import receiver as module
    from outreach.gateways.base import StatusUpdate

    dids = [add_delivery(db, f"+849123452{i:02d}", sid=f"SM{i:032x}") for i in range(40)]
    late = add_delivery(db, "+84912345300", status="sending", sid=None)
    batch = [module._Item(StatusUpdate(status, f"SM{i:032x}", did, status), f"k{i}{status}",
                          T0 + dt.timedelta(milliseconds=i))
             for status in ("sent", "delivered", "delivered") for i, did in enumerate(dids)]
    batch.append(module._Item(StatusUpdate("sent", "SMlate", late, "sent"), "late", T0))
    batch.append(module._Item(StatusUpdate("delivered", "SMnobody", None, "delivered"), "nobody",
                              T0))
    writer = module.ReceiptWriter(db)
    writer._apply(batch)
    assert writer.transactions == 1
    assert all(i.done and i.error is None for i in batch)
    with db.engine.connect() as conn:
        statuses = dict(conn.execute(select(Delivery.id, Delivery.status)).all())
        pending = conn.execute(select(PendingReceipt.provider_message_id)).scalars().all()
    assert [statuses[d] for d in dids] == ["delivered"] * 40
    assert (statuses[late], delivery(db, late).provider_message_id) == ("sent", "SMlate")
    assert pending == ["SMnobody"]
    kept = events(db)
    assert len(kept) == 121  # one per matched receipt; the unmatched one is pending
    assert [(e.old_status, e.new_status, e.applied) for e in events(db, dids[7])] == [
        ("sent", "sent", False), ("sent", "delivered", True),
        ("delivered", "delivered", False)]


def test_group_commit_under_concurrency_with_small_batches_and_a_bad_receipt(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach.receipts import receiver as module
    from outreach.gateways.base import StatusUpdate

    dids = [add_delivery(db, f"+849123453{i:02d}", sid=f"SM{i:032x}") for i in range(24)]
    poison_receipts(monkeypatch)
    writer = module.ReceiptWriter(db, max_batch=3)
    start = threading.Barrier(25)
    errors: dict[int, str] = {}

    def receipt(i: int) -> None:
        start.wait()
        for status in ("sent", "delivered"):
            sid = "SMpoison" if i == 24 else f"SM{i:032x}"
            try:
                writer.write(StatusUpdate(status, sid, None if i == 24 else dids[i], status),
                             f"k{i}{status}", T0)
            except RuntimeError as exc:
                errors[i] = str(exc)

    workers = [threading.Thread(target=receipt, args=(i,)) for i in range(25)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers)
    assert errors == {24: "boom"}  # only the caller of the bad receipt saw it fail
    with db.engine.connect() as conn:
        assert conn.execute(select(Delivery.status)).scalars().all() == ["delivered"] * 24
        assert conn.execute(select(PendingReceipt)).all() == []
    assert len(events(db)) == 48
    assert 16 <= writer.transactions <= 48  # batches of at most 3 receipts


def test_sqlite_one_read_matching_writes_what_the_generic_matching_writes(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """receipts.apply_updates on SQLite reads ids, provider ids and states in one statement;
    the generic path (PostgreSQL, old SQLite) must leave the same rows, events and pending
    receipts."""
    from outreach.ledger import states
    from outreach.gateways.base import StatusUpdate

    def scenario(tag: str) -> tuple[list[Any], list[Any], list[Any]]:
        sent = add_delivery(db, f"+8491234{tag}01", sid=f"SM{tag}a")
        sending = add_delivery(db, f"+8491234{tag}02", status="sending", sid=None)
        by_sid = add_delivery(db, f"+8491234{tag}03", sid=f"SM{tag}c")
        updates = [StatusUpdate("delivered", f"SM{tag}a", sent, "delivered"),
                   StatusUpdate("sent", f"SM{tag}a", sent, "sent"),
                   StatusUpdate("sent", f"SM{tag}b", sending, "sent"),
                   StatusUpdate("undelivered", f"SM{tag}b", sending, "undelivered",
                                error_code="30005", error_reason="unknown-handset"),
                   StatusUpdate("failed", f"SM{tag}c", None, "failed", error_code="30007"),
                   StatusUpdate("failed", f"SM{tag}c", 999_999, "failed"),  # wrong id, SID wins
                   StatusUpdate("delivered", f"SM{tag}z", None, "delivered"),  # pending
                   StatusUpdate("delivered", f"SM{tag}z", None, "delivered")]  # same key
        with db.engine.begin() as conn:
            outcomes = receipts.apply_updates(conn, updates, gateway="twilio", source="webhook",
                                              now=T0, event_keys=[f"{tag}{i}" for i in
                                                                  range(7)] + [f"{tag}6"])
        rows = [_row_and_events(db, d) for d in (sent, sending, by_sid)]
        with db.engine.connect() as conn:
            pending = conn.execute(select(PendingReceipt.provider_message_id)
                                   .where(PendingReceipt.event_key.like(f"{tag}%"))).all()
        shape = [(o.matched, o.applied, o.pending, o.duplicate) for o in outcomes]
        return shape, rows, [p[0].replace(tag, "") for p in pending]

    assert states.SQLITE_SET_BASED  # the default on this SQLite
    fast = scenario("11")
    monkeypatch.setattr(states, "SQLITE_SET_BASED", False)
    generic = scenario("22")
    # "applied" is per delivery: whether any of its receipts in the batch moved it
    assert fast[0] == generic[0] == [(True, True, False, False)] * 6 + [
        (False, False, True, False), (False, False, True, True)]
    assert fast[2] == generic[2] == ["SMz"]
    for (row_f, events_f), (row_g, events_g) in zip(fast[1], generic[1]):
        assert row_f[0] == row_g[0] and row_f[2:] == row_g[2:]
        assert [e[:7] for e in events_f] == [e[:7] for e in events_g]
    assert [r[0][0] for r in fast[1]] == ["delivered", "undelivered", "failed"]
    assert fast[1][1][0][1] == "SM11b"  # the provider id learned from the receipt


# -- status sync -------------------------------------------------------------------------------


class TestSync:
    def test_sync_applies_final_statuses_in_batches(self, db: Database,
                                                    twilio_server: FakeTwilio) -> None:
        gw = TwilioGateway(**twilio_server.gateway_options())
        plan = [("delivered", None), ("failed", 30007), ("queued", None), ("undelivered", 30003),
                ("sent", None)]
        dids = []
        for i, (status, code) in enumerate(plan):
            number = f"+8491234500{i}"
            sid = gw.send(OutboundMessage(i + 1, "tiem-chung-2024", "sms", number, "Thông báo")
                          ).provider_message_id
            twilio_server.set_status(sid, status, error_code=code)
            dids.append(add_delivery(db, number, sid=sid))
        add_delivery(db, "+84912345999", status="sent", sid="SM" + "f" * 32, gateway="mock")
        add_delivery(db, "+84912345998", status="sending")  # no SID: not asked about
        counts = sync_campaign(db, "tiem-chung-2024", gw, batch_size=2, now=T0)
        assert counts == {"campaign": "tiem-chung-2024", "gateway": "twilio", "checked": 5,
                          "fetched": 5, "missing": 0, "unchanged": 2, "applied": 3,
                          "delivered": 1, "undelivered": 1, "failed": 1, "batches": 3}
        rows = [delivery(db, d) for d in dids]
        assert [(r.status, r.error_code, r.error_reason) for r in rows] == [
            ("delivered", None, None), ("failed", "30007", "carrier-filtered"),
            ("sent", None, None),
            ("undelivered", "30003", "unreachable"), ("sent", None, None)]
        assert [(e.source, e.new_status) for e in events(db)] == [
            ("sync", "delivered"), ("sync", "failed"), ("sync", "undelivered")]
        fetches = [r for r in twilio_server.requests if r.route == "fetch"]
        assert len(fetches) == 5

        twilio_server.set_status(rows[2].provider_message_id, "delivered")
        again = sync_campaign(db, "tiem-chung-2024", gw, now=T0)
        assert (again["checked"], again["applied"], again["delivered"], again["unchanged"]) == (
            2, 1, 1, 1)
        assert len(events(db)) == 4

    def test_sync_counts_ids_the_provider_does_not_know(self, db: Database,
                                                        twilio_server: FakeTwilio) -> None:
        gw = TwilioGateway(**twilio_server.gateway_options())
        add_delivery(db, "+84912345001", sid="SM" + "0" * 32)
        counts = sync_campaign(db, "tiem-chung-2024", gw, now=T0)
        assert (counts["checked"], counts["fetched"], counts["missing"]) == (1, 0, 1)


# -- CLI ---------------------------------------------------------------------------------------


class TestCli:
    @pytest.fixture
    def served(self, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []

        def fake_serve(db: Database, host: str, port: int, **kw: Any) -> None:
            calls.append({"db": db, "host": host, "port": port, **kw})

        monkeypatch.setattr("outreach.receipts.receiver.serve", fake_serve)
        return calls

    def test_refuses_without_token(self, db: Database, served: list,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
        result = CliRunner().invoke(webhooks_cli, ["--database-url", db.url, "serve"])
        assert result.exit_code == 2
        assert "TWILIO_AUTH_TOKEN is not set" in result.output
        assert served == []

    def test_serves_with_token_never_printing_it(self, db: Database, served: list,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        monkeypatch.setenv("OUTREACH_PUBLIC_BASE_URL", PUBLIC)
        monkeypatch.setenv("OUTREACH_DATABASE_URL", db.url)
        result = CliRunner().invoke(webhooks_cli, ["serve", "--port", "9090", "--threads", "4"])
        assert result.exit_code == 0, result.output
        assert AUTH_TOKEN not in result.output
        assert "127.0.0.1:9090" in result.output
        (call,) = served
        assert (call["host"], call["port"], call["threads"], call["twilio_auth_token"],
                call["public_base_url"], call["db"].url) == (
            "127.0.0.1", 9090, 4, AUTH_TOKEN, PUBLIC, db.url)

    def test_main_group_database_wins_over_environment(self, db: Database, served: list,
                                                       tmp_path: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OUTREACH_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
        result = CliRunner().invoke(webhooks_cli, ["serve", "--no-twilio"],
                                    obj={"db_url": db.url})
        assert result.exit_code == 0, result.output
        assert served[0]["db"].url == db.url and served[0]["twilio_auth_token"] is None

    def test_database_without_schema(self, tmp_path: Any, served: list,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        result = CliRunner().invoke(webhooks_cli, ["--database-url", url, "serve", "--no-twilio"])
        assert result.exit_code == 1
        assert "has no schema" in result.output and served == []


def test_registered_under_the_main_cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``outreach --database-url URL webhooks serve`` (the main group's Ctx object)."""
    main = pytest.importorskip("outreach.cli").main
    if "webhooks" not in main.commands:
        pytest.skip("webhooks group not registered in outreach.cli yet")
    calls: list[Any] = []
    monkeypatch.setattr("outreach.receipts.receiver.serve", lambda db, host, port, **kw: calls.append(db))
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    result = CliRunner().invoke(main, ["--database-url", db.url, "webhooks", "serve"])
    assert result.exit_code == 0, result.output
    assert calls[0].url == db.url

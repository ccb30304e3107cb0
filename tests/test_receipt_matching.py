"""Receipts match on the provider's id and the delivery's receipt token (issue #15 item 2), and
replayed or stale signed webhooks are refused or counted (issue #17): real signed requests
(Twilio's RequestValidator, Zalo's mac) through the Flask test client and waitress on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from tests.fakes import waitress_on_loopback
from tests.fakes.twilio_server import AUTH_TOKEN, FakeTwilio, twilio_server  # noqa: F401 (fixture)
from tests.helpers import approve, fresh_db, in_window, load, seed_run, write_campaign
from tests.pg import pg_db, pg_url  # noqa: F401 (fixtures)
from twilio.request_validator import RequestValidator

from outreach.ledger import states
from outreach.receipts import writer as receipts
from outreach.sending import ops
from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.gateways.base import StatusUpdate
from outreach.gateways.mock import MockGateway
from outreach.gateways.twilio import TwilioGateway
from outreach.gateways.zalo_webhook import compute_signature
from outreach.ledger.models import (Delivery, DeliveryEvent, PendingReceipt, RejectedReceipt,
                             WebhookEvent)
from outreach.receipts.receiver import create_app

PUBLIC = "https://hooks.example.vn"
TOKEN_RE = re.compile(r"[0-9a-f]{24}")


# -- helpers ------------------------------------------------------------------------------------

def sign(path: str, params: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path,
                                                                                 params)}


def form(sid: str, status: str) -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
            "AccountSid": "AC" + "0" * 32, "From": "TEST", "To": "+84912345001",
            "ApiVersion": "2010-04-01"}


def post_twilio(client: Any, path: str, sid: str, status: str) -> int:
    params = form(sid, status)
    return int(client.post(path, data=params, headers=sign(path, params)).status_code)


def rows(db: Database) -> dict[int, Any]:
    with db.engine.connect() as conn:
        return {r.id: r for r in conn.execute(select(Delivery).order_by(Delivery.id)).all()}


def rejected(db: Database) -> list[tuple[str, int | None, str | None]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(RejectedReceipt.reason, RejectedReceipt.delivery_id,
                   RejectedReceipt.provider_message_id).order_by(RejectedReceipt.id)).all()]


def webhook_events(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(DeliveryEvent)
                                .where(DeliveryEvent.source == "webhook")).scalar_one())


def counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return receipts.receipt_counts(conn)


@pytest.fixture
def launched(tmp_path: Path, twilio_server: FakeTwilio  # noqa: F811
             ) -> tuple[Database, FakeClock, dict[int, Any]]:
    """Three deliveries sent through the real Twilio SDK to the loopback fake, with status
    callbacks on PUBLIC."""
    spec = load(write_campaign(tmp_path, n=3))
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    gw = TwilioGateway(**twilio_server.gateway_options(status_callback_base=PUBLIC))
    approve(db, spec)  # Twilio reaches phones: a second person's approval
    ops.launch(db, spec, gateway="twilio", gateways={"sms": gw}, clock=clock)
    sent = rows(db)
    assert [r.status for r in sent.values()] == ["sent"] * 3
    return db, clock, sent


# -- the callback URL carries the token ----------------------------------------------------------

def test_each_send_carries_its_own_unguessable_token_in_the_callback_url(
        launched: tuple[Database, FakeClock, dict[int, Any]],
        twilio_server: FakeTwilio) -> None:  # noqa: F811
    db, _, sent = launched
    urls = sorted(r.params["StatusCallback"] for r in twilio_server.creates())
    assert urls == sorted(f"{PUBLIC}/webhooks/twilio/status/{d.id}/{d.receipt_token}"
                          for d in sent.values())
    tokens = [d.receipt_token for d in sent.values()]
    assert all(TOKEN_RE.fullmatch(t) for t in tokens) and len(set(tokens)) == 3


def test_claim_sets_a_token_once_and_keeps_it_when_the_row_is_claimed_again(
        tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    now = in_window()
    run_id = seed_run(db, load(write_campaign(tmp_path, n=4)), now)
    with db.engine.begin() as conn:
        claimed = states.claim(conn, run_id, limit=4, owner="t", lease_expires=now, now=now)
        first = {r["id"]: r["receipt_token"] for r in claimed}
        states.apply(conn, [states.Change(i, states.QUEUED, backward="not-sent") for i in first],
                     source="dispatcher", now=now)
        again = {r["id"]: r["receipt_token"]
                 for r in states.claim(conn, run_id, limit=4, owner="t", lease_expires=now,
                                       now=now)}
    assert again == first and len(set(first.values())) == 4
    assert all(TOKEN_RE.fullmatch(t) for t in first.values())


# -- a receipt for another message changes nothing, and is counted -----------------------------

def test_signed_receipt_carrying_another_messages_id_changes_nothing_and_is_counted(
        launched: tuple[Database, FakeClock, dict[int, Any]]) -> None:
    db, clock, sent = launched
    a, b, c = sent.values()
    app = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC, clock=clock)
    client = app.test_client()
    url = f"/webhooks/twilio/status/{b.id}/{b.receipt_token}"
    # correctly signed, to b's own callback URL, about c's message
    assert post_twilio(client, url, c.provider_message_id, "delivered") == 204
    # b's message, but with a wrong token, or none
    assert post_twilio(client, f"/webhooks/twilio/status/{b.id}/{'0' * 24}",
                       b.provider_message_id, "delivered") == 204
    assert post_twilio(client, f"/webhooks/twilio/status/{b.id}", b.provider_message_id,
                       "undelivered") == 204
    after = rows(db)
    assert [after[d.id].status for d in (a, b, c)] == ["sent"] * 3
    assert webhook_events(db) == 0
    assert rejected(db) == [("provider-id-mismatch", b.id, c.provider_message_id),
                            ("token-mismatch", b.id, b.provider_message_id),
                            ("token-mismatch", b.id, b.provider_message_id)]
    assert app.extensions["outreach_receipt_stats"].snapshot() == {"rejected": 3}
    assert counts(db) == {"pending": 0, "rejected": 3, "rejected:provider-id-mismatch": 1,
                          "rejected:token-mismatch": 2, "replayed": 0}
    # the right receipt still applies, and its replay is a counted no-op
    assert post_twilio(client, url, b.provider_message_id, "delivered") == 204
    assert post_twilio(client, url, b.provider_message_id, "delivered") == 204
    assert rows(db)[b.id].status == "delivered"
    assert app.extensions["outreach_receipt_stats"].snapshot() == {
        "rejected": 3, "applied": 1, "replayed": 1}
    assert counts(db)["replayed"] == 1


def test_a_messaging_service_callback_without_our_id_matches_by_sid_alone(
        launched: tuple[Database, FakeClock, dict[int, Any]]) -> None:
    db, clock, sent = launched
    a, b, _ = sent.values()
    client = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC,
                        clock=clock).test_client()
    assert post_twilio(client, "/webhooks/twilio/status", a.provider_message_id,
                       "delivered") == 204
    # an id that does not exist, without b's token: the SID names b, the token does not
    assert post_twilio(client, "/webhooks/twilio/status/999999", b.provider_message_id,
                       "delivered") == 204
    after = rows(db)
    assert (after[a.id].status, after[b.id].status) == ("delivered", "sent")
    assert rejected(db) == [("token-mismatch", b.id, b.provider_message_id)]


def test_over_waitress_a_mismatched_receipt_and_a_replay(
        launched: tuple[Database, FakeClock, dict[int, Any]]) -> None:
    db, clock, sent = launched
    a, b, _ = sent.values()
    app = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC, clock=clock)
    with waitress_on_loopback(app, threads=4) as port, requests.Session() as http:
        def post(path: str, sid: str, status: str) -> int:
            params = form(sid, status)
            return http.post(f"http://127.0.0.1:{port}{path}", data=params, timeout=10,
                             headers=sign(path, params)).status_code

        a_url = f"/webhooks/twilio/status/{a.id}/{a.receipt_token}"
        assert post(a_url, b.provider_message_id, "failed") == 204  # b's id at a's URL
        assert post(a_url, a.provider_message_id, "delivered") == 204
        assert post(a_url, a.provider_message_id, "delivered") == 204  # replayed
        assert post(a_url, a.provider_message_id, "failed") == 204  # late: never regresses
    after = rows(db)
    assert (after[a.id].status, after[b.id].status) == ("delivered", "sent")
    assert rejected(db) == [("provider-id-mismatch", a.id, b.provider_message_id)]
    assert app.wsgi_app.handled == 4  # the fast WSGI path answered every one
    assert app.extensions["outreach_receipt_stats"].snapshot() == {
        "rejected": 1, "applied": 2, "replayed": 1}


def test_sync_names_deliveries_from_our_rows_and_needs_no_token(
        launched: tuple[Database, FakeClock, dict[int, Any]],
        twilio_server: FakeTwilio) -> None:  # noqa: F811
    from outreach.receipts.sync import sync_campaign

    db, clock, sent = launched
    a = next(iter(sent.values()))
    twilio_server.set_status(a.provider_message_id, "delivered")
    gw = TwilioGateway(**twilio_server.gateway_options(status_callback_base=PUBLIC))
    result = sync_campaign(db, "test-campaign", gw, now=clock.now())
    assert result["applied"] == 1 and rows(db)[a.id].status == "delivered"
    assert rejected(db) == []


# -- early receipts -----------------------------------------------------------------------------

def test_early_receipt_for_a_delivery_id_not_yet_there_never_applies_to_a_later_delivery(
        tmp_path: Path) -> None:
    """Receipts arrive (another install, a rebuilt database) for delivery ids 1 and 2 before
    those rows exist, even carrying the very provider ids the later sends get: once a later
    campaign creates deliveries 1 and 2, they are refused, not applied."""
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    app = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC, clock=clock)
    client = app.test_client()
    assert post_twilio(client, f"/webhooks/twilio/status/1/{'ab' * 12}", "MOCK00000001",
                       "delivered") == 204
    assert post_twilio(client, "/webhooks/twilio/status/2", "MOCK00000002", "undelivered") == 204
    assert post_twilio(client, "/webhooks/twilio/status", "SMsomeoneelse", "delivered") == 204
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(PendingReceipt)).scalar_one() == 3
    spec = load(write_campaign(tmp_path, n=3, cid="chien-dich-sau"))
    ops.launch(db, spec, gateways={"sms": MockGateway(channel="sms")}, clock=clock)
    later = rows(db)
    # the mock numbers its messages in the order the sends finish (4 in flight): any order
    assert sorted((d.campaign_id, d.provider_message_id, d.status) for d in later.values()) == [
        ("chien-dich-sau", f"MOCK0000000{i}", "sent") for i in (1, 2, 3)]
    assert webhook_events(db) == 0
    assert rejected(db) == [("token-mismatch", 1, "MOCK00000001"),
                            ("token-mismatch", 2, "MOCK00000002")]
    with db.engine.connect() as conn:  # the unrelated one still waits; the two left
        assert conn.execute(select(PendingReceipt.provider_message_id, PendingReceipt.applied_at)
                            ).all() == [("SMsomeoneelse", None)]


def test_early_receipt_with_the_token_waits_for_the_provider_id_and_applies_only_if_it_matches(
        tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    now = in_window()
    clock = FakeClock(now)
    run_id = seed_run(db, load(write_campaign(tmp_path, n=2)), now)
    with db.engine.begin() as conn:
        x, y = states.claim(conn, run_id, limit=2, owner="t", lease_expires=now, now=now)
    client = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC,
                        clock=clock).test_client()
    # the callbacks beat the dispatcher's own write of the SIDs
    assert post_twilio(client, f"/webhooks/twilio/status/{x['id']}/{x['receipt_token']}",
                       "SMxxx", "delivered") == 204
    assert post_twilio(client, f"/webhooks/twilio/status/{y['id']}/{y['receipt_token']}",
                       "SMforeign", "delivered") == 204
    assert [(d.status, d.provider_message_id) for d in rows(db).values()] == [
        ("sending", None), ("sending", None)]  # kept pending, not applied, no SID learned
    with db.engine.begin() as conn:
        states.record_accepted(conn, [(x["id"], "sent", "SMxxx", "queued", 1, None),
                                      (y["id"], "sent", "SMyyy", "queued", 1, None)],
                               source="dispatcher", now=now)
        assert receipts.apply_pending(conn, now=now, delivery_ids=[x["id"], y["id"]],
                                      provider_ids=["SMxxx", "SMyyy"]) == 1
    after = rows(db)
    assert (after[x["id"]].status, after[y["id"]].status) == ("delivered", "sent")
    assert after[y["id"]].provider_message_id == "SMyyy"
    assert rejected(db) == [("provider-id-mismatch", y["id"], "SMforeign")]


def test_the_dispatcher_replays_an_early_receipt_once_the_provider_id_is_recorded(
        tmp_path: Path, twilio_server: FakeTwilio) -> None:  # noqa: F811
    """Through the dispatcher: a signed receipt for the first delivery arrives while its send
    is in flight (posted from inside the fake's create), and is applied after the record."""
    spec = load(write_campaign(tmp_path, n=1))
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    client = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC,
                        clock=clock).test_client()
    gw = TwilioGateway(**twilio_server.gateway_options(status_callback_base=PUBLIC))
    real_send = gw.send
    answers: list[int] = []

    def send(message: Any) -> Any:
        result = real_send(message)
        path = f"/webhooks/twilio/status/{message.delivery_id}/{message.receipt_token}"
        answers.append(post_twilio(client, path, result.provider_message_id, "delivered"))
        return result

    gw.send = send  # type: ignore[method-assign]
    approve(db, spec)
    ops.launch(db, spec, gateways={"sms": gw}, clock=clock)
    assert answers == [204]
    [d] = rows(db).values()
    assert d.status == "delivered" and d.provider_message_id.startswith("SM")
    with db.engine.connect() as conn:
        assert conn.execute(select(PendingReceipt.applied_at)).scalar_one() is not None


# -- Zalo ---------------------------------------------------------------------------------------

APP_ID = "3962172718436219112"
SECRET = "oa-webhook-s3cret"


def zalo_event(msg_id: str, tracking_id: str, at: dt.datetime) -> dict[str, Any]:
    ms = str(int(at.timestamp() * 1000))
    return {"event_name": "user_received_message", "app_id": APP_ID, "timestamp": ms,
            "sender": {"id": "579745863508352884"}, "recipient": {"id": "84912345678"},
            "message": {"delivery_time": ms, "msg_id": msg_id, "tracking_id": tracking_id}}


def zalo_request(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    sig = "mac=" + compute_signature(APP_ID, raw, payload["timestamp"], SECRET)
    return raw, {"X-ZEvent-Signature": sig, "Content-Type": "application/json"}


@pytest.fixture
def zalo_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Database, list[dict]]:
    """Two Zalo deliveries claimed (tokened, no msg_id yet) and their run."""
    monkeypatch.setenv("ZALO_APP_ID", APP_ID)
    monkeypatch.setenv("ZALO_OA_SECRET_KEY", SECRET)
    db = fresh_db(tmp_path)
    now = in_window()
    spec = load(write_campaign(tmp_path, n=2, channels="""
[[channels]]
channel = "zalo"
template_id = "301234"
"""))
    from outreach.input import recipients
    from outreach.ledger import runs

    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=now)
    recipients.import_files(db, spec.list_files(), list_name=spec.list_name, now=now)
    with db.engine.begin() as conn:
        run_id = runs.create_run(conn, spec, kind="launch", gateway_names={"zalo": "zalo"},
                                 now=now).run_id
    with db.engine.begin() as conn:
        claimed = states.claim(conn, run_id, limit=2, owner="t", lease_expires=now, now=now)
    assert [c["channel"] for c in claimed] == ["zalo", "zalo"]
    return db, claimed


def test_zalo_replayed_event_is_refused_and_stale_events_are_rejected(
        zalo_db: tuple[Database, list[dict]]) -> None:
    db, (x, _) = zalo_db
    now = in_window()
    clock = FakeClock(now)
    app = create_app(db, clock=clock)
    client = app.test_client()
    with db.engine.begin() as conn:
        states.record_accepted(conn, [(x["id"], "sent", "msg-x", None, 1, None)],
                               source="dispatcher", now=now)
    fresh = zalo_event("msg-x", str(x["id"]), now - dt.timedelta(seconds=20))
    raw, headers = zalo_request(fresh)
    assert client.post("/webhooks/zalo", data=raw, headers=headers).status_code == 200
    assert rows(db)[x["id"]].status == "delivered"
    events_before = webhook_events(db)
    clock.advance(90)
    assert client.post("/webhooks/zalo", data=raw, headers=headers).status_code == 200  # replay
    assert webhook_events(db) == events_before == 1
    with db.engine.connect() as conn:
        assert conn.execute(select(WebhookEvent.gateway, WebhookEvent.event_id)).all() == [
            ("zalo", "sha256:" + __import__("hashlib").sha256(raw).hexdigest())]
    # signed, but 6 minutes old (or 6 minutes ahead): outside the default 5-minute window
    for skew in (-6, 6):
        raw2, headers2 = zalo_request(zalo_event("msg-x", str(x["id"]),
                                                 clock.now() + dt.timedelta(minutes=skew)))
        answer = client.post("/webhooks/zalo", data=raw2, headers=headers2)
        assert (answer.status_code, answer.get_data(as_text=True)) == (403, "stale timestamp")
    assert webhook_events(db) == 1
    assert app.extensions["outreach_receipt_stats"].snapshot() == {
        "applied": 1, "zalo_replayed": 1, "zalo_stale": 2}


def test_zalo_window_is_configurable_and_a_bad_setting_is_refused(
        zalo_db: tuple[Database, list[dict]], monkeypatch: pytest.MonkeyPatch) -> None:
    db, (x, _) = zalo_db
    now = in_window()
    raw, headers = zalo_request(zalo_event("msg-x", str(x["id"]), now - dt.timedelta(minutes=20)))
    monkeypatch.setenv("ZALO_WEBHOOK_MAX_SKEW_SECONDS", "1800")
    assert create_app(db, clock=FakeClock(now)).test_client().post(
        "/webhooks/zalo", data=raw, headers=headers).status_code == 200
    monkeypatch.setenv("ZALO_WEBHOOK_MAX_SKEW_SECONDS", "soon")
    assert create_app(db, clock=FakeClock(now)).test_client().post(
        "/webhooks/zalo", data=raw, headers=headers).status_code == 503


def test_zalo_early_event_waits_for_the_msg_id_and_applies_only_if_it_matches(
        zalo_db: tuple[Database, list[dict]]) -> None:
    db, (x, y) = zalo_db
    now = in_window()
    client = create_app(db, clock=FakeClock(now)).test_client()
    for d, msg_id in ((x, "msg-x"), (y, "msg-someone-else")):
        raw, headers = zalo_request(zalo_event(msg_id, str(d["id"]), now))
        assert client.post("/webhooks/zalo", data=raw, headers=headers).status_code == 200
    assert [(d.status, d.provider_message_id) for d in rows(db).values()] == [
        ("sending", None), ("sending", None)]
    with db.engine.begin() as conn:
        states.record_accepted(conn, [(x["id"], "sent", "msg-x", None, 1, None),
                                      (y["id"], "sent", "msg-y", None, 1, None)],
                               source="dispatcher", now=now)
        assert receipts.apply_pending(conn, now=now, delivery_ids=[x["id"], y["id"]],
                                      provider_ids=["msg-x", "msg-y"]) == 1
    after = rows(db)
    assert (after[x["id"]].status, after[y["id"]].status) == ("delivered", "sent")
    assert after[x["id"]].delivered_at == now  # Zalo's delivery_time


def test_zalo_replay_over_waitress(zalo_db: tuple[Database, list[dict]]) -> None:
    db, (x, _) = zalo_db
    now = in_window()
    with db.engine.begin() as conn:
        states.record_accepted(conn, [(x["id"], "sent", "msg-x", None, 1, None)],
                               source="dispatcher", now=now)
    app = create_app(db, clock=FakeClock(now))
    raw, headers = zalo_request(zalo_event("msg-x", str(x["id"]), now))
    with waitress_on_loopback(app, threads=2) as port, requests.Session() as http:
        codes = [http.post(f"http://127.0.0.1:{port}/webhooks/zalo", data=raw, headers=headers,
                           timeout=10).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    assert rows(db)[x["id"]].status == "delivered" and webhook_events(db) == 1
    assert app.extensions["outreach_receipt_stats"].snapshot() == {"applied": 1,
                                                                   "zalo_replayed": 2}


# -- PostgreSQL ---------------------------------------------------------------------------------

@pytest.mark.postgres
def test_tokens_and_matching_on_postgresql(pg_db: Database, tmp_path: Path) -> None:  # noqa: F811
    from tests.pg import seed_run as pg_seed

    _, run_id = pg_seed(pg_db, tmp_path, 3)
    now = dt.datetime.now(dt.timezone.utc)
    with pg_db.engine.begin() as conn:
        a, b, c = states.claim(conn, run_id, limit=3, owner="t", lease_expires=now, now=now)
        states.record_accepted(conn, [(a["id"], "sent", "SMa", None, 1, None),
                                      (b["id"], "sent", "SMb", None, 1, None)],
                               source="dispatcher", now=now)
    assert all(TOKEN_RE.fullmatch(r["receipt_token"]) for r in (a, b, c))
    assert len({r["receipt_token"] for r in (a, b, c)}) == 3
    ups = [StatusUpdate("delivered", "SMb", a["id"], "delivered", receipt_token=a["receipt_token"]),
           StatusUpdate("delivered", "SMa", a["id"], "delivered", receipt_token="f" * 24),
           StatusUpdate("delivered", "SMb", b["id"], "delivered", receipt_token=b["receipt_token"]),
           StatusUpdate("delivered", "SMc", c["id"], "delivered", receipt_token=c["receipt_token"])]
    with pg_db.engine.begin() as conn:
        out = receipts.apply_updates(conn, ups, gateway="twilio", source="webhook", now=now,
                                     check_tokens=True)
    assert [(o.matched, o.applied, o.pending, o.rejected) for o in out] == [
        (False, False, False, "provider-id-mismatch"), (False, False, False, "token-mismatch"),
        (True, True, False, None), (False, False, True, None)]
    assert [r.status for r in rows(pg_db).values()] == ["sent", "delivered", "sending"]

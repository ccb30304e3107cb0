"""Citizens' replies (issue #20): Twilio inbound webhook (valid and forged signatures), an SMPP
MO, Zalo ``user_send_text`` and ``unfollow``; keywords in every spelling opt out; other replies
land in the inbox; a repeated message is stored and confirmed once; a queued campaign stops;
the purge covers replies. Providers are the loopback fakes of tests/fakes/."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import insert, select
from twilio.request_validator import RequestValidator

from outreach.cli import main as cli_main
from outreach.clock import FakeClock
from outreach.gateways.smpp import SmppGateway
from outreach.gateways.twilio import TwilioGateway
from outreach.gateways.zalo import ZaloGateway
from outreach.gateways.zalo_webhook import compute_signature
from outreach.ledger import states, suppression
from outreach.ledger.db import Database
from outreach.ledger.models import (Campaign, Delivery, InboundMessage, Recipient, Run,
                                    SmppInbound, Suppression)
from outreach.receipts import inbound
from outreach.receipts.receiver import create_app
from outreach.reporting import privacy, reports
from outreach.sending.engine import RunEngine, SendSettings
from outreach.gateways.mock import MockGateway
from tests.fakes import waitress_on_loopback
from tests.fakes.smpp_server import FakeSmsc, smsc  # noqa: F401 (fixture)
from tests.fakes.twilio_server import AUTH_TOKEN, FakeTwilio, twilio_server  # noqa: F401
from tests.fakes.zalo_server import FakeZalo, zalo_server  # noqa: F401 (fixture)
from tests.helpers import fresh_db, in_window, load, numbers, seed_run, statuses, write_campaign
from tests.pg import pg_db, pg_url  # noqa: F401 (fixtures)

PUBLIC = "https://hooks.example.vn"
ZALO_APP = "3962172718436219112"
ZALO_SECRET = "oa-webhook-s3cret"
#: the issue's keyword variants, each from its own number
VARIANTS = ["tc", "T.C", "Từ chối", "tu  choi", "HUỶ"]


def wait_for(pred: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.02)


def rows(db: Database, model: Any) -> list[Any]:
    from sqlalchemy.orm import Session

    with Session(db.engine) as s:
        out = list(s.scalars(select(model).order_by(*model.__table__.primary_key)))
        s.expunge_all()
        return out


# -- keywords --------------------------------------------------------------------------------------

def test_keyword_variants_match_and_others_do_not() -> None:
    s = inbound.InboundSettings()
    for text in VARIANTS + [unicodedata.normalize("NFD", "Từ chối"), " Dừng! ", "KHÔNG NHẬN",
                            "stop", "Hủy"]:
        assert s.match(text) is not None and s.match(text)[0] == "optout", text
    assert s.match("ĐK") == ("optin", "DK")
    assert s.match("START") == ("optin", "START")
    for text in ("không nhận được tin", "Cảm ơn", "tc 2", "", "?"):
        assert s.match(text) is None, text
    assert inbound.normalise_keyword("Từ  chối.") == "tuchoi"


def test_settings_file_replaces_the_table_and_errors_name_the_field(tmp_path: Path) -> None:
    good = tmp_path / "inbound.toml"
    good.write_text('[keywords]\noptout = ["NGUNG"]\noptin = ["VAO"]\n[confirm]\noptout = ""\n'
                    '[scope]\nzalo_unfollow = "all"\n', encoding="utf-8")
    s = inbound.load_settings(good)
    assert s.match("ngừng") == ("optout", "NGUNG") and s.match("TC") is None
    assert s.confirmation("optout") is None and s.scope("zalo", "unfollow") is None
    bad = tmp_path / "bad.toml"
    bad.write_text('[scope]\nsms_keyword = "zalo"\n', encoding="utf-8")
    with pytest.raises(inbound.InboundConfigError, match=r"bad.toml: scope.sms_keyword must be one of all, sms"):
        inbound.load_settings(bad)
    clash = tmp_path / "clash.toml"
    clash.write_text('[keywords]\noptout = ["DK"]\n', encoding="utf-8")
    with pytest.raises(inbound.InboundConfigError, match=r"clash.toml: keywords: keyword 'DK' is both optout and optin"):
        inbound.load_settings(clash)


# -- a ledger with one campaign and a run --------------------------------------------------------

T0 = dt.datetime(2024, 7, 30, 1, 0, tzinfo=dt.timezone.utc)


def seed_ledger(db: Database, sms_numbers: list[str], *, zalo: dict[str, str] | None = None
                ) -> None:
    """Campaign ``c1`` with run 1 and one sent SMS delivery per number; ``zalo`` maps numbers
    to Zalo user ids (recipients) with a queued Zalo delivery each."""
    with db.engine.begin() as conn:
        conn.execute(insert(Campaign).values(
            id="c1", name="Phòng chống mua bán người", source_ref="126/KH-UBND", text="Thông báo",
            text_sha256="0" * 64, definition={}, status="active", created_at=T0, updated_at=T0))
        conn.execute(insert(Run).values(
            id=1, campaign_id="c1", run_key="launch:1", kind="launch", run_date=T0.date(),
            status="running", gateway="twilio", text_sha256="0" * 64, due_at=T0, created_at=T0,
            options={}))
        for n in sms_numbers:
            uid = (zalo or {}).get(n)
            rid = conn.execute(insert(Recipient).values(e164=n, zalo_user_id=uid, created_at=T0)
                               ).inserted_primary_key[0]
            conn.execute(insert(Delivery).values(
                campaign_id="c1", run_id=1, recipient_id=rid, dedupe_key="once", channel="sms",
                gateway="twilio", address=n, status="sent", attempts=1, queued_at=T0,
                sending_at=T0, sent_at=T0, updated_at=T0))
            if uid:
                for channel, address in (("zalo", n), ("zalo", uid)):
                    conn.execute(insert(Delivery).values(
                        campaign_id="c1", run_id=1, recipient_id=rid,
                        dedupe_key=f"z:{address}", channel=channel, gateway="zalo",
                        address=address, status="queued", attempts=0, queued_at=T0,
                        updated_at=T0))


# -- Twilio ---------------------------------------------------------------------------------------

@pytest.fixture
def twilio_hooks(tmp_path: Path, twilio_server: FakeTwilio  # noqa: F811
                 ) -> Iterator[tuple[Database, Any, int, FakeTwilio]]:
    db = fresh_db(tmp_path)
    reply = TwilioGateway(**twilio_server.gateway_options())
    app = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC,
                     reply_gateways={"twilio": reply})
    with waitress_on_loopback(app, threads=4) as port:
        yield db, app, port, twilio_server
    db.dispose()


def twilio_post(port: int, params: dict[str, str], *, token: str = AUTH_TOKEN,
                path: str = "/twilio/inbound") -> requests.Response:
    sig = RequestValidator(token).compute_signature(PUBLIC + path, params)
    return requests.post(f"http://127.0.0.1:{port}{path}", data=params,
                         headers={"X-Twilio-Signature": sig}, timeout=10)


def inbound_sms(sid: str, sender: str, body: str) -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "1" * 32, "From": sender,
            "To": "+12025550100", "Body": body, "NumMedia": "0", "ApiVersion": "2010-04-01"}


def test_twilio_forged_signature_is_refused_and_stores_nothing(twilio_hooks: Any) -> None:
    db, _app, port, fake = twilio_hooks
    r = twilio_post(port, inbound_sms("SM" + "f" * 32, "+84912000001", "TC"),
                    token="not-the-auth-token")
    assert r.status_code == 403
    r = requests.post(f"http://127.0.0.1:{port}/twilio/inbound",
                      data=inbound_sms("SM" + "e" * 32, "+84912000001", "TC"), timeout=10)
    assert r.status_code == 403
    assert rows(db, InboundMessage) == [] and rows(db, Suppression) == []
    assert fake.creates() == []


def test_twilio_keywords_opt_out_once_and_are_confirmed_once(twilio_hooks: Any) -> None:
    db, app, port, fake = twilio_hooks
    senders = numbers(len(VARIANTS), start=100)
    seed_ledger(db, senders)
    for i, (n, text) in enumerate(zip(senders, VARIANTS)):
        r = twilio_post(port, inbound_sms(f"SM{i:032d}", n, text))
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/xml")
        assert r.text == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    # the first reply delivered three times more (Twilio retries a webhook)
    for _ in range(3):
        assert twilio_post(port, inbound_sms(f"SM{0:032d}", senders[0], "tc")).status_code == 200
    app.extensions["outreach_confirmations"].flush()
    stored = rows(db, InboundMessage)
    assert len(stored) == len(VARIANTS)
    assert [m.kind for m in stored] == ["optout"] * len(VARIANTS)
    assert [m.keyword for m in stored] == ["TC", "TC", "TU CHOI", "TU CHOI", "HUY"]
    assert [m.text for m in stored] == VARIANTS
    assert all(m.campaign_id == "c1" and m.confirmation == "sent" for m in stored)
    entries = {e.e164: e for e in rows(db, Suppression)}
    assert sorted(entries) == sorted(senders)
    first = entries[senders[0]]
    assert first.channel is None and first.source == "reply:twilio"
    assert first.reason == "reply-keyword" and "'tc'" in first.evidence
    assert first.inbound_id == stored[0].id
    # one confirmation per reply, none for the repeats
    sent = [c.params for c in fake.creates()]
    assert sorted(p["To"] for p in sent) == sorted(senders)
    assert all(p["Body"] == inbound.DEFAULT_CONFIRM_OPTOUT for p in sent)


def test_twilio_other_reply_lands_in_the_inbox(twilio_hooks: Any) -> None:
    db, app, port, fake = twilio_hooks
    n = numbers(1, start=200)[0]
    seed_ledger(db, [n])
    r = twilio_post(port, inbound_sms("SM" + "a" * 32, n, "Cho tôi hỏi địa chỉ công an phường?"))
    assert r.status_code == 200
    app.extensions["outreach_confirmations"].flush()
    [m] = rows(db, InboundMessage)
    assert (m.kind, m.keyword, m.confirmation, m.campaign_id) == ("message", None, None, "c1")
    assert rows(db, Suppression) == [] and fake.creates() == []
    res = CliRunner().invoke(cli_main, ["--database-url", str(db.engine.url), "inbox", "list",
                                        "--format", "json"])
    assert res.exit_code == 0, res.output
    [shown] = json.loads(res.output)
    assert shown["text"] == "Cho tôi hỏi địa chỉ công an phường?"
    assert shown["sender"] == "096****200" and shown["campaign_id"] == "c1"
    assert n not in res.output


def test_reply_stops_the_queued_messages_of_a_running_campaign(tmp_path: Path,
                                                               twilio_server: FakeTwilio  # noqa: F811
                                                               ) -> None:
    path = write_campaign(tmp_path, n=6)
    spec, db = load(path), fresh_db(tmp_path)
    phones = numbers(6)
    clock = FakeClock(in_window())
    run_id = seed_run(db, spec, clock.now())
    mock = MockGateway()
    app = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC,
                     reply_gateways={"twilio": TwilioGateway(**twilio_server.gateway_options())})
    with RunEngine(db, spec, run_id, {"sms": mock}, clock=clock,
                   settings=SendSettings(batch_size=2)) as engine:
        engine.start()
        engine.step()  # the first two are sent
        assert sorted(m.to for m in mock.outbox) == phones[:2]
        with waitress_on_loopback(app, threads=2) as port:
            # the 5th person replies while the run is in progress (queued for them)
            assert twilio_post(port, inbound_sms("SM" + "b" * 32, phones[4], "Từ chối")
                               ).status_code == 200
        step = engine.step()
        while step.more:
            step = engine.step()
    app.extensions["outreach_confirmations"].flush()
    assert sorted(m.to for m in mock.outbox) == sorted(phones[:4] + phones[5:])
    got = statuses(db)
    assert got[phones[4]] == "opted_out"
    assert [got[p] for p in phones if p != phones[4]] == ["sent"] * 5
    [m] = rows(db, InboundMessage)
    assert m.campaign_id == spec.id and m.kind == "optout"


# -- SMPP ----------------------------------------------------------------------------------------

def test_smpp_mo_keyword_opts_out_once_and_is_confirmed_once(smsc: FakeSmsc,  # noqa: F811
                                                             tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    sender = "+84912345001"
    seed_ledger(db, [sender])
    g = SmppGateway(**smsc.options(db=db))
    g.check()
    mo = dict(source_addr=sender[1:], source_addr_ton=1, source_addr_npi=1,
              destination_addr="STTTTCanTho", esm_class=0, data_coding=8,
              short_message="HUỶ".encode("utf-16-be"))
    smsc.deliver(mo)
    wait_for(lambda: g.receipts.inbound == 1)
    wait_for(lambda: len(smsc.messages) == 1)
    smsc.deliver(mo)  # the SMSC sends it again (our response was lost)
    wait_for(lambda: g.receipts.inbound == 2)
    g.receipts.flush()
    time.sleep(0.2)  # a second confirmation, if one were sent, would be on its way by now
    g.close()
    assert len(rows(db, SmppInbound)) == 2
    [m] = rows(db, InboundMessage)
    assert (m.gateway, m.sender, m.kind, m.keyword, m.text) == ("smpp", sender, "optout",
                                                                "HUY", "HUỶ")
    assert m.confirmation == "sent" and m.campaign_id == "c1"
    assert all(r.inbound_id == m.id for r in rows(db, SmppInbound))
    [entry] = rows(db, Suppression)
    assert (entry.e164, entry.channel, entry.source) == (sender, None, "reply:smpp")
    [confirmation] = smsc.messages
    assert confirmation.to.lstrip("+") == sender[1:]
    assert confirmation.text == inbound.DEFAULT_CONFIRM_OPTOUT


def test_smpp_concatenated_reply_is_joined_before_matching(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    now = T0
    with db.engine.begin() as conn:
        for part, text in ((2, "được tin"), (1, "Tôi không nhận ")):
            conn.execute(insert(SmppInbound).values(
                account="acct", source="+84912345009", destination="8079", text=text,
                data_coding=8, ref=7, part=part, parts=2, received_at=now))
        [res] = inbound.ingest_smpp(conn, now=now)
    assert res.kind == "message"
    [m] = rows(db, InboundMessage)
    assert m.text == "Tôi không nhận được tin"
    with db.engine.begin() as conn:
        assert inbound.ingest_smpp(conn, now=now) == []
    assert len(rows(db, InboundMessage)) == 1


# -- Zalo -------------------------------------------------------------------------------------------

@pytest.fixture
def zalo_hooks(tmp_path: Path, zalo_server: FakeZalo, monkeypatch: pytest.MonkeyPatch  # noqa: F811
               ) -> Iterator[tuple[Database, Any, int, FakeZalo, FakeClock]]:
    db = fresh_db(tmp_path)
    clock = FakeClock(dt.datetime(2024, 7, 30, 2, 3, 1, tzinfo=dt.timezone.utc))
    reply = ZaloGateway(db=db, clock=clock, **zalo_server.gateway_options())
    zalo_server.seed(reply.tokens)
    app = create_app(db, clock=clock, reply_gateways={"zalo": reply})
    app.config.update(ZALO_APP_ID=ZALO_APP, ZALO_WEBHOOK_SECRET=ZALO_SECRET)
    with waitress_on_loopback(app, threads=2) as port:
        yield db, app, port, zalo_server, clock
    db.dispose()


def zalo_post(port: int, payload: dict[str, Any], secret: str = ZALO_SECRET) -> requests.Response:
    raw = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    sig = "mac=" + compute_signature(ZALO_APP, raw, str(payload["timestamp"]), secret)
    return requests.post(f"http://127.0.0.1:{port}/webhooks/zalo", data=raw, timeout=10,
                         headers={"Content-Type": "application/json",
                                  "X-ZEvent-Signature": sig})


def zalo_ts(clock: FakeClock) -> str:
    return str(int(clock.now().timestamp() * 1000))


def user_send_text(uid: str, text: str, msg_id: str, clock: FakeClock) -> dict[str, Any]:
    return {"app_id": ZALO_APP, "user_id_by_app": "55" + uid, "event_name": "user_send_text",
            "timestamp": zalo_ts(clock), "sender": {"id": uid},
            "recipient": {"id": "579745863508352884"}, "message": {"text": text, "msg_id": msg_id}}


def test_zalo_text_keyword_stops_every_channel_and_is_confirmed_once(zalo_hooks: Any) -> None:
    db, app, port, fake, clock = zalo_hooks
    number, uid = "+84912345010", "2512523625412515"
    seed_ledger(db, [number], zalo={number: uid})
    event = user_send_text(uid, "T.C", "msg-tc-1", clock)
    assert zalo_post(port, event).status_code == 200
    assert zalo_post(port, event).status_code == 200  # Zalo's retry: the same body
    clock.advance(1)
    again = dict(event, timestamp=zalo_ts(clock))  # delivered again in another event
    assert zalo_post(port, again).status_code == 200
    app.extensions["outreach_confirmations"].flush()
    [m] = rows(db, InboundMessage)
    assert (m.channel, m.sender, m.kind, m.keyword, m.confirmation) == (
        "zalo", uid, "optout", "TC", "sent")
    entries = {e.e164: e.channel for e in rows(db, Suppression)}
    assert entries == {uid: None, number: None}
    [sent] = fake.sends
    assert (sent.kind, sent.user_id, sent.text) == ("oa", uid, inbound.DEFAULT_CONFIRM_OPTOUT)


def test_zalo_unfollow_stops_only_zalo(zalo_hooks: Any) -> None:
    db, app, port, fake, clock = zalo_hooks
    number, uid = "+84912345011", "8815023625412599"
    seed_ledger(db, [number], zalo={number: uid})
    event = {"oa_id": "579745863508352884", "follower": {"id": uid}, "user_id_by_app": "77",
             "event_name": "unfollow", "app_id": ZALO_APP, "timestamp": zalo_ts(clock),
             "source": "oa_profile"}
    assert zalo_post(port, event).status_code == 200
    assert zalo_post(port, event, secret="forged").status_code == 403
    app.extensions["outreach_confirmations"].flush()
    [m] = rows(db, InboundMessage)
    assert (m.kind, m.keyword, m.confirmation) == ("unfollow", "unfollow", None)
    entries = {e.e164: (e.channel, e.reason) for e in rows(db, Suppression)}
    assert entries == {uid: ("zalo", "zalo-unfollow"), number: ("zalo", "zalo-unfollow")}
    assert fake.sends == []
    with db.engine.connect() as conn:
        assert suppression.is_suppressed(conn, number, "zalo")
        assert not suppression.is_suppressed(conn, number, "sms")
    # the claim: the Zalo deliveries (by number and by user id) are skipped, an SMS one is not
    with db.engine.begin() as conn:
        conn.execute(insert(Delivery).values(
            campaign_id="c1", run_id=1, recipient_id=1, dedupe_key="day:2024-07-31",
            channel="sms", gateway="twilio", address=number, status="queued", attempts=0,
            queued_at=T0, updated_at=T0))
        claimed = states.claim(conn, 1, limit=10, owner="t:1:x", now=T0,
                               lease_expires=T0 + dt.timedelta(minutes=1))
    assert [(c["channel"], c["address"]) for c in claimed] == [("sms", number)]
    # an SMS keyword later widens the entry to every channel
    with db.engine.begin() as conn:
        inbound.record_inbound(conn, inbound.Inbound(
            channel="sms", gateway="twilio", provider_message_id="SM" + "c" * 32, sender=number,
            text="DUNG", received_at=T0))
    assert {e.e164: e.channel for e in rows(db, Suppression)}[number] is None


def test_opt_in_lifts_only_a_reply_opt_out(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    a, b = numbers(2, start=300)
    with db.engine.begin() as conn:
        suppression.add(conn, [b], reason="citizen-request", source="hotline")
        for i, (n, text) in enumerate(((a, "TC"), (a, "DK"), (b, "Đăng ký"))):
            inbound.record_inbound(conn, inbound.Inbound(
                channel="sms", gateway="twilio", provider_message_id=f"SM{i}", sender=n,
                text=text, received_at=T0 + dt.timedelta(minutes=i)))
    assert [(e.e164, e.source) for e in rows(db, Suppression)] == [(b, "hotline")]
    assert [m.kind for m in rows(db, InboundMessage)] == ["optout", "optin", "optin"]


# -- reports, purge, CLI --------------------------------------------------------------------------

def test_replies_counted_in_reports_and_official_report(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    senders = numbers(3, start=400)
    seed_ledger(db, senders)
    with db.engine.begin() as conn:
        for i, (n, text) in enumerate(zip(senders, ("TC", "Cảm ơn", "tu choi"))):
            inbound.record_inbound(conn, inbound.Inbound(
                channel="sms", gateway="twilio", provider_message_id=f"SM{i}", sender=n,
                text=text, received_at=T0 + dt.timedelta(days=i)))
        data = reports.campaign_report(conn, "c1")
    replies = data["replies"]
    assert replies["total"] == 3 and replies["optouts"] == 2
    assert replies["by_keyword"] == {"TC": 1, "TU CHOI": 1}
    assert replies["by_kind"]["message"] == 1
    assert list(replies["by_day"]) == ["2024-07-30", "2024-07-31", "2024-08-01"]
    res = CliRunner().invoke(cli_main, ["--database-url", str(db.engine.url), "inbox", "counts",
                                        "--format", "json"])
    assert res.exit_code == 0, res.output
    overall = json.loads(res.output)
    assert overall["by_campaign"] == {"c1": 3} and overall["by_channel"] == {"sms": 3}
    assert overall["by_day"]["2024-07-31"] == {"optout": 0, "optin": 0, "unfollow": 0,
                                               "message": 1}
    from outreach.reporting import official

    html = official.render(data)
    assert "Phản hồi của người dân" in html
    assert "Từ chối nhận tin" in html


def test_purge_covers_inbound_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = fresh_db(tmp_path)
    n = numbers(1, start=500)[0]
    seed_ledger(db, [n])
    with db.engine.begin() as conn:
        conn.execute(Run.__table__.update().values(status="completed", finished_at=T0))
        conn.execute(insert(SmppInbound).values(
            account="acct", source=n, destination="8079", text="Số tôi là " + n, data_coding=8,
            received_at=T0))
        inbound.ingest_smpp(conn, now=T0)
        inbound.record_inbound(conn, inbound.Inbound(
            channel="sms", gateway="twilio", provider_message_id="SMx", sender=n, text="TC",
            received_at=T0))
    key = b"k" * 32
    res = privacy.purge(db, older_than_days=30, key=key,
                        now=T0 + dt.timedelta(days=60))
    assert res.campaigns == ["c1"] and res.inbound_messages == 2 and res.smpp_inbound == 1
    msgs = rows(db, InboundMessage)
    assert {m.sender for m in msgs} == {privacy.hash_number(key, n)}
    assert all(m.text is None and m.purged_at is not None for m in msgs)
    assert [m.kind for m in msgs] == ["message", "optout"]  # still counted
    [raw] = rows(db, SmppInbound)
    assert raw.text == "" and n not in raw.source
    # the opt-out itself is kept on purpose: it must go on matching the number
    assert [e.e164 for e in rows(db, Suppression)] == [n]


def test_optout_list_shows_source_and_evidence(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    n = numbers(1, start=600)[0]
    with db.engine.begin() as conn:
        inbound.record_inbound(conn, inbound.Inbound(
            channel="sms", gateway="twilio", provider_message_id="SMy", sender=n,
            text="Từ chối", received_at=T0))
    res = CliRunner().invoke(cli_main, ["--database-url", str(db.engine.url), "optout", "list",
                                        "--format", "json"])
    assert res.exit_code == 0, res.output
    [entry] = json.loads(res.output)
    assert entry["source"] == "reply:twilio" and entry["channels"] == "all"
    assert entry["reason"] == "reply-keyword" and "'Từ chối'" in entry["evidence"]
    assert entry["e164"] == "096****600"


# -- PostgreSQL ------------------------------------------------------------------------------------

def test_postgres_reply_stored_once_under_concurrency_and_claim_skips(pg_db: Database  # noqa: F811
                                                                      ) -> None:
    n = "+84912345077"
    seed_ledger(pg_db, [n])
    with pg_db.engine.begin() as conn:
        conn.execute(insert(Delivery).values(
            campaign_id="c1", run_id=1, recipient_id=1, dedupe_key="day:2024-07-31",
            channel="sms", gateway="twilio", address=n, status="queued", attempts=0,
            queued_at=T0, updated_at=T0))
    results: list[inbound.InboundResult] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        with pg_db.engine.begin() as conn:
            results.append(inbound.record_inbound(conn, inbound.Inbound(
                channel="sms", gateway="twilio", provider_message_id="SM" + "d" * 32,
                sender=n, text="KHONG NHAN", received_at=T0)))

    from sqlalchemy.exc import IntegrityError

    threads = [threading.Thread(target=lambda: _swallow(deliver, IntegrityError))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rows(pg_db, InboundMessage)) == 1
    assert sum(not r.duplicate for r in results) == 1
    with pg_db.engine.begin() as conn:
        claimed = states.claim(conn, 1, limit=10, owner="t:1:x", now=T0,
                               lease_expires=T0 + dt.timedelta(minutes=1))
    assert claimed == []
    [entry] = rows(pg_db, Suppression)
    assert entry.e164 == n and entry.channel is None


def _swallow(fn: Any, exc: type[BaseException]) -> None:
    try:
        fn()
    except exc:
        pass


# -- eSMS short-code MO -------------------------------------------------------------------------

def test_esms_mo_signed_keyword_opts_out_and_a_bad_sign_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = fresh_db(tmp_path)
    n = numbers(1, start=700)[0]
    seed_ledger(db, [n])
    app = create_app(db)
    client = app.test_client()
    q = {"smsid": "MO-1", "cpid": "cp1", "sender": "0" + n[3:], "keyword": "UBND",
         "content": "UBND Từ chối", "receiveTime": "2024-07-30 09:00:00"}
    assert client.get("/webhooks/esms/mo", query_string=q).status_code == 503  # no MO contract
    monkeypatch.setenv("OUTREACH_ESMS_MO_KEY", "mo-key-0123456789")
    sign = inbound.esms_mo_signature("cp1", "MO-1", "UBND Từ chối", q["receiveTime"],
                                     "mo-key-0123456789")
    assert client.get("/webhooks/esms/mo", query_string={**q, "sign": "0" * 32}
                      ).status_code == 403
    assert rows(db, InboundMessage) == []
    for _ in range(2):
        r = client.get("/webhooks/esms/mo", query_string={**q, "sign": sign})
        assert (r.status_code, r.text) == (200, "1")
    [m] = rows(db, InboundMessage)
    assert (m.gateway, m.sender, m.text, m.kind, m.keyword, m.confirmation) == (
        "esms", n, "Từ chối", "optout", "TU CHOI", None)
    assert [(e.e164, e.source) for e in rows(db, Suppression)] == [(n, "reply:esms")]


def test_confirmation_gateway_built_from_the_environment_has_no_status_callback(
        tmp_path: Path, twilio_server: FakeTwilio, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """`outreach webhooks serve` builds the reply gateway from the same settings as sending,
    but a confirmation belongs to no delivery, so it asks for no status callback."""
    for name, value in (("TWILIO_ACCOUNT_SID", twilio_server.account_sid),
                        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN), ("TWILIO_FROM", "SYTECANTHO"),
                        ("OUTREACH_TWILIO_API_URL", twilio_server.base_url),
                        ("OUTREACH_PUBLIC_BASE_URL", PUBLIC)):
        monkeypatch.setenv(name, value)
    db = fresh_db(tmp_path)
    n = numbers(1, start=800)[0]
    app = create_app(db, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC)
    with waitress_on_loopback(app, threads=2) as port:
        assert twilio_post(port, inbound_sms("SM" + "9" * 32, n, "STOP")).status_code == 200
    app.extensions["outreach_confirmations"].flush()
    [create] = twilio_server.creates()
    assert create.params["To"] == n and create.params["Body"] == inbound.DEFAULT_CONFIRM_OPTOUT
    assert "StatusCallback" not in create.params
    [m] = rows(db, InboundMessage)
    assert m.confirmation == "sent" and m.confirmation_id == twilio_server.messages[0]["sid"]


def test_suppression_scopes_widen_and_never_narrow(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    a, b, c = numbers(3, start=900)
    with db.engine.begin() as conn:
        suppression.add(conn, [a, b], reason="r", source="s", channel="zalo")
        suppression.add(conn, [c], reason="r", source="s")
        suppression.add(conn, [a], reason="r2", source="s2", channel="zalo")  # same: unchanged
        suppression.add(conn, [b], reason="r3", source="s3", channel="sms")  # other: both
        suppression.add(conn, [c], reason="r4", source="s4", channel="zalo")  # never narrower
        got = {n: (suppression.is_suppressed(conn, n, "sms"),
                   suppression.is_suppressed(conn, n, "zalo")) for n in (a, b, c)}
        assert suppression.suppressed_among(conn, [a, b, c], channel="sms") == {b, c}
    assert got == {a: (False, True), b: (True, True), c: (True, True)}
    assert {e.e164: (e.channel, e.reason) for e in rows(db, Suppression)} == {
        a: ("zalo", "r"), b: (None, "r3"), c: (None, "r")}

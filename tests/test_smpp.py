"""The SMPP gateway: interoperability with a third-party SMSC (smpp34's server, from PyPI) and,
against our fault-injecting loopback SMSC, the session, addressing, encodings, joining, errors,
receipts (early, duplicated, shuffled, per segment) and mobile-originated messages."""

from __future__ import annotations

import asyncio
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.fakes.smpp_server import PASSWORD, SYSTEM_ID, FakeSmsc, smsc  # noqa: F401
from tests.helpers import fresh_db, in_window, load, seed_run, statuses, write_campaign

from outreach.input import text as textmod
from outreach.clock import FakeClock
from outreach.gateways import base, build_gateways
from outreach.gateways.base import OutboundMessage
from outreach.gateways.smpp import SmppGateway, gsm7_bytes, gsm7_text
from outreach.ledger.models import Delivery, SmppInbound, SmppSegment

PLAN_TEXT = unicodedata.normalize("NFC", (
    "Toàn dân tích cực tham gia phòng, chống mua bán người. Khi phát hiện dấu hiệu liên quan "
    "đến mua bán người hãy thông báo ngay cho cơ quan Công an nơi gần nhất hoặc Tổng đài quốc "
    "gia 111 để được tư vấn, hỗ trợ, hướng dẫn kịp thời"))
TO = "+84912345001"


def msg(body: str = PLAN_TEXT, to: str = TO, delivery_id: int = 1) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, campaign_id="c", channel="sms", to=to,
                           body=body, segments=textmod.analyse(body).segments)


def wait_for(pred: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.01)


@pytest.fixture
def gateways() -> Iterator[list[SmppGateway]]:
    made: list[SmppGateway] = []
    yield made
    for g in made:
        g.close()


def gateway(smsc: FakeSmsc, made: list[SmppGateway], **kw: Any) -> SmppGateway:  # noqa: F811
    g = SmppGateway(**smsc.options(**kw))
    made.append(g)
    return g


# -- a third-party SMSC: smpp34's server (Rust, PyPI), started here on 127.0.0.1 -------------

class Smpp34Smsc:
    """smpp34.Server in its own event loop thread: accepts binds, reassembles UDH segments,
    answers each submit_sm with an id and pushes a DELIVRD receipt per segment."""

    def __init__(self) -> None:
        import smpp34

        self.smpp34 = smpp34
        self.submits: list[Any] = []
        self.esme: Any = None
        self.acks: list[int] = []
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._main(ready)), daemon=True).start()
        assert ready.wait(10)

    async def _main(self, ready: threading.Event) -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.loop = asyncio.get_running_loop()
        self.server = self.smpp34.Server("127.0.0.1", self.port, system_id="SMPP34")
        await self.server.start()
        ready.set()
        await self._serve()

    async def _serve(self) -> None:
        n = 0
        while True:
            ev = await self.server.next()
            if isinstance(ev, self.smpp34.Esme):
                self.esme = ev
            elif isinstance(ev, self.smpp34.SubmitSmEvent):
                n += 1
                mid = f"R34-{n}"
                self.submits.append((ev.source_addr, ev.source_addr_ton, ev.source_addr_npi,
                                     ev.destination_addr, ev.dest_addr_ton, ev.dest_addr_npi,
                                     ev.esm_class, ev.data_coding, ev.registered_delivery,
                                     bytes(ev.short_message), mid))
                ev.accept(mid)
                receipt = (f"id:{mid} sub:001 dlvrd:001 submit date:2407300900 done "
                           f"date:2407300901 stat:DELIVRD err:000 text:").encode()
                r = await self.esme.deliver_sm(
                    ev.source_addr, receipt, source_addr=ev.destination_addr,
                    source_addr_ton=1, source_addr_npi=1, esm_class=0x04,
                    tlvs=[self.smpp34.Tlv(self.smpp34.TLV_RECEIPTED_MESSAGE_ID,
                                          mid.encode() + b"\0")])
                self.acks.append(r.command_status)

    def stop(self) -> None:
        async def stop() -> None:
            await self.server.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)


def test_interoperates_with_smpp34_server_bind_four_segment_ucs2_and_receipts(
        tmp_path: Path) -> None:
    """Bind, the plan's text as 4 UCS-2 segments (UDH), and the receipts of a real third-party
    SMSC implementation move the delivery to delivered (every segment delivered)."""
    server = Smpp34Smsc()
    a = textmod.analyse(PLAN_TEXT)
    assert (a.encoding, a.segments) == ("UCS-2", 4)
    spec_path = write_campaign(tmp_path, phones=["0912345001"], text=PLAN_TEXT, channels="""
[[channels]]
channel = "sms"
sender = "STTTTCanTho"
""")
    spec = load(spec_path)
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    run_id = seed_run(db, spec, clock.now())
    gw = SmppGateway(host="127.0.0.1", port=server.port, system_id="cantho", password="pw",
                     rate=1000, db=db, timeout=5)
    try:
        from outreach.sending.engine import send_run

        rep = send_run(db, spec, run_id, {"sms": gw}, clock=clock)
        assert rep.counts in ({"sent": 1}, {"delivered": 1})  # receipts may be in already
        wait_for(lambda: gw.receipts.applied == 4)
        assert gw.check()["smsc"] == "SMPP34"
    finally:
        gw.close()
        server.stop()
    assert len(server.submits) == 4
    ref = server.submits[0][9][3]
    joined = b""
    for i, (src, ston, snpi, dst, dton, dnpi, esm, dc, reg, sm, _mid) in enumerate(server.submits):
        assert (src, ston, snpi) == ("STTTTCanTho", 5, 0)
        assert (dst, dton, dnpi) == ("84912345001", 1, 1)
        assert (esm, dc, reg) == (0x40, 8, 1)
        assert sm[:6] == bytes((5, 0, 3, ref, 4, i + 1))
        assert len(sm) - 6 <= 134  # 67 UCS-2 units
        joined += sm[6:]
    assert joined.decode("utf-16-be") == PLAN_TEXT
    assert server.acks == [0, 0, 0, 0]
    assert statuses(db) == {"+84912345001": "delivered"}
    with db.engine.connect() as conn:
        row = conn.execute(select(Delivery.provider_message_id, Delivery.segments)).one()
        segs = conn.execute(select(SmppSegment.message_id, SmppSegment.stat)
                            .order_by(SmppSegment.part)).all()
    assert tuple(row) == ("R34-1", 4)
    assert [tuple(s) for s in segs] == [(f"R34-{i}", "DELIVRD") for i in range(1, 5)]


# -- addressing, encodings, joining ------------------------------------------------------------

def test_gsm7_round_trip_and_extension_characters() -> None:
    s = "Xin chao @£$ {ok} [x] ~|^ €\f\\"
    data = gsm7_bytes(s)
    assert data[:8] == b"Xin chao"
    assert data[9] == 0x00 and data[10] == 0x01 and data[11] == 0x02  # @ £ $
    assert bytes((0x1B, 0x65)) in data  # €
    assert gsm7_text(data) == s
    with pytest.raises(ValueError):
        gsm7_bytes("Đ")


@pytest.mark.parametrize("join", ["udh", "sar", "payload"])
def test_long_ucs2_message_joined_as_configured(smsc: FakeSmsc, gateways: list, join: str  # noqa: F811
                                                ) -> None:
    g = gateway(smsc, gateways, join=join)
    res = g.send(msg())
    expected_pdus = 1 if join == "payload" else 4
    assert smsc.submits == expected_pdus
    assert res.segments == 4  # billed as the preview promised, whichever way it travels
    [m] = smsc.messages
    assert (m.to, m.text, m.data_coding, m.source, m.source_ton, m.dest_ton) == (
        "84912345001", PLAN_TEXT, 8, "STTTTCanTho", 5, 1)
    assert res.provider_message_id == m.message_id


def test_gsm7_text_goes_as_data_coding_0_or_the_configured_default(smsc: FakeSmsc,  # noqa: F811
                                                                   gateways: list) -> None:
    body = "Thong bao: tiem chung ngay 30/7 tai tram y te phuong. " * 4  # 216 chars: 2 parts
    assert textmod.analyse(body).segments == 2
    g = gateway(smsc, gateways)
    assert g.send(msg(body)).segments == 2
    g1 = gateway(smsc, gateways, gsm_coding=1)
    g1.send(msg("Xin chao", to="+84912345009"))
    assert [(m.text, m.data_coding, m.segments) for m in smsc.messages] == [
        (body, 0, 2), ("Xin chao", 1, 1)]


def test_numeric_senders_and_bad_brandnames() -> None:
    assert SmppGateway._source_address("8088") == ("8088", 3, 0)
    assert SmppGateway._source_address("+84912345678") == ("84912345678", 1, 1)
    for bad in ("SởTTTT", "STTTTCanThoCity"):
        with pytest.raises(base.ConfigurationError, match="brandname"):
            SmppGateway(host="h", system_id="s", password="p", source=bad)


def test_configuration_from_environment_never_shows_the_password(
        monkeypatch: pytest.MonkeyPatch, smsc: FakeSmsc, gateways: list) -> None:  # noqa: F811
    for k in ("HOST", "SYSTEM_ID", "PASSWORD"):
        monkeypatch.delenv(f"OUTREACH_SMPP_{k}", raising=False)
    with pytest.raises(base.ConfigurationError, match="OUTREACH_SMPP_HOST"):
        SmppGateway()
    monkeypatch.setenv("OUTREACH_SMPP_HOST", "127.0.0.1")
    monkeypatch.setenv("OUTREACH_SMPP_PORT", str(smsc.port))
    monkeypatch.setenv("OUTREACH_SMPP_SYSTEM_ID", SYSTEM_ID)
    monkeypatch.setenv("OUTREACH_SMPP_PASSWORD", PASSWORD)
    monkeypatch.setenv("OUTREACH_SMPP_SOURCE", "STTTTCanTho")
    monkeypatch.setenv("OUTREACH_SMPP_WINDOW", "7")
    monkeypatch.setenv("OUTREACH_SMPP_JOIN", "sar")
    [g] = build_gateways({"sms": "smpp"}, None).values()
    gateways.append(g)
    assert (g.window, g.concurrency, g.join, g.port) == (7, 7, "sar", smsc.port)
    facts = g.check()
    assert facts["smsc"] == "FAKESMSC" and PASSWORD not in repr((facts, g, g.session))
    monkeypatch.setenv("OUTREACH_SMPP_PASSWORD", "toolongpassword")
    with pytest.raises(base.ConfigurationError, match="at most 8"):
        SmppGateway()
    monkeypatch.setenv("OUTREACH_SMPP_JOIN", "glue")
    monkeypatch.setenv("OUTREACH_SMPP_PASSWORD", PASSWORD)
    with pytest.raises(base.ConfigurationError, match="OUTREACH_SMPP_JOIN"):
        SmppGateway()


# -- the session -------------------------------------------------------------------------------

def test_window_bounds_outstanding_submits_shared_by_threads(smsc: FakeSmsc,  # noqa: F811
                                                             gateways: list) -> None:
    smsc.delay = 0.02
    g = gateway(smsc, gateways, window=5)
    results: list[str] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for j in range(8):
            r = g.send(msg("Xin chao", to=f"+849123{k:02d}{j:03d}", delivery_id=k * 100 + j))
            with lock:
                results.append(r.provider_message_id)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 96 and len(set(results)) == 96
    assert smsc.inflight_max == 5  # reached, never exceeded
    assert smsc.binds == 1


def test_reconnects_with_backoff_after_the_smsc_drops_and_unbinds_on_close(
        smsc: FakeSmsc) -> None:  # noqa: F811
    g = SmppGateway(**smsc.options())
    g.send(msg("Xin chao"))
    smsc.drop_all()
    wait_for(lambda: not g.session.bound)
    t0 = time.monotonic()
    while True:
        try:
            g.send(msg("Xin chao lan hai", delivery_id=2))
            break
        except base.UnavailableError as exc:
            assert exc.retry_after is None or exc.retry_after <= 0.5
            time.sleep(0.02)
    assert time.monotonic() - t0 < 2
    assert smsc.binds == 2
    g.close()
    assert smsc.unbinds == 1
    assert [m.text for m in smsc.messages] == ["Xin chao", "Xin chao lan hai"]


def test_connect_refused_is_unavailable_and_backs_off(gateways: list) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    g = SmppGateway(host="127.0.0.1", port=port, system_id="x", password="y", source="STTTT")
    gateways.append(g)
    with pytest.raises(base.UnavailableError) as first:
        g.send(msg("Xin chao"))
    assert first.value.reason == "connect"
    with pytest.raises(base.UnavailableError) as second:
        g.send(msg("Xin chao"))
    assert second.value.reason == "reconnecting" and 0 < second.value.retry_after <= 0.5


def test_enquire_link_keeps_an_idle_session(smsc: FakeSmsc, gateways: list) -> None:  # noqa: F811
    g = gateway(smsc, gateways, enquire_link=0.15)
    g.check()
    wait_for(lambda: smsc.enquire_links >= 3, timeout=3)
    assert g.session.bound and smsc.binds == 1


@pytest.mark.parametrize("outcome,error,reason", [
    ("throttled", base.ThrottledError, "rate-limited"),
    ("queue_full", base.ThrottledError, "queue-full"),
    ("invalid", base.InvalidAddressError, "invalid-number"),
    ("unavailable", base.UnavailableError, "smsc-system-error"),
])
def test_command_status_mapping(smsc: FakeSmsc, gateways: list, outcome: str,  # noqa: F811
                                error: type, reason: str) -> None:
    smsc.script(TO, outcome)
    g = gateway(smsc, gateways)
    with pytest.raises(error) as info:
        g.send(msg())
    assert info.value.reason == reason and smsc.messages == []


def test_throttled_later_segment_is_retried_within_the_message(smsc: FakeSmsc,  # noqa: F811
                                                               gateways: list) -> None:
    """Resending the whole message would show its first parts twice: a throttled later
    segment is retried on its own, with the same UDH reference."""
    smsc.segment_faults[3].extend(["throttled", "queue_full"])
    g = gateway(smsc, gateways)
    res = g.send(msg())
    assert (res.segments, smsc.submits) == (4, 6)
    assert [(m.text, m.segments) for m in smsc.messages] == [(PLAN_TEXT, 4)]


def test_a_later_segment_refused_fails_the_message_as_partial(smsc: FakeSmsc,  # noqa: F811
                                                              gateways: list) -> None:
    smsc.segment_faults[2].append("invalid")
    g = gateway(smsc, gateways)
    with pytest.raises(base.PermanentError) as info:
        g.send(msg())
    assert info.value.reason == "partial" and "1 of 4" in str(info.value)
    assert smsc.submits == 2


def test_slow_response_is_unknown_and_a_late_answer_is_found_by_lookup(
        smsc: FakeSmsc, gateways: list) -> None:  # noqa: F811
    smsc.slow_delay = 0.6
    smsc.script(TO, "slow")
    g = gateway(smsc, gateways, timeout=0.3)
    m = msg("Xin chao", delivery_id=42)
    with pytest.raises(base.OutcomeUnknownError, match="within"):
        g.send(m)
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    wait_for(lambda: 42 in g.session.late)
    found = g.lookup(m, now, now)
    assert found is not None and found.provider_message_id == smsc.messages[0].message_id
    assert g.lookup(msg("Xin chao", delivery_id=43), now, now) is None


def test_query_sm_polls_statuses(smsc: FakeSmsc, gateways: list) -> None:  # noqa: F811
    g = gateway(smsc, gateways)
    mid = g.send(msg("Xin chao")).provider_message_id
    [upd] = g.fetch_statuses([mid, "M99999999"])
    assert (upd.provider_message_id, upd.provider_status, upd.status) == (mid, "ACCEPTD", "sent")


# -- receipts through the ledger ---------------------------------------------------------------

def _campaign(tmp_path: Path, n: int, text: str) -> tuple[Any, Any, int, FakeClock]:
    phones = [f"09123450{i:02d}" for i in range(n)]
    spec = load(write_campaign(tmp_path, phones=phones, text=text, channels="""
[[channels]]
channel = "sms"
sender = "STTTTCanTho"
"""))
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    return spec, db, seed_run(db, spec, clock.now()), clock


def _send(smsc: FakeSmsc, tmp_path: Path, n: int, text: str, **kw: Any  # noqa: F811
          ) -> tuple[Any, SmppGateway]:
    from outreach.sending.engine import send_run

    spec, db, run_id, clock = _campaign(tmp_path, n, text)
    g = SmppGateway(**smsc.options(rate=10000, db=db, **kw))
    rep = send_run(db, spec, run_id, {"sms": g}, clock=clock)
    assert set(rep.counts) <= {"sent", "delivered"} and sum(rep.counts.values()) == n
    return db, g


@pytest.mark.parametrize("mode", ["after", "early", "duplicate"])
def test_receipts_after_early_or_twice_deliver_each_once(smsc: FakeSmsc, tmp_path: Path,  # noqa: F811
                                                        mode: str) -> None:
    smsc.receipts, smsc.receipt_mode = "DELIVRD", mode
    db, g = _send(smsc, tmp_path, 12, "Xin chao")
    per = 2 if mode == "duplicate" else 1
    wait_for(lambda: g.receipts.applied == 12 * per)
    g.close()
    assert set(statuses(db).values()) == {"delivered"}
    assert smsc.deliver_acks == 12 * per


def test_shuffled_segment_receipts_deliver_only_when_every_segment_is(smsc: FakeSmsc,  # noqa: F811
                                                                      tmp_path: Path) -> None:
    smsc.receipts, smsc.receipt_mode = "DELIVRD", "held"
    db, g = _send(smsc, tmp_path, 3, PLAN_TEXT)
    # all but the last segment of the second message
    last = smsc.messages[1].message_id
    last_seg = f"M{int(last[1:]) + 3:08d}"
    with smsc._lock:
        keep = [h for h in smsc._held if h[1].receipted_message_id == last_seg]
        smsc._held = [h for h in smsc._held if h not in keep]
    assert smsc.release_receipts() == 11
    wait_for(lambda: g.receipts.applied == 11)
    st = statuses(db)
    assert sorted(st.values()) == ["delivered", "delivered", "sent"]
    smsc._held = keep
    smsc.release_receipts()
    wait_for(lambda: g.receipts.applied == 12)
    g.close()
    assert set(statuses(db).values()) == {"delivered"}


def test_one_undelivered_segment_makes_the_message_undelivered(smsc: FakeSmsc,  # noqa: F811
                                                               tmp_path: Path) -> None:
    smsc.receipts, smsc.receipt_mode = "DELIVRD", "held"
    db, g = _send(smsc, tmp_path, 1, PLAN_TEXT)
    ids = [h[1].receipted_message_id for h in smsc._held]
    smsc._held.clear()
    for mid in ids[:3]:
        smsc.deliver(smsc.receipt(mid, "DELIVRD"))
    smsc.deliver(smsc.receipt(ids[3], "EXPIRED", tlv=False))  # id: field only
    smsc.deliver(smsc.receipt(ids[3], "ENROUTE"))  # out of order: changes nothing
    wait_for(lambda: g.receipts.applied == 5)
    g.close()
    assert statuses(db) == {"+84912345000": "undelivered"}
    with db.engine.connect() as conn:
        d = conn.execute(select(Delivery.provider_status)).scalar_one()
        stat = conn.execute(select(SmppSegment.stat).where(
            SmppSegment.message_id == ids[3])).scalar_one()
    assert (d, stat) == ("EXPIRED", "EXPIRED")


def test_receipt_before_the_segments_are_recorded_is_kept_then_applied(tmp_path: Path) -> None:
    """A segment receipt that finds nothing is pending; recording the segments folds it in."""
    import datetime as dt

    from outreach.gateways.smpp import SmppReceipt, apply_receipts, record_segments

    spec, db, run_id, clock = _campaign(tmp_path, 1, PLAN_TEXT)
    now = dt.datetime.now(dt.timezone.utc)
    from outreach.ledger import states

    with db.engine.begin() as conn:
        did = conn.execute(select(Delivery.id)).scalar_one()
        states.apply(conn, [states.Change(did, states.SENDING)], source="test", now=now)
        apply_receipts(conn, "acct", [SmppReceipt("S2", "DELIVRD")], now=now)
    assert statuses(db) == {"+84912345000": "sending"}  # kept pending: S2 is nobody's yet
    with db.engine.begin() as conn:
        record_segments(conn, "acct", did, ["S1", "S2"], now=now)
    assert statuses(db) == {"+84912345000": "sending"}  # S1 has no receipt yet
    with db.engine.begin() as conn:
        apply_receipts(conn, "acct", [SmppReceipt("S1", "DELIVRD")], now=now)
    assert statuses(db) == {"+84912345000": "delivered"}
    with db.engine.connect() as conn:
        segs = conn.execute(select(SmppSegment.message_id, SmppSegment.stat)
                            .order_by(SmppSegment.part)).all()
    assert [tuple(r) for r in segs] == [("S1", "DELIVRD"), ("S2", "DELIVRD")]


def test_mobile_originated_reply_is_stored(smsc: FakeSmsc, tmp_path: Path) -> None:  # noqa: F811
    db = fresh_db(tmp_path)
    g = SmppGateway(**smsc.options(db=db))
    g.check()
    reply = unicodedata.normalize("NFD", "Đã nhận, cảm ơn")
    smsc.deliver(dict(source_addr="84912345001", source_addr_ton=1, source_addr_npi=1,
                      destination_addr="STTTTCanTho", esm_class=0, data_coding=8,
                      short_message=reply.encode("utf-16-be")))
    wait_for(lambda: g.receipts.inbound == 1)
    g.close()
    with db.engine.connect() as conn:
        row = conn.execute(select(SmppInbound.source, SmppInbound.text,
                                  SmppInbound.data_coding)).one()
    assert tuple(row) == ("+84912345001", unicodedata.normalize("NFC", reply), 8)
    assert smsc.deliver_acks == 1


def test_listen_applies_receipts_while_no_run_sends(smsc: FakeSmsc, tmp_path: Path,  # noqa: F811
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A paused run's receipts still arrive: `outreach smpp listen` binds and applies them;
    `gateways check smpp` binds and never prints the password."""
    from click.testing import CliRunner

    from outreach.ledger import states
    from outreach.cli import main

    spec, db, run_id, clock = _campaign(tmp_path, 1, "Xin chao")
    with db.engine.begin() as conn:
        did = conn.execute(select(Delivery.id)).scalar_one()
        states.apply(conn, [states.Change(did, states.SENDING)], source="test", now=clock.now())
        states.record_accepted(conn, [(did, states.SENT, "M00000077", "ESME_ROK", 1, None)],
                               source="test", now=clock.now())
    for k, v in smsc.options().items():
        monkeypatch.setenv(f"OUTREACH_SMPP_{k.upper()}", str(v))
    url = f"sqlite:///{tmp_path / 't.db'}"
    checked = CliRunner().invoke(main, ["--database-url", url, "gateways", "check", "smpp"])
    assert checked.exit_code == 0, checked.output
    assert "FAKESMSC" in checked.output and PASSWORD not in checked.output
    threading.Timer(0.5, lambda: smsc.deliver(smsc.receipt("M00000077", "DELIVRD"))).start()
    res = CliRunner().invoke(main, ["--database-url", url, "smpp", "listen", "--seconds", "1.5"])
    assert res.exit_code == 0, res.output
    assert "receipts applied: 1" in res.output
    assert statuses(db) == {"+84912345000": "delivered"}
    vi = CliRunner().invoke(main, ["--lang", "vi", "--database-url", url, "smpp", "listen",
                                   "--seconds", "0.5"])
    assert vi.exit_code == 0, vi.output
    assert "đang nghe tại 127.0.0.1:" in vi.output and "gửi SIGTERM để dừng" in vi.output
    assert "báo cáo phát đã ghi nhận: 0; tin trả lời đã lưu: 0" in vi.output
    assert smsc.unbinds == 3 and smsc.deliver_acks == 1  # check, listen, listen (vi)


def test_code_table_classes() -> None:
    from outreach.gateways.smpp import error_for

    cases = {0x58: (base.ThrottledError, "ESME_RTHROTTLED", 1.0),
             0x14: (base.ThrottledError, "ESME_RMSGQFUL", 1.0),
             0x0B: (base.InvalidAddressError, "ESME_RINVDSTADR", None),
             0x0E: (base.AuthenticationError, "ESME_RINVPASWD", None),
             0x0A: (base.StopRunError, "ESME_RINVSRCADR", None),
             0x08: (base.UnavailableError, "ESME_RSYSERR", None),
             0x1234: (base.PermanentError, "0x00001234", None)}
    for status, (cls, name, retry) in cases.items():
        err = error_for(status)
        assert type(err) is cls and err.provider_code == name
        assert getattr(err, "retry_after", None) == retry

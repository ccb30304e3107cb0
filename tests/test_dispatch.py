"""The dispatcher: exactly once, faults classified, retries, windows, lateness, pause, rate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from outreach.ledger import states
from outreach.sending import ops, outbound
from outreach.clock import VN_TZ, FakeClock
from outreach.sending.ratelimit import RateLimiter
from outreach.gateways import base as gw
from outreach.gateways.mock import MockGateway
from outreach.ledger.models import Delivery, Run, Suppression
from tests.helpers import (events, fresh_db, in_window, load, numbers, seed_run, statuses,
                           write_campaign)


def setup(tmp_path: Path, **kw):  # type: ignore[no-untyped-def]
    spec = load(write_campaign(tmp_path, **kw))
    return spec, fresh_db(tmp_path)


def test_resume_after_a_dropped_gateway_sends_each_number_once(tmp_path: Path) -> None:
    """Cases: six recipients; the gateway accepts three, then the connection drops."""
    spec, db = setup(tmp_path, n=6)
    phones = numbers(6)
    clock = FakeClock(in_window())
    # the 4th request reached the provider, then the connection dropped; after that the
    # provider is unreachable
    mock = MockGateway(script={phones[3]: ["lost"], phones[4]: ["timeout_before"] * 10,
                               phones[5]: ["timeout_before"] * 10})
    res = ops.launch(db, spec, gateways={"sms": mock}, clock=clock)
    assert res.report is not None
    first = statuses(db)
    assert [first[p] for p in phones[:3]] == ["sent"] * 3
    assert first[phones[3]] == "unknown"
    assert mock.requests == 3 + 1 + 5 + 5  # 4 accepted/lost, 2 numbers × 5 attempts not sent
    assert first[phones[4]] == first[phones[5]] == "failed"
    # the operator resends the ones that failed; the unknown one is reconciled, not resent
    healthy = MockGateway()
    healthy._by_delivery = dict(mock._by_delivery)  # same provider, asked about the lost one
    healthy.outbox = list(mock.outbox)
    res2 = ops.resend(db, spec, gateways={"sms": healthy}, clock=clock)
    assert res2.report is not None
    accepted = [m.to for m in healthy.outbox]
    assert sorted(accepted) == sorted(phones)  # six numbers, once each, over both runs
    assert len(accepted) == 6


def test_interrupted_batch_is_reconciled_not_resent(tmp_path: Path) -> None:
    """A process that died after marking a batch `sending`: resume asks the gateway first."""
    spec, db = setup(tmp_path, n=6)
    clock = FakeClock(in_window())
    mock = MockGateway()
    run_id = seed_run(db, spec, clock.now())
    from outreach.sending import outbound
    from outreach.sending.engine import RunEngine, SendSettings
    from outreach.sending.leases import Lease

    d = RunEngine(db, spec, run_id, {"sms": mock}, clock=clock,
                  settings=SendSettings(batch_size=4),
                  lease=Lease(db, "ghost-host:1:dead", clock=clock))
    batch = d.claim()
    with db.engine.begin() as conn:  # all four requests had started ...
        assert states.mark_started(conn, [r["id"] for r in batch], owner="ghost-host:1:dead",
                                   now=clock.now()) == 4
    # ... and two of them reached the provider before the "crash"
    for row in batch[:2]:
        mock.send(outbound.message(spec, row))
    with db.engine.begin() as conn:  # the lease of the dead owner has expired
        conn.execute(Delivery.__table__.update().where(Delivery.status == "sending")
                     .values(lease_expires_at=clock.now() - dt.timedelta(seconds=1)))
    rep = ops.resume(db, spec, gateways={"sms": mock}, clock=clock)
    assert rep.reconciled == {"orphaned": 4, "found": 2, "requeued": 2, "still_unknown": 0,
                              "deferred": 0}
    assert sorted(mock.sent_to()) == sorted(numbers(6))
    assert set(statuses(db).values()) == {"sent"}
    evs = [e for e in events(db) if e["source"] == "reconcile"]
    assert {e["new_status"] for e in evs} == {"unknown", "sent", "queued"}


def test_throttled_by_the_provider_waits_for_retry_after(tmp_path: Path) -> None:
    """Cases: 429 with Retry-After: 2 twice, then accepted: sent once, ≥ 4 s later, not failed."""
    spec, db = setup(tmp_path, n=3)
    phones = numbers(3)
    clock = FakeClock(in_window())
    mock = MockGateway(script={phones[1]: ["throttled", "throttled"]}, sleep=clock.sleep)
    ops.launch(db, spec, gateways={"sms": mock}, clock=clock)
    st = statuses(db)
    assert st == {p: "sent" for p in phones}
    attempts = [m for _, m in mock.attempts if m.to == phones[1]]
    assert len(attempts) == 3 and mock.sent_to().count(phones[1]) == 1
    # the dispatcher slept at least the provider's Retry-After twice
    assert sum(s for s in clock.sleeps if s >= 2.0) >= 4.0
    assert not [e for e in events(db) if e["new_status"] == "failed"]


def test_retry_after_holds_every_sender_back(tmp_path: Path) -> None:
    clock = FakeClock(in_window())
    limiter = RateLimiter(0, clock)
    limiter.block_until(clock.monotonic() + 2.0)
    t0 = clock.monotonic()
    limiter.acquire()
    assert clock.monotonic() - t0 >= 2.0


def test_past_the_retry_cap_the_delivery_fails_rate_limited_and_the_run_goes_on(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=3)
    phones = numbers(3)
    clock = FakeClock(in_window())
    mock = MockGateway(script={phones[0]: ["throttled"] * 20}, sleep=clock.sleep)
    rep = ops.launch(db, spec, gateways={"sms": mock}, clock=clock).report
    assert rep is not None and rep.stopped is None
    st = statuses(db)
    assert st[phones[0]] == "failed" and st[phones[1]] == st[phones[2]] == "sent"
    with db.engine.connect() as conn:
        reason, code, attempts = conn.execute(select(Delivery.error_reason, Delivery.error_code,
                                                     Delivery.attempts)
                                              .where(Delivery.address == phones[0])).one()
    assert (reason, code) == ("rate-limited", "20429")
    assert len([1 for _, m in mock.attempts if m.to == phones[0]]) == 5


def test_permanent_errors_fail_with_code_and_opt_out_joins_the_suppression_list(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=4)
    phones = numbers(4)
    mock = MockGateway(script={phones[0]: ["invalid"], phones[1]: ["opted_out"]})
    ops.launch(db, spec, gateways={"sms": mock}, clock=FakeClock(in_window()))
    st = statuses(db)
    assert st == {phones[0]: "failed", phones[1]: "opted_out", phones[2]: "sent", phones[3]: "sent"}
    assert mock.requests == 4  # permanent errors are never retried
    with db.engine.connect() as conn:
        assert conn.execute(select(Delivery.error_code).where(Delivery.address == phones[0])).scalar() == "21211"
        supp = conn.execute(select(Suppression.e164, Suppression.reason)).all()
    assert supp == [(phones[1], "provider-opt-out")]


def test_authentication_error_pauses_the_run_and_sends_nothing_more(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=10)
    mock = MockGateway(default="auth")
    rep = ops.launch(db, spec, gateways={"sms": mock}, clock=FakeClock(in_window())).report
    assert rep is not None and rep.stopped == "gateway"
    assert "authentication" in (rep.reason or "")
    assert mock.requests == 1
    assert set(statuses(db).values()) == {"queued"}
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status)).scalar() == "paused"
    # fixed credentials: resume sends everyone exactly once
    good = MockGateway()
    ops.resume(db, spec, gateways={"sms": good}, clock=FakeClock(in_window()))
    assert sorted(good.sent_to()) == sorted(numbers(10))


def test_error_rate_above_threshold_pauses_instead_of_burning_the_list(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=60)
    clock = FakeClock(in_window())
    mock = MockGateway(default="unavailable", sleep=clock.sleep)
    rep = ops.launch(db, spec, gateways={"sms": mock}, clock=clock).report
    assert rep is not None and rep.stopped == "error-rate"
    counts = rep.counts
    assert counts.get("queued", 0) > 0  # the rest of the list was not burnt
    assert counts.get("failed", 0) <= 30


def test_timeout_after_the_request_went_out_is_unknown_and_not_retried(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=2)
    phones = numbers(2)

    class SlowThenTimeout(MockGateway):
        def send(self, message: gw.OutboundMessage) -> gw.SendResult:
            if message.to == phones[0]:
                self.requests += 1
                self.outbox.append(message)
                raise gw.OutcomeUnknownError("read timeout after 10 s")
            return super().send(message)

    mock = SlowThenTimeout()
    rep = ops.launch(db, spec, gateways={"sms": mock}, clock=FakeClock(in_window())).report
    assert statuses(db) == {phones[0]: "unknown", phones[1]: "sent"}
    assert mock.requests == 2
    assert rep is not None and rep.counts == {"unknown": 1, "sent": 1}


def test_states_only_move_forward() -> None:
    assert states.may_move("queued", "sending")
    assert states.may_move("sent", "delivered")
    assert not states.may_move("delivered", "sent")
    assert not states.may_move("failed", "sent")
    assert not states.may_move("unknown", "queued")
    assert states.may_move("unknown", "queued", backward="operator")
    assert not states.may_move("sent", "queued", backward="not-sent")


def test_window_end_pauses_and_the_next_window_continues(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=5, rate=1)
    spec = dataclasses.replace(spec, channels=(dataclasses.replace(spec.channels[0],
                                                                    concurrency=1),))
    # 21:59:57 in Vietnam: three seconds of window left at 1 message/s
    clock = FakeClock(dt.datetime(2024, 7, 30, 21, 59, 57, tzinfo=VN_TZ))
    mock = MockGateway(sleep=clock.sleep)
    res = ops.launch(db, spec, gateways={"sms": mock}, clock=clock, gateway=None)
    rep = res.report
    assert rep is not None and rep.stopped == "window"
    assert rep.resume_at == dt.datetime(2024, 7, 31, 7, 0, tzinfo=VN_TZ)
    sent_first = len(mock.outbox)
    assert 1 <= sent_first < 5
    for _, m in mock.attempts:
        pass
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status)).scalar() == "waiting"
    clock.set(dt.datetime(2024, 7, 31, 7, 0, 1, tzinfo=VN_TZ))
    ops.resume(db, spec, gateways={"sms": mock}, clock=clock)
    assert sorted(mock.sent_to()) == sorted(numbers(5))
    with db.engine.connect() as conn:
        times = conn.execute(select(Delivery.sending_at)).scalars().all()
    for t in times:  # nothing went out while the window was closed
        local = t.astimezone(VN_TZ).time()
        assert dt.time(7) <= local < dt.time(22)


def test_late_scheduled_run_is_not_sent_silently(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=3, lateness=60)
    clock = FakeClock(in_window())
    run_id = seed_run(db, spec, clock.now(), kind="scheduled", run_key="day:2024-07-30",
                      due_at=clock.now() - dt.timedelta(minutes=90))
    mock = MockGateway()
    from outreach.sending.engine import send_run

    rep = send_run(db, spec, run_id, {"sms": mock}, clock=clock)
    assert rep.stopped == "late" and "90 min late" in (rep.reason or "")
    assert mock.requests == 0
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status)).scalar() == "expired"
    rep2 = ops.resume(db, spec, gateways={"sms": mock}, clock=clock, allow_late=True)
    assert rep2.counts == {"sent": 3}


def test_pause_from_another_process_stops_after_the_current_batch(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=30)
    clock = FakeClock(in_window())
    calls = []

    class Pausing(MockGateway):
        def send(self, message: gw.OutboundMessage) -> gw.SendResult:
            calls.append(message.to)
            if len(calls) == 5:
                ops.set_run_state(db, spec.id, "pause", operator="tester")
            return super().send(message)

    mock = Pausing()
    from outreach.sending.engine import send_run

    run_id = seed_run(db, spec, clock.now())
    rep = send_run(db, spec, run_id, {"sms": mock}, clock=clock, batch_size=10)
    assert rep.stopped == "paused"
    assert rep.counts == {"sent": 10, "queued": 20}
    rep2 = ops.resume(db, spec, gateways={"sms": mock}, clock=clock)
    assert rep2.counts == {"sent": 30}
    assert len(mock.outbox) == 30


def test_stop_event_finishes_in_flight_and_requeues_the_rest(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=20)
    stop = threading.Event()

    class Interrupting(MockGateway):
        def send(self, message: gw.OutboundMessage) -> gw.SendResult:
            r = super().send(message)
            if len(self.outbox) == 3:
                stop.set()
            return r

    mock = Interrupting()
    rep = ops.launch(db, spec, gateways={"sms": mock}, clock=FakeClock(in_window()),
                     stop_event=stop).report
    assert rep is not None and rep.stopped == "interrupted"
    assert rep.counts == {"sent": 3, "queued": 17}
    assert not [1 for e in events(db) if e["new_status"] == "sending" and e["applied"]
                and False]


def test_rate_limit_is_never_exceeded_in_any_one_second_window() -> None:
    clock = FakeClock(in_window())
    limiter = RateLimiter(50, clock)
    stamps = []
    for _ in range(500):
        limiter.acquire()
        stamps.append(clock.monotonic())
    j = 0
    worst = 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    assert worst == 50
    assert stamps[-1] - stamps[0] >= 9.0  # 500 messages at 50/s take at least 9 s


def test_segment_rate_counts_segments() -> None:
    clock = FakeClock(in_window())
    limiter = RateLimiter(10, clock)
    for _ in range(5):
        limiter.acquire(4)  # a 4-segment message
    # 10 segments per second: two 4-segment messages fit per second
    assert clock.monotonic() >= 2.0


def test_suppression_is_checked_again_just_before_sending(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=4)
    phones = numbers(4)
    clock = FakeClock(in_window())
    run_id = seed_run(db, spec, clock.now())
    from outreach.ledger import suppression

    with db.engine.begin() as conn:
        suppression.add(conn, [phones[2]], reason="citizen-request", source="hotline")
    mock = MockGateway()
    from outreach.sending.engine import send_run

    send_run(db, spec, run_id, {"sms": mock}, clock=clock)
    assert phones[2] not in mock.sent_to()
    assert statuses(db)[phones[2]] == "opted_out"


def test_unknown_deliveries_need_an_explicit_operator_decision(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=2)
    phones = numbers(2)
    mock = MockGateway(script={phones[0]: ["lost"]})
    ops.launch(db, spec, gateways={"sms": mock}, clock=FakeClock(in_window()))
    with db.engine.connect() as conn:
        did = conn.execute(select(Delivery.id).where(Delivery.address == phones[0])).scalar_one()
    from outreach.sending.reconcile import resolve_unknown

    with db.engine.begin() as conn:
        assert resolve_unknown(conn, [did], action="sent", now=in_window()) == {did: True}
    assert statuses(db)[phones[0]] == "sent"


def test_several_changes_for_one_delivery_in_one_call_apply_in_order(tmp_path: Path) -> None:
    spec, db = setup(tmp_path, n=1)
    mock = MockGateway(script={numbers(1)[0]: ["lost"]})
    ops.launch(db, spec, gateways={"sms": mock}, clock=FakeClock(in_window()))
    with db.engine.connect() as conn:
        did = conn.execute(select(Delivery.id)).scalar_one()
    with db.engine.begin() as conn:
        res = states.apply(conn, [states.Change(did, "sent"), states.Change(did, "delivered"),
                                  states.Change(did, "sent")], source="webhook", now=in_window())
    assert res == {did: True}
    assert statuses(db) == {numbers(1)[0]: "delivered"}
    evs = [(e["old_status"], e["new_status"], e["applied"]) for e in events(db)
           if e["source"] == "webhook"]
    assert evs == [("unknown", "sent", True), ("sent", "delivered", True),
                   ("delivered", "sent", False)]


def test_a_receipt_that_overtook_the_dispatcher_keeps_the_provider_id(tmp_path: Path) -> None:
    """delivered arrives (by delivery id) before the dispatcher records `sent` with the SID."""
    spec, db = setup(tmp_path, n=1)
    phone = numbers(1)[0]
    from outreach.receipts import writer as receipts
    from outreach.gateways.base import StatusUpdate

    class Overtaken(MockGateway):
        def send(self, message: gw.OutboundMessage) -> gw.SendResult:
            r = super().send(message)
            with db.engine.begin() as conn:
                receipts.apply_updates(conn, [StatusUpdate(status="delivered",
                                                           delivery_id=message.delivery_id)],
                                       gateway="mock", source="webhook", now=in_window())
            return r

    ops.launch(db, spec, gateways={"sms": Overtaken()}, clock=FakeClock(in_window()))
    assert statuses(db) == {phone: "delivered"}
    with db.engine.connect() as conn:
        sid = conn.execute(select(Delivery.provider_message_id)).scalar_one()
    assert sid == "MOCK00000001"


def _events_by_batch(tmp_path: Path, *, confirm: bool, latency: float):  # type: ignore[no-untyped-def]
    """Send 50 messages in batches of 10 through the mock, one at a time (``latency`` seconds
    each); the dispatcher's ``sending`` and
    ``sent`` event ids (commit order) by delivery, and the batches' delivery ids."""
    from outreach.ledger.models import DeliveryEvent
    from outreach.sending.engine import send_run

    tmp_path.mkdir()
    spec, db = setup(tmp_path, n=50)
    clock = FakeClock(in_window())
    run_id = seed_run(db, spec, clock.now())
    mock = MockGateway(confirm=confirm, latency=latency)
    rep = send_run(db, spec, run_id, {"sms": mock}, clock=clock, batch_size=10, concurrency=1)
    assert rep.counts == {"sent": 50} and len(mock.outbox) == 50
    with db.engine.connect() as conn:
        rows = conn.execute(select(DeliveryEvent.id, DeliveryEvent.delivery_id,
                                   DeliveryEvent.new_status)
                            .where(DeliveryEvent.source == "dispatcher")
                            .order_by(DeliveryEvent.id)).all()
    claimed = {d: i for i, d, new in rows if new == "sending"}
    sent = {d: i for i, d, new in rows if new == "sent"}
    ids = sorted(claimed)
    assert len(ids) == 50 and sorted(sent) == ids
    return claimed, sent, [ids[k:k + 10] for k in range(0, 50, 10)]


def test_a_batchs_outcomes_wait_for_the_next_claim_only_where_a_crash_costs_a_lookup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway that confirms what it never received (mock, outbox): batch k's outcomes are
    committed after batch k+1 is claimed (on SQLite the claim never waits behind them, and they
    are written while the next batch is sent), even where a group of 5 would have been written
    at once. A gateway that cannot be asked: each group is committed while its batch is still
    being sent (an outcome held back would be a message sent and not recorded, unknown after a
    crash)."""
    from outreach.sending.outcomes import LedgerWriter

    monkeypatch.setattr(LedgerWriter, "MAX_GROUP", 5)
    monkeypatch.setattr(LedgerWriter, "HOLD_SECONDS", 30.0)
    for confirm in (True, False):
        claimed, sent, batches = _events_by_batch(tmp_path / f"confirm-{confirm}",
                                                  confirm=confirm, latency=0.03)
        for this, following in zip(batches, batches[1:]):
            if confirm:
                assert min(sent[d] for d in this) > max(claimed[d] for d in following)
            else:
                assert min(sent[d] for d in this) < min(claimed[d] for d in following)


def test_outcomes_are_held_for_half_a_second_at_most(tmp_path: Path) -> None:
    """A slow batch (10 messages 80 ms apart) of a gateway that confirms: its first outcomes
    are committed before it ends (LedgerWriter.HOLD_SECONDS), so the progress keeps moving
    with what was recorded."""
    claimed, sent, batches = _events_by_batch(tmp_path / "slow", confirm=True, latency=0.08)
    for this, following in zip(batches, batches[1:]):
        assert min(sent[d] for d in this) < min(claimed[d] for d in following)


def test_a_batch_of_healthy_sends_is_noted_as_each_one_would_be() -> None:
    """``_Health.note_healthy(n)`` leaves the window and its failure count as ``n`` calls of
    ``note(True)`` do, whatever the window held (the outbox notes a whole batch at once)."""
    import random

    from outreach.sending.sender import _Health

    rnd = random.Random(7)
    for _ in range(300):
        window = rnd.choice([1, 5, 20, 200])
        one, bulk = _Health(window), _Health(window)
        for ok in [rnd.random() < 0.6 for _ in range(rnd.randrange(0, 3 * window))]:
            one.note(ok)
            bulk.note(ok)
        n = rnd.choice([0, 1, 3, window - 1, window, 2 * window + 1])
        for _ in range(n):
            one.note(True)
        bulk.note_healthy(n)
        assert list(bulk._recent) == list(one._recent)
        assert bulk._bad == one._bad == sum(1 for ok in one._recent if not ok)


def test_the_clis_mock_takes_a_batch_at_once_and_records_what_one_by_one_would(
        tmp_path: Path) -> None:
    """The mock the CLI builds (counts only, nothing simulated per message) is a batched
    gateway: the sender hands it each claimed batch in one ``send_many``, which counts and
    records (``record``) exactly what ``send`` of each would; a mock with a script, a latency or
    kept messages is sent one by one."""
    from outreach.gateways import build_gateways

    assert not MockGateway().batched
    assert not MockGateway(keep=False, latency=0.01).batched
    assert not MockGateway(keep=False, script={"+84965500001": ["invalid"]}).batched
    spec, db = setup(tmp_path, n=7)
    record = tmp_path / "mock.jsonl"
    mock = build_gateways({"sms": "mock"}, db, mock={"record": str(record)})["sms"]
    assert mock.batched
    calls: list[int] = []
    real = mock.send_many

    def counted(messages: list) -> list:
        calls.append(len(messages))
        return real(messages)

    mock.send_many = counted  # type: ignore[method-assign]
    clock = FakeClock(in_window())
    res = ops.launch(db, spec, gateways={"sms": mock}, clock=clock)
    assert res.report is not None and res.report.stopped is None
    assert calls == [7] and mock.requests == mock.accepted == 7
    lines = [json.loads(x) for x in record.read_text().splitlines()]
    assert sorted(x["to"] for x in lines) == sorted(numbers(7))
    with db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.id, Delivery.status, Delivery.provider_message_id)
                            ).all()
    assert {r.status for r in rows} == {"sent"}
    assert {r.provider_message_id for r in rows} == {x["message_id"] for x in lines}
    # what it says it received, reconciliation finds
    other = MockGateway(keep=False, record=str(record))
    msg = outbound.message(spec, {"id": rows[0].id, "channel": "sms", "address": numbers(7)[0],
                                  "body": None, "segments": 1})
    found = other.lookup(msg, clock.now(), clock.now())
    assert found and found.provider_message_id == {x["delivery_id"]: x["message_id"]
                                                   for x in lines}[rows[0].id]


def test_a_batch_for_a_phone_gateway_is_not_sent_once_the_window_has_closed(
        tmp_path: Path) -> None:
    """A batched gateway that reaches phones keeps the send window: the window checked just
    before the batch's one request; closed by then, the batch goes back to the queue, the run
    waits, and the next window sends it."""
    from outreach.gateways import build_gateways

    spec, db = setup(tmp_path, n=6)
    clock = FakeClock(dt.datetime(2024, 7, 30, 21, 59, 59, tzinfo=VN_TZ))
    mock = build_gateways({"sms": "mock"}, db)["sms"]
    assert mock.batched and mock.reaches_phones

    class Late:
        """The rate limiter's hold: a second passes while the batch waits (as a provider's
        Retry-After would make it), so the window closes before the request."""

        rate = 0

        def acquire(self, units: float) -> None:
            clock.advance(2.0)

        def block_until(self, t: float) -> None:
            pass

    from outreach.sending import engine as engine_mod

    eng = engine_mod.RunEngine(db, spec, seed_run(db, spec, clock.now()), {"sms": mock},
                               clock=clock, limiters={"sms": Late()})
    with eng:
        eng.start()
        step = eng.step()
        assert step.outcomes == Counter({"not_sent": 6})
        step = eng.step()
        assert step.stopped == "window"
    assert mock.requests == 0
    assert Counter(statuses(db).values()) == {"queued": 6}
    clock.set(dt.datetime(2024, 7, 31, 7, 0, 1, tzinfo=VN_TZ))
    ops.resume(db, spec, gateways={"sms": mock}, clock=clock)
    assert mock.requests == 6 and Counter(statuses(db).values()) == {"sent": 6}

"""The dispatcher's hot path: recording accepted sends set-based, in a writer thread, and the
suppression check on the head of the queue. Same rules and rows as the general path."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from outreach.ledger import states, suppression
from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.sending.engine import send_run
from outreach.gateways.mock import MockGateway
from outreach.ledger.models import Delivery, DeliveryEvent, Run, Suppression
from tests.helpers import fresh_db, in_window, load, numbers, seed_run, statuses, write_campaign

T0 = in_window()


def ledger(tmp_path: Path, n: int = 8) -> tuple[Database, list[int]]:
    """n deliveries claimed (``sending``) at T0; returns the database and their ids."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = load(write_campaign(tmp_path, n=n))
    db = fresh_db(tmp_path)
    run_id = seed_run(db, spec, T0)
    with db.engine.begin() as conn:
        rows = states.claim(conn, run_id, limit=n, owner="test:1:x",
                            lease_expires=T0 + dt.timedelta(minutes=5), now=T0)
    return db, [r["id"] for r in rows]


def snapshot(db: Database) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Every delivery row (all columns but the random receipt token, which is only checked to
    be there) and every event but its id."""
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(Delivery.__table__)
                                                       .order_by(Delivery.id))]
        for r in rows:
            assert r.pop("receipt_token") is not None
        evs = [tuple(r) for r in conn.execute(
            select(DeliveryEvent.delivery_id, DeliveryEvent.at, DeliveryEvent.source,
                   DeliveryEvent.old_status, DeliveryEvent.new_status, DeliveryEvent.applied,
                   DeliveryEvent.provider_status, DeliveryEvent.error_code, DeliveryEvent.detail)
            .order_by(DeliveryEvent.id))]
    return rows, evs


def outcomes(ids: list[int]) -> list[states.Accepted]:
    """A mix: plain sent, sent without segments/price/status (old values kept), and delivered
    at once (as some providers answer)."""
    out: list[states.Accepted] = []
    for k, i in enumerate(ids):
        if k % 3 == 0:
            out.append((i, states.SENT, f"SM{i:032d}", "queued", 4, 3200.0))
        elif k % 3 == 1:
            out.append((i, states.SENT, f"SM{i:032d}", None, None, None))
        else:
            out.append((i, states.DELIVERED, f"SM{i:032d}", "delivered", 2, 1600.0))
    return out


def record(db: Database, accepted: list[states.Accepted], how: str,
           monkeypatch: pytest.MonkeyPatch) -> dict[int, bool]:
    at = T0 + dt.timedelta(seconds=2)
    with db.engine.begin() as conn:
        if how == "apply":  # the general path, as the reference
            changes = [states.Change(i, new, {k: v for k, v in
                                              {"provider_message_id": sid,
                                               "provider_status": ps, "segments": seg,
                                               "cost_vnd": cost}.items() if v is not None})
                       for i, new, sid, ps, seg, cost in accepted]
            return states.apply(conn, changes, source="dispatcher", now=at)
        monkeypatch.setattr(states, "SQLITE_SET_BASED", how == "set-based")
        return states.record_accepted(conn, accepted, source="dispatcher", now=at)


def overtake(db: Database, delivery_id: int) -> None:
    """A receipt got there first: the delivery is already delivered."""
    with db.engine.begin() as conn:
        states.apply(conn, [states.Change(delivery_id, states.DELIVERED,
                                          {"provider_message_id": "SM-receipt"})],
                     source="webhook", now=T0 + dt.timedelta(seconds=1))


@pytest.mark.parametrize("race", [False, True], ids=["all-sending", "receipt-first"])
def test_record_accepted_writes_what_apply_writes(tmp_path: Path, race: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    results = {}
    for how in ("apply", "rows", "set-based"):
        db, ids = ledger(tmp_path / how)
        if race:
            overtake(db, ids[4])
        results[how] = (record(db, outcomes(ids), how, monkeypatch), snapshot(db))
        db.dispose()
    applied, (rows, evs) = results["apply"]
    assert applied == {i: not (race and k == 4) for k, i in enumerate(ids)}
    by_id = {r["id"]: r for r in rows}
    first, second, third = ids[0], ids[1], ids[2]
    assert (by_id[first]["status"], by_id[first]["provider_message_id"],
            by_id[first]["provider_status"], by_id[first]["cost_vnd"]) == (
        "sent", f"SM{first:032d}", "queued", 3200.0)
    assert by_id[first]["sent_at"] is not None and by_id[first]["final_at"] is None
    # no segments/price from the provider: the counted segments and price stay
    assert (by_id[first]["segments"], by_id[second]["segments"]) == (4, 1)  # 1: counted at launch
    assert by_id[second]["cost_vnd"] == 800.0 and by_id[second]["provider_status"] is None
    assert by_id[third]["status"] == "delivered" and by_id[third]["lease_owner"] is None
    assert by_id[third]["delivered_at"] == by_id[third]["final_at"] is not None
    if race:
        assert by_id[ids[4]]["provider_message_id"] == "SM-receipt"
        assert ("sending", "delivered") in {(e[3], e[4]) for e in evs if e[0] == ids[4]}
        assert (ids[4], "delivered", "sent", False) in {(e[0], e[3], e[4], e[5]) for e in evs}
    for how in ("rows", "set-based"):
        assert results[how][0] == applied, how
        assert results[how][1][0] == rows, how  # every column of every delivery
        assert sorted(results[how][1][1], key=repr) == sorted(evs, key=repr), how


@pytest.mark.postgres
@pytest.mark.parametrize("race", [False, True], ids=["all-sending", "receipt-first"])
def test_record_accepted_on_postgres_writes_what_apply_writes(tmp_path: Path, race: bool,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """PostgreSQL's set-based writes (``unnest`` arrays, one UPDATE per state pair) give the
    same rows and events as the general path, also when a receipt got to one row first."""
    from tests.pg import temp_schema

    results = {}
    for how in ("apply", "pg"):
        with temp_schema("outreach_record") as url:
            db = Database(url)
            db.upgrade()
            (tmp_path / how).mkdir()
            spec = load(write_campaign(tmp_path / how, n=8))
            run_id = seed_run(db, spec, T0)
            with db.engine.begin() as conn:
                ids = [r["id"] for r in states.claim(
                    conn, run_id, limit=8, owner="test:1:x",
                    lease_expires=T0 + dt.timedelta(minutes=5), now=T0)]
            if race:
                overtake(db, ids[4])
            results[how] = (record(db, outcomes(ids), how, monkeypatch), snapshot(db), ids)
            db.dispose()
    (applied, (rows, evs), ids), (got, (pg_rows, pg_evs), pg_ids) = results["apply"], results["pg"]
    assert ids == pg_ids and applied == got == {i: not (race and k == 4) for k, i in enumerate(ids)}
    assert [r["status"] for r in pg_rows] == [
        "delivered" if k % 3 == 2 or (race and k == 4) else "sent" for k in range(8)]
    assert pg_rows == rows  # every column of every delivery
    assert sorted(pg_evs, key=repr) == sorted(evs, key=repr)
    assert sum(1 for e in pg_evs if e[2] == "dispatcher" and e[4] in ("sent", "delivered")) == 8


@pytest.mark.parametrize("how", ["rows", "set-based"])
def test_record_accepted_refuses_an_unknown_delivery_and_writes_nothing(
        tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db, ids = ledger(tmp_path, n=3)
    before = snapshot(db)
    with pytest.raises(KeyError, match="delivery 999999 does not exist"):
        record(db, outcomes(ids) + [(999999, states.SENT, "SMx", None, None, None)], how,
               monkeypatch)
    assert snapshot(db) == before  # the transaction rolled back


def test_a_failed_write_of_outcomes_leaves_the_batch_to_reconciliation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer fails to write outcomes: the run stops with the error, nothing sent is lost
    or resent; resuming reconciles what was started and requeues what was not."""
    from outreach.sending.outcomes import RecordFailed

    spec = load(write_campaign(tmp_path, n=12))
    db = fresh_db(tmp_path)
    run_id = seed_run(db, spec, T0)
    mock = MockGateway()
    real = states.record_accepted
    calls = {"n": 0}

    def flaky(*a: Any, **kw: Any) -> dict[int, bool]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("disk full")
        return real(*a, **kw)

    monkeypatch.setattr(states, "record_accepted", flaky)
    with pytest.raises(RecordFailed, match="disk full"):
        send_run(db, spec, run_id, {"sms": mock}, clock=FakeClock(T0), batch_size=4)
    monkeypatch.setattr(states, "record_accepted", real)
    after_crash = statuses(db)
    sent_now = sum(1 for v in after_crash.values() if v == "sent")
    reached = len(mock.outbox)
    assert sent_now == 0 and set(after_crash.values()) <= {"sending", "queued"}
    # whatever reached the mock is sent or still sending, never queued to go again
    with db.engine.connect() as conn:
        addr = dict(conn.execute(select(Delivery.address, Delivery.status)).all())
    assert all(addr[n] in ("sent", "sending") for n in mock.sent_to())
    later = FakeClock(T0 + dt.timedelta(minutes=10))  # past the lease of the failed dispatcher
    rep = send_run(db, spec, run_id, {"sms": mock}, clock=later, batch_size=4)
    stuck = sum(1 for v in after_crash.values() if v == "sending")
    assert rep.reconciled["orphaned"] == stuck
    assert rep.reconciled["found"] == reached - sent_now  # sent, but the write failed
    assert rep.reconciled["requeued"] == stuck - (reached - sent_now)  # never started
    assert set(statuses(db).values()) == {"sent"}
    assert sorted(mock.sent_to()) == sorted(numbers(12))  # each number exactly once


def test_a_number_suppressed_deep_in_the_queue_is_opted_out_when_it_reaches_the_head(
        tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=30))
    db = fresh_db(tmp_path)
    run_id = seed_run(db, spec, T0)
    phones = numbers(30)
    with db.engine.begin() as conn:  # after the run was created: only the dispatcher can see it
        suppression.add(conn, [phones[27], phones[1]], reason="citizen-request", source="hotline")
    mock = MockGateway()
    send_run(db, spec, run_id, {"sms": mock}, clock=FakeClock(T0), batch_size=4)
    final = statuses(db)
    assert final[phones[27]] == final[phones[1]] == "opted_out"
    assert sorted(mock.sent_to()) == sorted(set(phones) - {phones[27], phones[1]})
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one() == "completed"


def one_at_a_time(tmp_path: Path, n: int) -> tuple[Any, Database, int]:
    """A launched run of n recipients whose channel sends one request at a time (so the
    order of sends, and what a test gateway does on the k-th, is fixed)."""
    spec = load(write_campaign(tmp_path, n=n))
    spec = dataclasses.replace(spec, channels=(dataclasses.replace(spec.channels[0],
                                                                   concurrency=1),))
    db = fresh_db(tmp_path)
    return spec, db, seed_run(db, spec, T0)


class Broken(MockGateway):
    """An adapter with a defect: the third request raises something no adapter should."""

    def send(self, message):  # type: ignore[no-untyped-def]
        if self.requests == 2:
            self.requests += 1
            raise RuntimeError("adapter bug")
        return super().send(message)


def test_an_unexpected_exception_in_an_adapter_is_unknown_and_pauses_the_run(
        tmp_path: Path) -> None:
    spec, db, run_id = one_at_a_time(tmp_path, 8)
    mock = Broken()
    rep = send_run(db, spec, run_id, {"sms": mock}, clock=FakeClock(T0), batch_size=8)
    assert rep.stopped == "gateway" and "RuntimeError in the gateway adapter" in (rep.reason or "")
    phones = numbers(8)
    final = statuses(db)
    assert [final[p] for p in phones] == ["sent", "sent", "unknown"] + ["queued"] * 5
    assert mock.requests == 3  # nothing more after the defect
    with db.engine.connect() as conn:
        assert conn.execute(select(Delivery.error_reason).where(
            Delivery.address == phones[2])).scalar_one() == "adapter-error"
        assert conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one() == "paused"


def test_a_number_opted_out_in_this_run_is_not_sent_again_in_the_same_batch(
        tmp_path: Path) -> None:
    """Two deliveries of one run to the same number (as two channels by phone would give): the
    provider's opt-out on the first stops the second before the suppression list is written."""
    from sqlalchemy import insert

    spec = load(write_campaign(tmp_path, n=3))
    db = fresh_db(tmp_path)
    run_id = seed_run(db, spec, T0)
    phones = numbers(3)
    with db.engine.begin() as conn:
        first = dict(conn.execute(select(Delivery.__table__).where(
            Delivery.address == phones[0])).one()._mapping)
        conn.execute(insert(Delivery), [{**{k: v for k, v in first.items() if k != "id"},
                                         "dedupe_key": "resend:test"}])
    mock = MockGateway(script={phones[0]: ["opted_out"]})
    send_run(db, spec, run_id, {"sms": mock}, clock=FakeClock(T0), batch_size=10)
    assert mock.requests == 3  # phones[0] once, phones[1], phones[2]
    with db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.status).where(Delivery.address == phones[0])).all()
        suppressed = conn.execute(select(Suppression.e164)).scalars().all()
    assert [r.status for r in rows] == ["opted_out", "opted_out"]
    assert suppressed == [phones[0]]


def test_a_run_cancelled_while_its_batch_is_out_stays_cancelled_with_nothing_queued(
        tmp_path: Path) -> None:
    from outreach.sending import ops
    from outreach.gateways import base as gw

    spec, db, run_id = one_at_a_time(tmp_path, 6)

    class CancelledMeanwhile(MockGateway):
        def send(self, message: gw.OutboundMessage) -> gw.SendResult:
            if self.requests == 1:  # the operator cancels, then the provider refuses the key
                ops.set_run_state(db, spec.id, "cancel", operator="lan.tran", now=T0)
                self.requests += 1
                raise gw.AuthenticationError("authenticate", provider_code="20003")
            return super().send(message)

    rep = send_run(db, spec, run_id, {"sms": CancelledMeanwhile()}, clock=FakeClock(T0),
                     batch_size=6)
    assert rep.stopped == "gateway"
    final = statuses(db)
    assert sorted(final.values()) == ["sent"] + ["skipped"] * 5
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one() == "cancelled"
        reasons = set(conn.execute(select(Delivery.error_reason).where(
            Delivery.status == "skipped")).scalars())
    assert reasons == {"cancelled"}


def test_dispatchers_side_by_side_restore_the_switch_interval(tmp_path: Path) -> None:
    import sys
    import threading

    before = sys.getswitchinterval()
    spec = load(write_campaign(tmp_path, n=40))
    db = fresh_db(tmp_path)
    run_id = seed_run(db, spec, T0)
    seen: list[float] = []
    go = threading.Event()

    class Slow(MockGateway):
        def send(self, message):  # type: ignore[no-untyped-def]
            seen.append(sys.getswitchinterval())
            go.wait(5)
            return super().send(message)

    a = threading.Thread(target=lambda: send_run(db, spec, run_id, {"sms": Slow()},
                                                 clock=FakeClock(T0), batch_size=5))
    a.start()
    while not seen:
        threading.Event().wait(0.01)
    from outreach.sending.engine import _fast_switching

    _fast_switching(True)  # a second dispatcher starts while the first runs
    go.set()
    a.join(30)
    assert sys.getswitchinterval() == min(before, 0.001)  # the second still runs
    _fast_switching(False)
    assert seen[0] == min(before, 0.001)
    assert sys.getswitchinterval() == before

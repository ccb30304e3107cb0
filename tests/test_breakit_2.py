"""Faults found by trying to break the dispatcher's fast path, its writer thread and the
worker: each test states the right behaviour."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from outreach.sending import worker as worker_mod
from outreach.clock import VN_TZ, FakeClock
from outreach.sending.engine import send_run
from outreach.gateways import base as gw
from outreach.gateways.mock import MockGateway
from outreach.ledger.models import Delivery, DeliveryEvent, Run
from tests.helpers import fresh_db, in_window, load, numbers, seed_run, statuses, write_campaign


def test_a_worker_sends_again_when_the_window_reopens_after_closing_mid_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The send window closes while a worker's batch is under way: the rest of the batch goes
    back to the queue and the run waits. When the window opens again the worker must send the
    rest, not hand every claimed row straight back to the queue forever (the dispatcher's
    "window shut" flag was never cleared in the worker, only in the launch loop)."""
    monkeypatch.setattr(worker_mod, "RECHECK_SECONDS", 0.0)
    spec = load(write_campaign(tmp_path, n=10))
    db = fresh_db(tmp_path)
    # 21:59:58 in Vietnam: two seconds of window left, one second per send
    clock = FakeClock(dt.datetime(2024, 7, 30, 21, 59, 58, tzinfo=VN_TZ))
    run_id = seed_run(db, spec, clock.now())

    class Provider(MockGateway):
        reaches_phones = True  # the window applies

        def send(self, message: gw.OutboundMessage) -> gw.SendResult:
            result = super().send(message)
            clock.advance(1.0)
            return result

    mock = Provider()
    w = worker_mod.Worker(db, make_gateways=lambda names: {"sms": mock}, batch_size=10,
                          concurrency=1, clock=clock, idle_seconds=0.01)
    w.step()
    assert Counter(statuses(db).values()) == {"sent": 2, "queued": 8}
    w.step()  # the window is closed: the run waits
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one() == "waiting"
    clock.set(dt.datetime(2024, 7, 31, 7, 0, 1, tzinfo=VN_TZ))
    for _ in range(3):
        w.step()
    assert Counter(statuses(db).values()) == {"sent": 10}
    assert sorted(mock.sent_to()) == sorted(numbers(10))


def test_a_long_write_lock_held_by_another_process_between_batches_is_waited_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds SQLite's write lock for longer than the busy timeout just as a
    batch ends. The claim and the record wait (retry_write), so must the check between
    batches: the operator must not get "database is locked", and everyone is sent once."""
    monkeypatch.setattr("outreach.ledger.db.SQLITE_BUSY_TIMEOUT_MS", 100)
    spec = load(write_campaign(tmp_path, n=10))
    spec = dataclasses.replace(spec, channels=(dataclasses.replace(spec.channels[0],
                                                                    concurrency=1),))
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    run_id = seed_run(db, spec, clock.now())
    released = threading.Event()

    class LockedDuringSend(MockGateway):
        def send(self, message: gw.OutboundMessage) -> gw.SendResult:
            result = super().send(message)
            if len(self.outbox) == 5:  # the last message of the first batch
                other = sqlite3.connect(str(tmp_path / "t.db"), isolation_level=None,
                                        check_same_thread=False)
                other.execute("BEGIN IMMEDIATE")

                def release() -> None:
                    other.execute("COMMIT")
                    other.close()
                    released.set()

                threading.Timer(1.0, release).start()
            return result

    mock = LockedDuringSend()
    rep = send_run(db, spec, run_id, {"sms": mock}, clock=clock, batch_size=5)
    assert released.is_set()
    assert rep.stopped is None
    assert rep.counts == {"sent": 10}
    assert sorted(mock.sent_to()) == sorted(numbers(10))
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one() == "completed"
        sent_events = conn.execute(select(func.count()).select_from(DeliveryEvent).where(
            DeliveryEvent.new_status == "sent", DeliveryEvent.applied.is_(True))).scalar_one()
    assert sent_events == 10
    assert Delivery is not None


def test_a_launch_never_sends_more_than_the_daily_cap_in_one_day(tmp_path: Path) -> None:
    """A campaign with ``daily_cap = 3`` launched by hand with ten recipients: three go out
    today, the run waits for tomorrow, the rest go then (the cap was only checked between
    batches, so the first batch of up to 500 went out whole)."""
    from outreach.sending import ops

    spec = load(write_campaign(tmp_path, n=10,
                               schedule='[schedule]\nsend_time = "08:00"\ndaily_cap = 3\n'))
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    mock = MockGateway()
    rep = ops.launch(db, spec, gateways={"sms": mock}, clock=clock).report
    assert rep is not None and rep.stopped == "daily-cap"
    assert len(mock.outbox) == 3
    assert rep.counts == {"sent": 3, "queued": 7}
    clock.set(dt.datetime(2024, 7, 31, 9, 0, tzinfo=VN_TZ))
    ops.resume(db, spec, gateways={"sms": mock}, clock=clock)
    assert len(mock.outbox) == 6
    assert len(set(mock.sent_to())) == 6

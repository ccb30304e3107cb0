"""Never twice, never stranded (issue #15): starts committed before requests leave, lookups that
wait for the provider's listing horizon, unknown Zalo outcomes that do not fall back, resume as
the one command, Ctrl-C during the import."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from outreach.ledger import states
from outreach.sending import ops, reconcile
from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.sending.engine import RunEngine, SendSettings
from outreach.gateways import base as gw
from outreach.gateways.mock import MockGateway
from outreach.sending.leases import Lease
from outreach.ledger.models import Delivery, Run
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.pg import pg_db, pg_url  # noqa: F401
from tests.helpers import (approve, fresh_db, in_window, load, numbers, seed_run, statuses,
                           write_campaign)

T0 = in_window()
GHOST = "ghost-host:1:dead"


class SlowListing(MockGateway):
    """A provider that may take ``horizon`` seconds to list a message it is creating."""

    can_confirm = True

    def __init__(self, horizon: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.horizon = horizon
        self.lookups = 0

    @property
    def lookup_horizon_seconds(self) -> float:
        return self.horizon

    def lookup(self, message: gw.OutboundMessage, since: dt.datetime,
               until: dt.datetime) -> gw.StatusUpdate | bool | None:
        self.lookups += 1
        return super().lookup(message, since, until)


def orphan(db: Database, spec: Any, run_id: int, clock: FakeClock, n: int,
           started: int) -> list[int]:
    """A dead process claimed ``n`` rows and committed the start of the first ``started``
    (through a gateway that cannot be asked: one that can has its batches claimed started)."""
    eng = RunEngine(db, spec, run_id, {"sms": MockGateway(confirm=False)}, clock=clock,
                    settings=SendSettings(batch_size=n), lease=Lease(db, GHOST, clock=clock))
    batch = eng.claim()
    ids = [r["id"] for r in batch]
    with db.engine.begin() as conn:
        states.mark_started(conn, ids[:started], owner=GHOST, now=clock.now())
        conn.execute(Delivery.__table__.update().where(Delivery.id.in_(ids))
                     .values(lease_expires_at=clock.now() - dt.timedelta(seconds=1)))
    return ids


def test_rows_claimed_but_never_started_go_back_to_the_queue_without_asking(
        tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=10))
    db = fresh_db(tmp_path)
    clock = FakeClock(T0)
    run_id = seed_run(db, spec, T0)
    orphan(db, spec, run_id, clock, n=10, started=3)
    g = SlowListing(horizon=0.0)
    got = reconcile.recover(db, spec, run_id, {"sms": g}, clock=clock)
    assert got == {"orphaned": 10, "found": 0, "requeued": 10, "still_unknown": 0,
                   "deferred": 0}
    assert g.lookups == 3  # only the started ones were looked up
    assert set(statuses(db).values()) == {"queued"}


def test_not_listed_yet_is_not_never_received(tmp_path: Path) -> None:
    """A provider that takes its time to create a message: a lookup that does not find it
    before the horizon defers the row; after the horizon it is requeued."""
    spec = load(write_campaign(tmp_path, n=4))
    db = fresh_db(tmp_path)
    clock = FakeClock(T0)
    run_id = seed_run(db, spec, T0)
    ids = orphan(db, spec, run_id, clock, n=4, started=4)
    g = SlowListing(horizon=30.0)
    clock.advance(10)
    first = reconcile.recover(db, spec, run_id, {"sms": g}, clock=clock)
    assert first == {"orphaned": 4, "found": 0, "requeued": 0, "still_unknown": 0, "deferred": 4}
    assert first.decide_after == T0 + dt.timedelta(seconds=30)
    assert set(statuses(db).values()) == {"unknown"}
    # the provider lists one of them after all (it was still being created)
    with db.engine.connect() as conn:
        row = conn.execute(select(Delivery.__table__).where(Delivery.id == ids[0])).one()
    g.send(gw.OutboundMessage(delivery_id=ids[0], campaign_id=spec.id, channel="sms",
                              to=row.address, body=spec.text))
    clock.advance(21)
    later = reconcile.recover(db, spec, run_id, {"sms": g}, clock=clock)
    assert later == {"orphaned": 0, "found": 1, "requeued": 3, "still_unknown": 0, "deferred": 0}
    with db.engine.connect() as conn:
        found = conn.execute(select(Delivery.status, Delivery.error_reason)
                             .where(Delivery.id == ids[0])).one()
    assert tuple(found) == ("sent", None)  # "interrupted" no longer describes it


def test_lookups_run_side_by_side(tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=64))
    db = fresh_db(tmp_path)
    clock = FakeClock(T0)
    run_id = seed_run(db, spec, T0)
    orphan(db, spec, run_id, clock, n=64, started=64)
    inside, peak, lock = [0], [0], threading.Lock()

    class Slow(SlowListing):
        def lookup(self, message: Any, since: Any, until: Any) -> Any:
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1
            return False

    t = time.monotonic()
    got = reconcile.recover(db, spec, run_id, {"sms": Slow(horizon=0.0)}, clock=clock)
    assert got["requeued"] == 64
    assert peak[0] == reconcile.LOOKUP_THREADS
    assert time.monotonic() - t < 64 * 0.05  # not one after the other


def test_resume_reconciles_the_unknown_rows_of_a_completed_run(tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=6))
    db = fresh_db(tmp_path)
    mock = MockGateway(script={numbers(6)[0]: ["lost"], numbers(6)[1]: ["lost"]})
    clock = FakeClock(T0)
    res = ops.launch(db, spec, gateways={"sms": mock}, clock=clock)
    assert res.report is not None and res.report.counts == {"sent": 4, "unknown": 2}
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status)).scalar_one() == "completed"
    # the provider had recorded one of the two; the other never arrived (the mock forgets it)
    lost = next(m for m in mock.outbox if m.to == numbers(6)[1])
    mock.outbox.remove(lost)
    del mock._by_delivery[lost.delivery_id]
    rep = ops.resume(db, spec, gateways={"sms": mock}, clock=clock)
    assert rep.reconciled == {"orphaned": 0, "found": 1, "requeued": 1, "still_unknown": 0,
                              "deferred": 0}
    assert rep.counts == {"sent": 6}
    assert Counter(mock.sent_to()) == Counter(numbers(6))  # each exactly once now
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status)).scalar_one() == "completed"
        reasons = set(conn.execute(select(Delivery.error_reason)).scalars())
    assert reasons == {None}


def test_resend_failed_reaches_the_people_a_cancel_skipped(tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=5))
    db = fresh_db(tmp_path)
    stop_after = {"n": 0}

    class CancelAfterTwo(MockGateway):
        def send(self, message: gw.OutboundMessage) -> gw.SendResult:
            r = super().send(message)
            stop_after["n"] += 1
            if stop_after["n"] == 2:
                ops.set_run_state(db, spec.id, "cancel", operator="lan.tran", now=T0)
            return r

    first = CancelAfterTwo()
    run_id = seed_run(db, spec, T0)
    from outreach.sending.engine import send_run

    assert send_run(db, spec, run_id, {"sms": first}, clock=FakeClock(T0),
                    batch_size=1).stopped == "cancelled"
    skipped = sorted(a for a, s in statuses(db).items() if s == "skipped")
    assert skipped and len(first.outbox) + len(skipped) == 5
    second = MockGateway()
    ops.resend(db, spec, gateways={"sms": second}, clock=FakeClock(T0),
               statuses=(states.FAILED, states.UNDELIVERED, states.SKIPPED))
    assert sorted(second.sent_to()) == skipped
    assert Counter(first.sent_to() + second.sent_to()) == Counter(numbers(5))


def test_ctrl_c_while_the_lists_are_read_creates_no_run(tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=6))
    db = fresh_db(tmp_path)
    stop = threading.Event()
    stop.set()  # the operator pressed Ctrl-C while the lists were being imported
    with pytest.raises(KeyboardInterrupt):
        ops.launch(db, spec, gateways={"sms": MockGateway()}, clock=FakeClock(T0),
                   stop_event=stop)
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(Delivery)).scalar_one() == 0


# -- processes killed while requests are in flight ------------------------------------------------


def _cli(tmp: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "outreach.cli", *args, "--no-progress"],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow
def test_a_slow_creating_provider_and_kills_in_flight_send_nobody_twice(tmp_path: Path) -> None:
    """Twilio takes 8 s to create each message (longer than a resume takes to start and look
    up); the CLI is killed (SIGKILL) while requests are in flight and resumed at once, twice: "not listed yet" is not "never received", so
    the rows in flight wait for the listing horizon and nobody gets the message twice."""
    n, kills = 40, 2
    campaign = write_campaign(tmp_path, n=n, start="2024-07-01", end="2099-12-31",
                              daily_start="00:00", daily_end="23:59",
                              channels='[[channels]]\nchannel = "sms"\nsender = "TEST"\n'
                                       'gateway = "twilio"\nconcurrency = 40\n'
                                       'rate_per_second = 100\n')
    home = tmp_path / "home"
    home.mkdir()
    first = Database(f"sqlite:///{home / 'outreach.db'}")
    first.upgrade()
    approve(first, load(campaign))  # Twilio reaches phones: a second person's approval
    first.dispose()
    with FakeTwilio(create_delay=8.0) as server:
        env = dict(os.environ, OUTREACH_HOME=str(home),
                   TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                   TWILIO_FROM="TEST", OUTREACH_TWILIO_API_URL=server.base_url,
                   OUTREACH_TWILIO_TIMEOUT="10", OUTREACH_TWILIO_LISTING_MARGIN="5",
                   NO_PROXY="127.0.0.1,localhost")
        args: tuple[str, ...] = ("campaign", "launch", str(campaign), "--yes")
        for _ in range(kills):
            proc = _cli(tmp_path, env, *args)
            target = len(server.creates()) + 8  # requests are in flight
            deadline = time.monotonic() + 60
            while len(server.creates()) < target and time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            args = ("campaign", "resume", str(campaign))
        deferred_seen = False
        for _ in range(10):  # resume until done, waiting out the horizon when told to
            out, err = _cli(tmp_path, env, *args).communicate(timeout=120)
            assert "Traceback" not in err, err
            if "deferred" in out:
                deferred_seen = True
                time.sleep(15.2)
                continue
            db = Database(f"sqlite:///{home / 'outreach.db'}")
            if "no unfinished run" in err or set(statuses(db).values()) == {"sent"}:
                break
        time.sleep(8.5)  # let the fake finish creating what it was given
        created = Counter(m["to"] for m in server.messages)
    assert max(created.values()) == 1, "somebody got the message twice"
    assert set(created) == set(numbers(n)), "somebody was never sent"
    db = Database(f"sqlite:///{home / 'outreach.db'}")
    assert set(statuses(db).values()) == {"sent"}
    assert deferred_seen, "no kill landed while a message was still being created"


@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_worker_on_an_unverifiable_gateway_leaves_no_more_unknown_than_in_flight(
        pg_db: Database, pg_url: str, tmp_path: Path) -> None:
    """kill -9 of a worker sending through a gateway that cannot be asked (like Zalo): only
    the requests in flight become unknown; every other recipient is sent exactly once."""
    from tests.pg import seed_run as pg_seed_run
    from tests.test_workers import records, start_worker, wait_all

    n, concurrency = 400, 4
    _spec, run_id = pg_seed_run(pg_db, tmp_path, n)
    rec = tmp_path / "mock.jsonl"
    log = tmp_path / "victim.log"
    victim = start_worker(pg_url, rec, log, "--batch-size", "100", "--concurrency",
                          str(concurrency), "-o", "latency=0.02", "-o", "confirm=false")
    deadline = time.monotonic() + 60
    while len(records(rec)) < 150:
        assert victim.poll() is None, log.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    after = tmp_path / "after.log"
    rest = start_worker(pg_url, rec, after, "-o", "confirm=false")
    wait_all([rest], [after], timeout=120)
    assert rest.returncode == 0, after.read_text()[-3000:]
    with pg_db.engine.connect() as conn:
        final = dict(conn.execute(select(Delivery.id, Delivery.status)).all())
    unknown = {i for i, s in final.items() if s == "unknown"}
    assert 0 < len(unknown) <= concurrency, f"{len(unknown)} unknown"
    assert set(final.values()) == {"sent", "unknown"}
    by_id = Counter(r["delivery_id"] for r in records(rec))
    assert max(by_id.values()) == 1  # nobody twice
    assert {i for i, s in final.items() if s == "sent"} <= set(by_id)
    assert all(by_id[i] == 1 for i, s in final.items() if s == "sent")
    assert len(by_id) >= n - len(unknown)
    assert run_id

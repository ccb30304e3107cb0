"""Several `outreach worker` processes on one PostgreSQL database: exactly once, crashes, rate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from outreach.ledger import runstates, states
from outreach.sending import engine, leases, reconcile
from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.gateways.mock import MockGateway
from outreach.ledger.models import Delivery, DeliveryEvent, Run
from outreach.sending.ratelimit import SharedRateLimiter
from outreach.sending.leases import Lease
from outreach.sending.worker import EXIT_LEASE_LOST, Worker, spec_from_definition
from tests.helpers import load, numbers, write_campaign
from tests.pg import pg_db, pg_url, seed_run  # noqa: F401

# -- helpers ----------------------------------------------------------------------------------


def start_worker(url: str, record: Path, log: Path, *args: str,
                 node: str | None = None) -> subprocess.Popen[bytes]:
    """``outreach worker`` in its own process, through the file-backed mock gateway.

    ``node`` makes the process name itself as another machine in its lease owner (its
    hostname is replaced), so the others may take its rows only once its lease expired.
    """
    if node is None:
        cmd = [sys.executable, "-m", "outreach.cli"]
    else:
        cmd = [sys.executable, "-c", "import socket, sys; socket.gethostname = lambda: "
               f"{node!r}; from outreach.cli import main; sys.exit(main())"]
    cmd += ["--database-url", url, "worker", "--gateway", "mock", "-o", f"record={record}",
            "--exit-when-done", "--idle", "0.2", *args]
    with open(log, "wb") as err:
        return subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # a line still being written by a worker (no newline yet) is read next time
    return [json.loads(line) for line in path.read_text("utf-8").splitlines(keepends=True)
            if line.endswith("\n")]


def wait_all(procs: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p, log in zip(procs, logs):
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"worker did not finish in {timeout} s:\n{log.read_text()[-3000:]}")


def status_counts(db: Database, run_id: int) -> dict[str, int]:
    with db.engine.connect() as conn:
        return dict(conn.execute(select(Delivery.status, func.count()).where(
            Delivery.run_id == run_id).group_by(Delivery.status)).all())


def run_status(db: Database, run_id: int) -> str:
    with db.engine.connect() as conn:
        return conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one()


pg = pytest.mark.postgres


# -- several processes ------------------------------------------------------------------------


@pg
@pytest.mark.slow
def test_four_workers_send_20000_once_each_and_a_killed_one_is_recovered_after_its_lease(
        pg_db: Database, pg_url: str, tmp_path: Path) -> None:
    n, lease = 20_000, 3.0
    _spec, run_id = seed_run(pg_db, tmp_path, n)
    rec = tmp_path / "mock.jsonl"
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    # the victim is slow (20 ms a message, 2 in flight: a batch of 100 takes about a second),
    # so the kill lands in the middle of a batch; it names itself as another machine, so only
    # the expiry of its 3-second lease lets the others take its rows
    victim = start_worker(pg_url, rec, logs[0], "--lease", str(lease), "--batch-size", "100",
                          "--concurrency", "2", "-o", "latency=0.02", node="other-node")
    deadline = time.monotonic() + 60
    while sum(1 for r in records(rec) if r["pid"] == victim.pid) < 150:
        assert victim.poll() is None, logs[0].read_text()
        assert time.monotonic() < deadline, "the victim never got going"
        time.sleep(0.05)
    # the others start once the victim is going: started with it, the three fast ones could
    # empty the queue before the victim holds a batch to be killed in
    others = [start_worker(pg_url, rec, log, "--lease", str(lease)) for log in logs[1:]]

    def holding() -> int:
        with pg_db.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Delivery).where(
                Delivery.status == states.SENDING,
                Delivery.lease_owner.like("other-node%"))).scalar_one()

    # kill it while it holds a batch in flight (a random moment inside that batch): frozen
    # first, so that the batch cannot end between the look and the kill
    deadline = time.monotonic() + 20
    while True:
        assert time.monotonic() < deadline, "the victim never held a batch to be killed in"
        if holding():
            time.sleep(random.uniform(0.05, 0.3))
            victim.send_signal(signal.SIGSTOP)
            if holding():
                break
            victim.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    killed_at = dt.datetime.now(dt.timezone.utc)
    victim.wait()
    with pg_db.engine.connect() as conn:
        in_flight = conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.status == states.SENDING, Delivery.lease_owner.like("other-node%"))).scalar_one()
    wait_all(others, logs[1:], timeout=120)
    for p, log in zip(others, logs[1:]):
        assert p.returncode == 0, log.read_text()[-3000:]

    lines = records(rec)
    by_id = Counter(r["delivery_id"] for r in lines)
    by_number = Counter(r["to"] for r in lines)
    assert len(lines) == n
    assert max(by_id.values()) == 1 and max(by_number.values()) == 1
    assert set(by_number) == set(numbers(n))
    assert status_counts(pg_db, run_id) == {"sent": n}
    assert run_status(pg_db, run_id) == "completed"
    by_pid = Counter(r["pid"] for r in lines)
    assert all(by_pid[p.pid] > 0 for p in others), by_pid  # all four really shared the work
    assert 0 < by_pid[victim.pid] < n / 2

    # the victim's batch in flight was taken over, after its lease expired, not before
    assert in_flight > 0
    with pg_db.engine.connect() as conn:
        # rows whose request had started became unknown; claimed rows never started went
        # straight back to the queue (issue #15: the uncertainty is only what was in flight)
        orphaned = conn.execute(select(DeliveryEvent.delivery_id, DeliveryEvent.at).where(
            DeliveryEvent.source == "reconcile", DeliveryEvent.new_status == states.UNKNOWN,
            DeliveryEvent.applied.is_(True))).all()
        never_started = conn.execute(select(DeliveryEvent.delivery_id, DeliveryEvent.at).where(
            DeliveryEvent.source == "reconcile", DeliveryEvent.old_status == states.SENDING,
            DeliveryEvent.new_status == states.QUEUED, DeliveryEvent.applied.is_(True))).all()
        settled = dict(conn.execute(select(DeliveryEvent.new_status, func.count()).where(
            DeliveryEvent.source == "reconcile", DeliveryEvent.old_status == states.UNKNOWN,
            DeliveryEvent.applied.is_(True)).group_by(DeliveryEvent.new_status)).all())
    assert len(orphaned) + len(never_started) == in_flight
    assert min(at for _, at in orphaned + never_started) >= killed_at + dt.timedelta(seconds=2.0)
    # each started one was either found in the gateway's record (sent) or certainly never
    # sent (requeued, then sent once by another worker)
    assert settled.get("sent", 0) + settled.get("queued", 0) == len(orphaned)
    victim_sent = {r["delivery_id"] for r in lines if r["pid"] == victim.pid}
    assert settled.get("sent", 0) == len(victim_sent & {i for i, _ in orphaned})
    assert not victim_sent & {i for i, _ in never_started}  # never started: never sent by it


@pg
@pytest.mark.slow
def test_the_rate_limit_holds_for_four_workers_together(pg_db: Database, pg_url: str,
                                                        tmp_path: Path) -> None:
    n, limit = 1600, 200
    _spec, run_id = seed_run(pg_db, tmp_path, n, rate=limit, concurrency=8)
    rec = tmp_path / "mock.jsonl"
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    procs = [start_worker(pg_url, rec, log, "--batch-size", "50") for log in logs]
    wait_all(procs, logs, timeout=90)
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log.read_text()[-3000:]
    lines = records(rec)
    assert len(lines) == n and len({r["delivery_id"] for r in lines}) == n
    assert len({r["pid"] for r in lines}) == 4
    times = [r["t"] for r in lines]
    # in every sliding second at the provider, not only in whole clock seconds
    assert max_in_any_second(times) <= limit
    # the limit was what held them back, and they used most of it
    assert max(times) - min(times) >= (n - limit) / limit
    assert max_in_any_second(times) >= 0.85 * limit
    assert status_counts(pg_db, run_id) == {"sent": n}


@pg
@pytest.mark.slow
def test_sigterm_finishes_the_sends_in_flight_requeues_the_rest_and_exits_0(
        pg_db: Database, pg_url: str, tmp_path: Path) -> None:
    n = 300
    spec, run_id = seed_run(pg_db, tmp_path, n)
    rec, log = tmp_path / "mock.jsonl", tmp_path / "worker.log"
    proc = start_worker(pg_url, rec, log, "--batch-size", "100", "--concurrency", "1",
                        "-o", "latency=0.01")
    deadline = time.monotonic() + 60
    while len(records(rec)) < 20:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, log.read_text()
    assert "stopped" in log.read_text()
    sent = len(records(rec))
    assert 20 <= sent < n
    counts = status_counts(pg_db, run_id)
    assert counts == {"sent": sent, "queued": n - sent}  # nothing left `sending`
    assert run_status(pg_db, run_id) == "running"  # a worker leaving does not pause the run
    # another worker finishes the run: every recipient exactly once
    mock = MockGateway(record=rec)
    rep = Worker(pg_db, make_gateways=lambda names: {"sms": mock}, exit_when_done=True,
                 idle_seconds=0.05).run()
    assert rep.sent == n - sent and rep.completed_runs == [run_id]
    assert Counter(r["to"] for r in records(rec)) == Counter(numbers(n))


# -- one process, in detail -------------------------------------------------------------------


def _owned_rows(db: Database, run_id: int, owners: list[tuple[str, float]]) -> list[int]:
    """Mark one queued row per (owner, lease seconds from now) as `sending` for that owner."""
    now = dt.datetime.now(dt.timezone.utc)
    with db.engine.begin() as conn:
        ids = conn.execute(select(Delivery.id).where(Delivery.run_id == run_id)
                           .order_by(Delivery.id).limit(len(owners))).scalars().all()
        for i, (owner, lease) in zip(ids, owners):
            conn.execute(update(Delivery).where(Delivery.id == i).values(
                status=states.SENDING, lease_owner=owner, sending_at=now,
                lease_expires_at=now + dt.timedelta(seconds=lease)))
    return list(ids)


@pg
def test_recover_takes_only_rows_whose_owner_is_dead_or_whose_lease_expired(
        pg_db: Database, tmp_path: Path) -> None:
    spec, run_id = seed_run(pg_db, tmp_path, 6)
    here = leases.node_name()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ids = _owned_rows(pg_db, run_id, [
            ("far-away:4242:aaaa", -5),              # another machine, lease expired → taken
            ("far-away:4242:bbbb", 60),              # another machine, lease running → kept
            (f"{here}:{gone.pid}:cccc", 60),         # here, process gone → taken at once
            (f"{here}:{alive.pid}:dddd", -5),        # here, process alive → kept (it renews)
            (f"{here}:{os.getpid()}:eeee", -5),      # this very process, expired → taken
            (f"{here}:{os.getpid()}:ffff", 60),      # this very process, running → kept
        ])
        got = reconcile.recover(pg_db, spec, run_id, {"sms": MockGateway()})
    finally:
        alive.kill()
        alive.wait()
    assert got == {"orphaned": 3, "found": 0, "requeued": 3, "still_unknown": 0, "deferred": 0}
    with pg_db.engine.connect() as conn:
        st = dict(conn.execute(select(Delivery.id, Delivery.status)
                               .where(Delivery.id.in_(ids))).all())
    assert [st[i] for i in ids] == ["queued", "sending", "queued", "sending", "queued", "sending"]


@pg
def test_two_workers_recovering_at_once_never_requeue_a_row_someone_else_claimed(
        pg_db: Database, tmp_path: Path) -> None:
    spec, run_id = seed_run(pg_db, tmp_path, 40)
    _owned_rows(pg_db, run_id, [("far-away:1:x", -1)] * 40)
    results: list[dict[str, int]] = []

    def recover() -> None:
        results.append(reconcile.recover(pg_db, spec, run_id, {"sms": MockGateway()}))

    threads = [threading.Thread(target=recover) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["orphaned"] for r in results) == 40  # each row taken by exactly one
    assert sum(r["requeued"] for r in results) == 40
    assert status_counts(pg_db, run_id) == {"queued": 40}


@pg
def test_claims_of_concurrent_workers_never_overlap(pg_db: Database, tmp_path: Path) -> None:
    spec, run_id = seed_run(pg_db, tmp_path, 2000)
    claimed: list[list[int]] = [[] for _ in range(4)]

    def claim(k: int) -> None:
        d = engine.RunEngine(pg_db, spec, run_id, {"sms": MockGateway()},
                             settings=engine.SendSettings(batch_size=50))
        while batch := d.claim():
            claimed[k].extend(r["id"] for r in batch)

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for c in claimed for i in c]
    assert len(every) == len(set(every)) == 2000
    assert sum(1 for c in claimed if c) >= 2  # SKIP LOCKED: they claimed side by side


@pg
def test_a_run_is_completed_once_and_only_when_nothing_is_queued_or_sending(
        pg_db: Database, tmp_path: Path) -> None:
    _spec, run_id = seed_run(pg_db, tmp_path, 3)
    now = dt.datetime.now(dt.timezone.utc)
    assert not runstates.complete_if_done(pg_db, run_id, now=now)
    with pg_db.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(status="running"))
        conn.execute(update(Delivery).where(Delivery.run_id == run_id).values(status="sent"))
        conn.execute(update(Delivery).where(Delivery.id == 3).values(status="sending"))
    assert not runstates.complete_if_done(pg_db, run_id, now=now)
    with pg_db.engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.id == 3).values(status="unknown"))
    done: list[bool] = []
    threads = [threading.Thread(target=lambda: done.append(
        runstates.complete_if_done(pg_db, run_id, now=now))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(done) == [False] * 7 + [True]
    with pg_db.engine.connect() as conn:
        status, reason = conn.execute(select(Run.status, Run.status_reason)).one()
    assert status == "completed" and reason is not None and reason.startswith("1 deliveries")


@pg
def test_a_worker_that_cannot_renew_its_lease_stops_before_sending_and_records_nothing(
        pg_db: Database, tmp_path: Path) -> None:
    _spec, run_id = seed_run(pg_db, tmp_path, 30)
    mock = MockGateway()
    w = Worker(pg_db, make_gateways=lambda names: {"sms": mock}, batch_size=10, concurrency=1,
               lease_seconds=2.0, exit_when_done=True, idle_seconds=0.05)
    real_send = mock.send

    def stall_then_send(message: Any) -> Any:
        if message.delivery_id == 15:  # the database went away for longer than half a lease
            w.lease.stop()
            time.sleep(1.5)
        return real_send(message)

    mock.send = stall_then_send  # type: ignore[method-assign]
    rep = w.run()
    assert rep.exit_status == EXIT_LEASE_LOST and "lease" in rep.reason
    assert len(mock.outbox) == 15  # ids 1..15: 16.. were refused once the lease was at risk
    counts = status_counts(pg_db, run_id)
    # the first batch is recorded; of the second, the outcomes the writer committed before the
    # worker stopped (some of 11..15, which went out) may be, the rest is left as a crash
    # (``sending``, its start committed: reconciliation makes it unknown, never queued again);
    # 16.. never left. 15's outcome may be written after the lease was found at risk, when it
    # was already in the writer's group: that is safe (a takeover turns a started row into
    # unknown, never into a new send, and unknown -> sent is the truth)
    assert counts["queued"] == 10 and counts["sent"] + counts["sending"] == 20
    assert 10 <= counts["sent"] <= 15 and set(counts) <= {"sent", "sending", "queued"}
    with pg_db.engine.connect() as conn:
        rows = dict(conn.execute(select(Delivery.id, Delivery.status).where(
            Delivery.run_id == run_id)).all())
        started = set(conn.execute(select(Delivery.id).where(
            Delivery.run_id == run_id, Delivery.sending_at.is_not(None))).scalars())
    out = {m.delivery_id for m in mock.outbox}
    assert out == set(range(1, 16))
    assert {i for i, st in rows.items() if st == "sent"} <= out
    assert {i for i, st in rows.items() if st == "queued"} == set(range(21, 31))
    assert {i for i, st in rows.items() if st != "queued"} == set(range(1, 21))
    assert out <= started  # every message that left had its start committed first


@pg
def test_the_lease_keeper_extends_the_batch_in_flight(pg_db: Database, tmp_path: Path) -> None:
    _spec, run_id = seed_run(pg_db, tmp_path, 4)
    owner = leases.owner_id()
    ids = _owned_rows(pg_db, run_id, [(owner, 1.0)] * 3)
    keeper = Lease(pg_db, owner, 30.0)
    keeper.hold(ids[:2])
    assert keeper.renew() == 2
    with pg_db.engine.connect() as conn:
        expiries = dict(conn.execute(select(Delivery.id, Delivery.lease_expires_at)
                                   .where(Delivery.id.in_(ids))).all())
    now = dt.datetime.now(dt.timezone.utc)
    assert all(dt.timedelta(seconds=28) < expiries[i] - now <= dt.timedelta(seconds=30)
               for i in ids[:2])
    assert expiries[ids[2]] - now < dt.timedelta(seconds=2)  # not held: not renewed
    assert not keeper.lost()


@pg
def test_workers_pick_up_created_running_and_reopened_waiting_runs_only(
        pg_db: Database, tmp_path: Path) -> None:
    wanted = {}
    for k, status in enumerate(("created", "running", "waiting", "paused", "cancelled",
                                "completed")):
        (tmp_path / status).mkdir()
        _spec, run_id = seed_run(pg_db, tmp_path / status, 5, cid=f"c-{status}", first=10 * k)
        wanted[run_id] = status
        with pg_db.engine.begin() as conn:
            conn.execute(update(Run).where(Run.id == run_id).values(status=status))
    (tmp_path / "future").mkdir()
    _spec, future = seed_run(pg_db, tmp_path / "future", 5, cid="c-future", first=100)
    with pg_db.engine.begin() as conn:  # a scheduled run not due yet
        conn.execute(update(Run).where(Run.id == future).values(
            due_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)))
    mock = MockGateway()
    rep = Worker(pg_db, make_gateways=lambda names: {"sms": mock}, exit_when_done=True,
                 idle_seconds=0.05).run()
    assert rep.sent == 15
    assert sorted(rep.completed_runs) == sorted(r for r, s in wanted.items()
                                                if s in ("created", "running", "waiting"))
    sent_runs = {m.campaign_id for m in mock.outbox}
    assert sent_runs == {"c-created", "c-running", "c-waiting"}
    assert status_counts(pg_db, future) == {"queued": 5}


@pg
def test_a_run_whose_campaign_text_changed_is_paused_not_sent(pg_db: Database,
                                                              tmp_path: Path) -> None:
    _spec, run_id = seed_run(pg_db, tmp_path, 5)
    with pg_db.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(text_sha256="0" * 64))
    mock = MockGateway()
    rep = Worker(pg_db, make_gateways=lambda names: {"sms": mock}, exit_when_done=True,
                 idle_seconds=0.05).run()
    assert rep.sent == 0 and mock.outbox == []
    with pg_db.engine.connect() as conn:
        status, reason = conn.execute(select(Run.status, Run.status_reason)).one()
    assert status == "paused" and "another text" in reason


# -- the shared rate limiter, on a clock the test drives --------------------------------------


def max_in_any_second(times: list[float]) -> int:
    """The largest number of events in any sliding one-second span [t, t + 1)."""
    ts = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_max_in_any_second_counts_sliding_spans() -> None:
    assert max_in_any_second([0.0, 0.5, 0.99, 1.0, 1.2]) == 4  # 0.5 … 1.2 lies within 1 s
    assert max_in_any_second([0.0, 1.0, 2.0]) == 1
    assert max_in_any_second([]) == 0


@pg
def test_shared_limiter_spaces_every_process_in_every_sliding_second(pg_db: Database) -> None:
    clock = FakeClock(dt.datetime(2024, 7, 30, 2, 0, 0, 900_000, tzinfo=dt.timezone.utc))
    a = SharedRateLimiter(pg_db, "twilio", 5, clock=clock)
    b = SharedRateLimiter(pg_db, "twilio", 5, clock=clock)  # another worker, same gateway
    other = SharedRateLimiter(pg_db, "zalo", 5, clock=clock)
    starts = []
    for i in range(12):
        (a if i % 2 else b).acquire()
        starts.append(clock.now().timestamp())
    gaps = [y - x for x, y in zip(starts, starts[1:])]
    assert min(gaps) >= 1.05 / 5 - 1e-6  # one interval apart, whichever worker sent
    assert max_in_any_second(starts) == 5  # never 6 in a span that straddles a second
    before = clock.now()
    other.acquire()  # another gateway has its own slots
    assert clock.now() == before
    # a segment-rated message larger than the whole limit takes a whole second of slots
    a.acquire(12)
    t12 = clock.now()
    b.acquire()
    assert (clock.now() - t12).total_seconds() >= 5 * 1.05 / 5 - 1e-6
    # the provider says Retry-After 3 s: both workers hold back until then
    a.block_until(clock.monotonic() + 3.0)
    before = clock.now()
    b.acquire()
    assert clock.now() - before >= dt.timedelta(seconds=3)


@pg
def test_shared_limiter_under_real_threads_never_exceeds_the_limit(pg_db: Database) -> None:
    limiters = [SharedRateLimiter(pg_db, "mock", 50) for _ in range(4)]
    taken: list[float] = []
    lock = threading.Lock()

    def take(lim: SharedRateLimiter) -> None:
        for _ in range(30):
            lim.acquire()
            with lock:
                taken.append(time.time())

    threads = [threading.Thread(target=take, args=(lim,)) for lim in limiters for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 240
    assert max_in_any_second(taken) <= 50
    assert max(taken) - min(taken) >= (240 - 50) / 50  # the limit held them back
    assert max_in_any_second(taken) >= 40  # and let them use most of it


def test_a_worker_rebuilds_the_campaign_from_its_stored_definition(tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=3, rate=12.5))
    spec = dataclasses.replace(spec, district_by_file={"a.csv": "Ninh Kiều"})
    assert spec_from_definition(json.loads(json.dumps(spec.to_json()))) == spec


def test_an_owner_id_fits_the_lease_column_whatever_the_host_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "a-very-long-kubernetes-pod-name-" + "x" * 31)
    owner = leases.owner_id()
    assert len(owner) <= Delivery.__table__.c.lease_owner.type.length
    assert owner.split(":")[0] == leases.node_name()  # the same node name every time

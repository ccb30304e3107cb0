"""Send engine throughput, printed (run by hand; never a timed assertion in tests).

  (a) python benchmarks/dispatch_throughput.py mock      100,000 recipients, mock gateway, SQLite log
  (b) python benchmarks/dispatch_throughput.py latency   gateway answering in 100 ms, 64 in flight
  (c) python benchmarks/dispatch_throughput.py rate      50 messages/s limit held for 30 s

Prints messages per second and peak memory (ru_maxrss, MB); for (c) the measured rate and the
largest number of sends in any one-second window.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from outreach.input import recipients  # noqa: E402
from outreach.ledger import runs
from outreach.clock import VN_TZ, Clock  # noqa: E402
from outreach.sending.engine import send_run  # noqa: E402
from outreach.gateways.mock import MockGateway  # noqa: E402
from tests.helpers import fresh_db, load, write_campaign  # noqa: E402


class Fixed(Clock):
    """Real monotonic time, but 'now' inside the campaign window."""

    def now(self) -> dt.datetime:
        return dt.datetime(2024, 7, 30, 9, 0, tzinfo=VN_TZ)


def prepare(tmp: Path, n: int, rate: float, concurrency: int):  # type: ignore[no-untyped-def]
    spec = load(write_campaign(tmp, n=n, rate=rate))
    spec = dataclasses.replace(spec, channels=(dataclasses.replace(
        spec.channels[0], concurrency=concurrency, rate_per_second=rate),))
    db = fresh_db(tmp)
    clock = Fixed()
    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=clock.now())
    recipients.import_files(db, spec.list_files(), list_name=spec.list_name, now=clock.now())
    with db.engine.begin() as conn:
        plan = runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "mock"},
                               now=clock.now())
    return spec, db, clock, plan.run_id


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["mock", "latency", "rate"])
    ap.add_argument("-n", type=int)
    ap.add_argument("--concurrency", type=int, default=1,
                    help="(a) only: requests in flight (default 1: the mock answers at once, so "
                         "more threads only add switching)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.case == "mock":
            n = args.n or 100_000
            # the ledger is prepared in a child process, so the peak memory printed is the
            # dispatcher's own, not the import's
            import multiprocessing as mp

            ctx = mp.get_context("fork")
            child = ctx.Process(target=prepare, args=(tmp, n, 0, 1))
            child.start()
            child.join()
            from outreach.ledger.db import Database

            spec = load(tmp / "test-campaign.toml")
            spec = dataclasses.replace(spec, channels=(dataclasses.replace(
                spec.channels[0], concurrency=args.concurrency),))
            db = Database(f"sqlite:///{tmp / 't.db'}")
            clock = Fixed()
            run_id = 1
            gw = MockGateway()
            before = peak_mb()
            t0 = time.perf_counter()
            rep = send_run(db, spec, run_id, {"sms": gw}, clock=clock, batch_size=2000)
            el = time.perf_counter() - t0
            print(f"(a) mock gateway ({args.concurrency} in flight), SQLite log: {n} messages in "
                  f"{el:.2f} s = {n / el:,.0f} msg/s; "
                  f"peak RSS {peak_mb():.0f} MB (before dispatch {before:.0f} MB); {rep.counts}")
        elif args.case == "latency":
            n = args.n or 5000
            spec, db, clock, run_id = prepare(tmp, n, 0, 64)
            gw = MockGateway(latency=0.1)
            t0 = time.perf_counter()
            rep = send_run(db, spec, run_id, {"sms": gw}, clock=clock, batch_size=1000)
            el = time.perf_counter() - t0
            print(f"(b) gateway answering in 100 ms, 64 in flight: {n} messages in {el:.2f} s = "
                  f"{n / el:,.0f} msg/s; {rep.counts}")
        else:
            n = args.n or 1500
            spec, db, clock, run_id = prepare(tmp, n, 50, 8)
            gw = MockGateway()
            t0 = time.perf_counter()
            rep = send_run(db, spec, run_id, {"sms": gw}, clock=clock, batch_size=100)
            el = time.perf_counter() - t0
            stamps = sorted(t for t, _ in gw.attempts)
            j = worst = 0
            for i, t in enumerate(stamps):
                while stamps[j] <= t - 1.0:
                    j += 1
                worst = max(worst, i - j + 1)
            print(f"(c) limit 50 msg/s: {n} messages in {el:.1f} s = {n / el:.1f} msg/s; largest "
                  f"count in any one-second window: {worst}; {rep.counts}")


if __name__ == "__main__":
    main()

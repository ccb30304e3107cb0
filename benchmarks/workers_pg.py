"""Messages per second with 1, 2 and 4 `outreach worker` processes on PostgreSQL (mock gateway).

Usage::

    .venv/bin/python benchmarks/workers_pg.py                         # 20,000 messages, 1/2/4 workers
    .venv/bin/python benchmarks/workers_pg.py --workers 1,2,4,8 --latency 0.005
    .venv/bin/python benchmarks/workers_pg.py --rate 500              # shared limit of 500 msg/s
    OUTREACH_TEST_POSTGRES_URL=postgresql+psycopg://… .venv/bin/python benchmarks/workers_pg.py

For each worker count: a fresh schema on the server (dropped afterwards), a run of
``--recipients`` queued deliveries (``tests.pg.seed_run``: bulk-inserted, status ``created``,
as ``campaign launch --enqueue-only`` leaves it), then that many ``outreach worker
--exit-when-done`` processes through the file-backed mock gateway (``-o record=…``; each
accepted message is one JSON line with its arrival time). ``msg/s`` is messages over the span
between the first and the last message reaching the gateway, so process start-up (about 2 s
of imports each) is not counted; ``wall`` includes it. Every figure comes with a check that
each delivery went out exactly once. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from outreach.ledger.db import Database  # noqa: E402
from outreach.ledger.models import Delivery  # noqa: E402
from tests.pg import server_url, temp_schema, seed_run  # noqa: E402


def one(workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    with temp_schema("outreach_bench") as url:
        db = Database(url)
        db.upgrade()
        seed_run(db, tmp, args.recipients, rate=args.rate, concurrency=args.concurrency)
        record = tmp / f"mock-{workers}.jsonl"
        cmd = [sys.executable, "-m", "outreach.cli", "--database-url", url, "worker",
               "--gateway", "mock", "-o", f"record={record}", "-o", f"latency={args.latency}",
               "--exit-when-done", "--idle", "0.2", "--batch-size", str(args.batch_size)]
        started = time.monotonic()
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(workers)]
        errors = [p.communicate()[1].decode() for p in procs]
        wall = time.monotonic() - started
        failed = [e for p, e in zip(procs, errors) if p.returncode]
        if failed:
            raise SystemExit(f"a worker failed:\n{failed[0]}")
        lines = [json.loads(x) for x in record.read_text("utf-8").splitlines()]
        with db.engine.connect() as conn:
            sent = conn.execute(select(func.count()).select_from(Delivery)
                                .where(Delivery.status == "sent")).scalar_one()
        db.dispose()
    times = sorted(x["t"] for x in lines)
    span = times[-1] - times[0]
    per_worker = sorted(Counter(x["pid"] for x in lines).values(), reverse=True)
    once = (len(lines) == len({x["delivery_id"] for x in lines}) == args.recipients == sent)
    return {"workers": workers, "messages": len(lines), "span_s": span,
            "msg_per_s": len(lines) / span if span else float("nan"), "wall_s": wall,
            "per_worker": per_worker, "exactly_once": once}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipients", type=int, default=20_000)
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    ap.add_argument("--latency", type=float, default=0.0,
                    help="seconds the mock takes to answer each request (default 0)")
    ap.add_argument("--concurrency", type=int, default=4,
                    help="requests in flight per worker (the campaign's concurrency)")
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--rate", type=float, default=0,
                    help="the campaign's rate limit in msg/s, shared by all workers (0: none)")
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    if not 0 < args.recipients <= 100_000:
        # tests.pg.seed_run numbers its recipients +849655xxxxx: five digits
        ap.error(f"--recipients {args.recipients}: between 1 and 100,000 here; "
                 "benchmarks/city_1m.py launches to a million")
    db = Database(server_url())
    with db.engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
    db.dispose()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; PostgreSQL {version}; "
          f"Python {platform.python_version()}")
    print(f"{args.recipients} messages, mock latency {args.latency * 1000:g} ms, "
          f"{args.concurrency} in flight per worker, batches of {args.batch_size}, "
          f"rate limit {args.rate or 'none'}")
    print(f"{'workers':>7} {'messages':>9} {'send span s':>12} {'msg/s':>8} {'wall s':>7} "
          f"{'exactly once':>13}  per worker")
    with tempfile.TemporaryDirectory() as d:
        for k in counts:
            r = one(k, args, Path(d))
            print(f"{r['workers']:>7} {r['messages']:>9} {r['span_s']:>12.1f} "
                  f"{r['msg_per_s']:>8.0f} {r['wall_s']:>7.1f} {str(r['exactly_once']):>13}  "
                  f"{r['per_worker']}", flush=True)


if __name__ == "__main__":
    main()

"""Time to reconcile orphaned deliveries after a crash, printed (run by hand; never a test).

Usage::

    .venv/bin/python benchmarks/reconcile_lookups.py                 # 500 rows, 200 ms lookups
    .venv/bin/python benchmarks/reconcile_lookups.py --rows 2000 --latency 0.5

A run of ``--rows`` deliveries is claimed by a process that "died" with every request started
(the worst case: all of them are ``unknown`` afterwards), then :func:`outreach.sending.reconcile.recover`
asks a gateway whose lookup answers in ``--latency`` seconds: half the messages were received
(found → sent), half never (→ queued). Prints the time to reconcile and what it decided, and
checks the counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.ledger import states  # noqa: E402
from outreach.sending import reconcile
from outreach.clock import FakeClock  # noqa: E402
from outreach.sending.engine import RunEngine, SendSettings  # noqa: E402
from outreach.gateways import base as gw  # noqa: E402
from outreach.gateways.mock import MockGateway  # noqa: E402
from outreach.sending.leases import Lease  # noqa: E402
from outreach.ledger.models import Delivery  # noqa: E402
from tests.helpers import fresh_db, in_window, load, seed_run, write_campaign  # noqa: E402


class SlowLookups(MockGateway):
    """Answers every lookup after ``latency`` seconds: even delivery ids were received."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.lookup_latency = latency

    def lookup(self, message: gw.OutboundMessage, since: dt.datetime,
               until: dt.datetime) -> Any:
        time.sleep(self.lookup_latency)
        if message.delivery_id % 2 == 0:
            return gw.StatusUpdate(status="sent", provider_message_id=f"P{message.delivery_id}",
                                   delivery_id=message.delivery_id, provider_status="accepted")
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per lookup")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = in_window()
        spec = load(write_campaign(Path(tmp), n=args.rows))
        db = fresh_db(Path(tmp))
        clock = FakeClock(t0)
        run_id = seed_run(db, spec, t0)
        ghost = "ghost-host:1:dead"
        eng = RunEngine(db, spec, run_id, {"sms": MockGateway()}, clock=clock,
                        settings=SendSettings(batch_size=args.rows),
                        lease=Lease(db, ghost, clock=clock))
        ids = [r["id"] for r in eng.claim()]
        with db.engine.begin() as conn:
            states.mark_started(conn, ids, owner=ghost, now=t0)
            conn.execute(Delivery.__table__.update().values(
                lease_expires_at=t0 - dt.timedelta(seconds=1)))
        clock.advance(120)
        start = time.perf_counter()
        got = reconcile.recover(db, spec, run_id, {"sms": SlowLookups(args.latency)},
                                clock=clock)
        took = time.perf_counter() - start
    half = args.rows // 2
    ok = got["orphaned"] == args.rows and got["found"] == half and got["requeued"] == args.rows - half
    print(f"reconciled {args.rows} orphaned deliveries, lookups answering in "
          f"{args.latency * 1000:.0f} ms, {reconcile.LOOKUP_THREADS} at once: {took:.1f} s "
          f"({args.rows * args.latency:.0f} s one after the other); {dict(got)}")
    if not ok:
        raise SystemExit("unexpected counts")


if __name__ == "__main__":
    main()

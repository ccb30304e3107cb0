"""eSMS through the send engine: messages per second to the loopback fake answering in 100 ms.

    python benchmarks/esms_throughput.py [--messages 3000] [--threads 64] [--latency 0.1]

A launched run of ``--messages`` recipients is sent by :func:`outreach.sending.engine.send_run`
(claim, rate limiter off, ``--threads`` requests in flight, outcomes group-committed to a
temporary SQLite ledger) through :class:`~outreach.gateways.brandname.esms.ESMSGateway` to
``tests/fakes/esms_server.py`` running in a child process (so it does not compete for this
process's GIL), each answer delayed by ``--latency`` seconds. Prints the rate (goal ≥ 500/s),
the bound ``threads / latency``, the ledger's counts and the fake's accepted count (equal to
the recipients: exactly once).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from outreach.gateways.brandname.esms import ESMSGateway  # noqa: E402
from tests.fakes.esms_server import FakeESMS  # noqa: E402


def _child(conn: Any, latency: float) -> None:
    with FakeESMS(latency=latency) as server:
        conn.send(server.gateway_options())
        conn.recv()
        conn.send(len(server.messages))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.1)
    args = ap.parse_args()
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    from dispatch_throughput import prepare  # type: ignore[import-not-found]

    from outreach.sending.engine import send_run

    parent, child = mp.Pipe()
    proc = mp.Process(target=_child, args=(child, args.latency), daemon=True)
    proc.start()
    options = parent.recv()
    with tempfile.TemporaryDirectory() as d:
        spec, db, clock, run_id = prepare(Path(d), args.messages, 0, args.threads)
        gw = ESMSGateway(**{**options, "pool_size": args.threads, "timeout": 30,
                            "callback_secret": "bench-callback-secret-0123456789",
                            "public_base_url": "https://hooks.example.vn"})
        started = time.perf_counter()
        rep = send_run(db, spec, run_id, {"sms": gw}, clock=clock, batch_size=1000)
        elapsed = time.perf_counter() - started
        gw.close()
        db.dispose()
    parent.send("stop")
    accepted = parent.recv()
    proc.join()
    print(f"esms via the send engine: {args.messages} recipients, {args.threads} in flight, "
          f"fake latency {args.latency * 1000:.0f} ms (child process), SQLite ledger")
    print(f"  {args.messages / elapsed:.0f} messages/s in {elapsed:.2f} s "
          f"(bound in flight/latency = {args.threads / args.latency:.0f}/s; goal >= 500/s)")
    print(f"  accepted by the fake {accepted}; ledger {rep.counts}")


if __name__ == "__main__":
    main()

"""Messages per second through TwilioGateway.send to the loopback fake answering in 100 ms.

Run by hand (never a timed test)::

    .venv/bin/python benchmarks/twilio_throughput.py                 # 3000 messages, 64 threads
    .venv/bin/python benchmarks/twilio_throughput.py --threads 16 --pool-size 10
    .venv/bin/python benchmarks/twilio_throughput.py --same-process  # fake shares our GIL
    .venv/bin/python benchmarks/twilio_throughput.py --dispatcher    # whole send path, SQLite

``--dispatcher`` sends a run through :func:`outreach.sending.engine.send_run` (claim, rate limiter,
window check, retries, outcomes recorded in a SQLite ledger) with the Twilio gateway and
``--threads`` in flight, instead of calling ``send`` from a bare thread pool.

The fake runs in a child process by default, as Twilio runs on other machines: in the same
process its 64 handler threads compete with the senders for the GIL and the figure measures
the fake as much as the gateway.

Goal: >= 500 messages/s with 64 requests in flight. The bound is threads / latency
(64 / 0.1 s = 640/s); the HTTP connection pool must hold one connection per thread, or
urllib3 opens and discards a connection per request ("pool is full") and time goes to TCP
set-up. TwilioGateway mounts an adapter with ``pool_size`` connections (default 64) for
http and https; the SDK's own default is min(32, cpus + 4), https only.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from outreach.gateways.base import GatewayError, OutboundMessage  # noqa: E402
from outreach.gateways.twilio import TwilioGateway  # noqa: E402
from tests.fakes.twilio_server import FakeTwilio  # noqa: E402

TEXT = "Thông báo: Cần Thơ tổ chức tiêm chủng mở rộng ngày 30/7 tại trạm y tế phường."


def _child(conn: Any, latency: float) -> None:
    with FakeTwilio(latency=latency) as server:
        conn.send(server.gateway_options())
        conn.recv()  # wait for "stop"
        conn.send(len(server.messages))


@contextlib.contextmanager
def fake(latency: float, same_process: bool) -> Iterator[tuple[dict[str, Any], Any]]:
    """Yields (gateway options, a function returning the count of accepted messages)."""
    if same_process:
        with FakeTwilio(latency=latency) as server:
            yield server.gateway_options(), lambda: len(server.messages)
        return
    parent, child = mp.Pipe()
    proc = mp.Process(target=_child, args=(child, latency), daemon=True)
    proc.start()
    options = parent.recv()

    def count() -> int:
        parent.send("stop")
        return parent.recv()

    try:
        yield options, count
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()


def run(messages: int, threads: int, latency: float, pool_size: int,
        same_process: bool = False) -> dict[str, float]:
    with fake(latency, same_process) as (options, count):
        gw = TwilioGateway(**{**options, "pool_size": pool_size, "timeout": 30,
                              "status_callback_base": "https://hooks.example.vn",
                              "validity_period": 3600})
        # warm the pool so connection set-up is not counted
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i: gw.send(OutboundMessage(i, "bench", "sms",
                                                            f"+8491{i:07d}", TEXT)),
                          range(threads)))
        durations: list[float] = []
        errors = 0

        def one(i: int) -> None:
            nonlocal errors
            t = time.perf_counter()
            try:
                gw.send(OutboundMessage(i, "bench", "sms", f"+8498{i:07d}", TEXT))
            except GatewayError:
                errors += 1
            durations.append(time.perf_counter() - t)

        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(messages)))
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu) / messages * 1000
        gw.close()
        accepted = count() - threads
    durations.sort()
    return {"messages": messages, "accepted": accepted, "errors": errors, "seconds": elapsed,
            "rate": messages / elapsed, "p50_ms": statistics.median(durations) * 1000,
            "p95_ms": durations[int(len(durations) * 0.95)] * 1000,
            "bound": threads / latency, "cpu_ms": cpu_ms}


def run_dispatcher(messages: int, threads: int, latency: float) -> dict[str, float]:
    """The whole send path: a launched run of ``messages`` recipients dispatched through the
    Twilio gateway to the fake (child process), outcomes in a temporary SQLite ledger."""
    import tempfile

    from dispatch_throughput import prepare  # type: ignore[import-not-found]

    from outreach.sending.engine import send_run

    with fake(latency, False) as (options, count), tempfile.TemporaryDirectory() as d:
        spec, db, clock, run_id = prepare(Path(d), messages, 0, threads)
        gw = TwilioGateway(**{**options, "pool_size": threads, "timeout": 30,
                              "status_callback_base": "https://hooks.example.vn",
                              "validity_period": 3600})
        started, cpu = time.perf_counter(), time.process_time()
        rep = send_run(db, spec, run_id, {"sms": gw}, clock=clock, batch_size=1000)
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu) / messages * 1000
        gw.close()
        accepted = count()
        db.dispose()
    return {"messages": messages, "accepted": accepted, "seconds": elapsed,
            "rate": messages / elapsed, "bound": threads / latency, "cpu_ms": cpu_ms,
            "counts": rep.counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1, help="fake answer time, seconds")
    parser.add_argument("--pool-size", type=int, default=None,
                        help="HTTP connections kept (default: --threads)")
    parser.add_argument("--same-process", action="store_true",
                        help="run the fake in this process (it then competes for the GIL)")
    parser.add_argument("--dispatcher", action="store_true",
                        help="send a run through the send engine with a SQLite ledger")
    args = parser.parse_args()
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    if args.dispatcher:
        r = run_dispatcher(args.messages, args.threads, args.latency)
        print(f"twilio via the dispatcher: {r['messages']} recipients, {args.threads} in flight, "
              f"fake latency {args.latency * 1000:.0f} ms (child process), SQLite ledger")
        print(f"  {r['rate']:.0f} messages/s in {r['seconds']:.2f} s "
              f"(bound in flight/latency = {r['bound']:.0f}/s; goal >= 500/s)")
        print(f"  accepted by the fake {r['accepted']}; ledger {r['counts']}; "
              f"CPU {r['cpu_ms']:.2f} ms per message")
        return
    pool = args.pool_size or args.threads
    r = run(args.messages, args.threads, args.latency, pool, args.same_process)
    where = "same process" if args.same_process else "child process"
    print(f"twilio send: {r['messages']} messages, {args.threads} threads, pool {pool}, "
          f"fake latency {args.latency * 1000:.0f} ms ({where})")
    print(f"  {r['rate']:.0f} messages/s in {r['seconds']:.2f} s "
          f"(bound threads/latency = {r['bound']:.0f}/s; goal >= 500/s)")
    print(f"  per send: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms; "
          f"accepted {r['accepted']}, errors {r['errors']}")
    print(f"  sender CPU {r['cpu_ms']:.2f} ms per send (one GIL: at most "
          f"{1000 / r['cpu_ms']:,.0f}/s from this process)")


if __name__ == "__main__":
    main()

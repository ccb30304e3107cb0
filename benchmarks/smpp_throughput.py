"""submit_sm per second through the send engine to a loopback SMSC answering in 10 ms with a
window of 10, then delivery receipts (deliver_sm) applied per second. SQLite ledger.

Run by hand (never a timed test)::

    .venv/bin/python benchmarks/smpp_throughput.py                  # 5000 recipients
    .venv/bin/python benchmarks/smpp_throughput.py -n 20000 --window 20 --latency 0.01
    .venv/bin/python benchmarks/smpp_throughput.py --long           # the plan's 4-segment text

The SMSC (``tests/fakes/smpp_server.py``, on smpplib's PDU classes) runs in a child process, as
a carrier's SMSC runs elsewhere: in our process its threads would compete for the GIL. It
holds each segment's DELIVRD receipt until every message is sent, then sends them all,
shuffled, on the bound session; the receipts figure is from the first receipt sent to the
last one committed (``apply_receipts`` through ``outreach.receipts.writer``, group commits) and
acknowledged.

Goals (issue #18): >= 500 submits/s and >= 1,000 receipts/s. The bound for submits is window /
latency (10 / 0.01 s = 1,000/s).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PLAN_TEXT = ("Toàn dân tích cực tham gia phòng, chống mua bán người. Khi phát hiện dấu hiệu "
             "liên quan đến mua bán người hãy thông báo ngay cho cơ quan Công an nơi gần nhất "
             "hoặc Tổng đài quốc gia 111 để được tư vấn, hỗ trợ, hướng dẫn kịp thời")


def _child(conn: Any, latency: float) -> None:
    from tests.fakes.smpp_server import FakeSmsc

    smsc = FakeSmsc()
    smsc.delay = latency
    smsc.receipts, smsc.receipt_mode = "DELIVRD", "held"
    conn.send(smsc.options())
    while True:
        cmd = conn.recv()
        if cmd == "release":
            conn.send(smsc.release_receipts(shuffle=True))
        elif cmd == "counts":
            conn.send({"submits": smsc.submits, "messages": len(smsc.messages),
                       "inflight_max": smsc.inflight_max, "acks": smsc.deliver_acks})
        else:
            smsc.stop()
            return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5000, help="recipients (default 5000)")
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--latency", type=float, default=0.01, help="SMSC answer time, seconds")
    ap.add_argument("--long", action="store_true", help="the plan's text: 4 UCS-2 segments")
    args = ap.parse_args()

    from dispatch_throughput import prepare  # type: ignore[import-not-found]
    from tests import helpers

    from outreach.sending.engine import send_run
    from outreach.gateways.smpp import SmppGateway

    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_child, args=(child, args.latency),
                                           daemon=True)
    proc.start()
    options = parent.recv()
    with tempfile.TemporaryDirectory() as d:
        if args.long:
            helpers.SMALL_TEXT = PLAN_TEXT  # write_campaign's default text
            import dispatch_throughput

            dispatch_throughput.write_campaign = lambda tmp, **kw: helpers.write_campaign(
                tmp, text=PLAN_TEXT, **kw)
        spec, db, clock, run_id = prepare(Path(d), args.n, 0, args.window)
        spec = dataclasses.replace(spec, channels=(dataclasses.replace(
            spec.channels[0], sender="STTTTCanTho"),))
        gw = SmppGateway(**{**options, "window": args.window, "rate": 1_000_000,
                            "timeout": 10, "db": db})
        started, cpu = time.perf_counter(), time.process_time()
        rep = send_run(db, spec, run_id, {"sms": gw}, clock=clock, batch_size=1000)
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu) / args.n * 1000
        parent.send("counts")
        c = parent.recv()
        print(f"smpp via the send engine: {args.n} recipients, {c['submits']} submit_sm, window "
              f"{args.window}, SMSC answering in {args.latency * 1000:g} ms: {elapsed:.2f} s, "
              f"{c['submits'] / elapsed:,.0f} submits/s ({args.n / elapsed:,.0f} messages/s; "
              f"bound {args.window / args.latency:,.0f} submits/s), {cpu_ms:.2f} ms CPU per "
              f"message; most outstanding at the SMSC {c['inflight_max']}; {rep.counts}")
        t0 = time.perf_counter()
        parent.send("release")
        n_receipts = parent.recv()
        while gw.receipts.applied < n_receipts and time.perf_counter() - t0 < 300:
            time.sleep(0.005)
        r_elapsed = time.perf_counter() - t0
        gw.receipts.flush()
        r_elapsed_acked = time.perf_counter() - t0
        print(f"receipts: {gw.receipts.applied} deliver_sm applied in {r_elapsed:.2f} s, "
              f"{gw.receipts.applied / r_elapsed:,.0f} receipts/s "
              f"({gw.receipts.applied / r_elapsed_acked:,.0f}/s until the last deliver_sm_resp)")
        gw.close()
        from sqlalchemy import func, select

        from outreach.ledger.models import Delivery

        with db.engine.connect() as conn:
            by = dict(conn.execute(select(Delivery.status, func.count())
                                   .group_by(Delivery.status)).all())
        print(f"deliveries now: {by}")
        db.dispose()
    parent.send("stop")
    proc.join(5)


if __name__ == "__main__":
    main()

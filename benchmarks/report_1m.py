"""Time the full delivery report over 1,000,000 deliveries in SQLite (goal: under 1 second).

Usage::

    .venv/bin/python benchmarks/report_1m.py                  # 1,000,000 rows in a temp file
    .venv/bin/python benchmarks/report_1m.py --rows 200000 --db /tmp/r.db --keep
    .venv/bin/python benchmarks/report_1m.py --db /tmp/r.db --reuse   # time again, no rebuild

The schema is ``Base.metadata.create_all`` (so it has every index declared in
``outreach/models.py``); rows are written with ``executemany`` in transactions of 100,000, the
secondary indexes built after the load. The figures printed are wall-clock seconds of
:func:`outreach.reporting.reports.campaign_report` (every breakdown, failure reasons, distinct recipients,
reached) on a warm and a cold connection, and of the official HTML report (which adds the
SVG chart). Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from outreach.ledger.db import make_engine  # noqa: E402
from outreach.ledger.models import Base, Delivery  # noqa: E402

CAMPAIGN = "bench-1m"
DISTRICTS = {
    "Ninh Kiều": ["An Hòa", "An Khánh", "An Bình", "Cái Khế", "Hưng Lợi", "Tân An", "Xuân Khánh"],
    "Bình Thủy": ["Bình Thủy", "Long Hòa", "Bùi Hữu Nghĩa", "An Thới", "Trà Nóc", "Thới An Đông"],
    "Cái Răng": ["Lê Bình", "Hưng Phú", "Hưng Thạnh", "Ba Láng", "Phú Thứ", "Tân Phú"],
    "Ô Môn": ["Châu Văn Liêm", "Thới Hòa", "Thới Long", "Phước Thới", "Trường Lạc"],
    "Thốt Nốt": ["Thốt Nốt", "Thới Thuận", "Thuận An", "Tân Lộc", "Trung Kiên"],
    "Phong Điền": ["Phong Điền", "Nhơn Ái", "Giai Xuân", "Tân Thới", "Mỹ Khánh"],
    "Cờ Đỏ": ["Cờ Đỏ", "Trung An", "Trung Thạnh", "Thới Hưng", "Đông Hiệp"],
    "Thới Lai": ["Thới Lai", "Xuân Thắng", "Định Môn", "Trường Thành", "Tân Thạnh"],
    "Vĩnh Thạnh": ["Vĩnh Thạnh", "Thạnh An", "Thạnh Quới", "Thạnh Mỹ", "Vĩnh Trinh"],
}
CARRIERS = [("Viettel", 0.5), ("MobiFone", 0.2), ("VinaPhone", 0.2), ("Vietnamobile", 0.06),
            ("iTel", 0.03), ("Gmobile", 0.01)]
#: status, weight, (error_code, error_reason) choices
STATUSES = [
    ("delivered", 0.86, [None]),
    ("sent", 0.03, [None]),
    ("undelivered", 0.03, [("30005", "unknown-handset"), ("30003", "unreachable"),
                           ("30006", "landline-or-unreachable")]),
    ("failed", 0.04, [("21211", "invalid-address"), ("30007", "carrier-filtered"),
                      ("-118", "no-zalo-account")]),
    ("unknown", 0.005, [(None, "outcome-unknown")]),
    ("opted_out", 0.005, [(None, "suppressed")]),
    ("skipped", 0.01, [(None, "cancelled")]),
    ("queued", 0.02, [None]),
]
FMT = "%Y-%m-%d %H:%M:%S.%f"


def build(path: str, rows: int, seed: int = 20240730) -> None:
    """Create the schema and write ``rows`` deliveries of one campaign (about 5 % resends)."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    # synthetic, but shaped like personal data: only the owner reads it (as outreach's own
    # files, which warn otherwise); SQLite gives the -wal and -shm files the same mode
    os.chmod(path, 0o600)
    ix_names = [ix.name for ix in Delivery.__table__.indexes]
    with engine.begin() as conn:
        for name in ix_names:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
        now = "2024-07-29 00:00:00.000000"
        conn.execute(text(
            "INSERT INTO campaigns (id, name, source_ref, text, text_sha256, definition, status, "
            "created_at, updated_at) VALUES (:id, 'Benchmark', '126/KH-UBND', 'x', :h, '{}', "
            "'active', :now, :now)"), {"id": CAMPAIGN, "h": "0" * 64, "now": now})
        for run_id in (1, 2):
            conn.execute(text(
                "INSERT INTO runs (id, campaign_id, run_key, kind, run_date, status, gateway, "
                "text_sha256, due_at, created_at, options) VALUES (:id, :c, :k, 'launch', "
                "'2024-07-29', 'completed', 'twilio', :h, :now, :now, '{}')"),
                {"id": run_id, "c": CAMPAIGN, "k": f"launch:{run_id}", "h": "0" * 64, "now": now})
    engine.dispose()

    rng = random.Random(seed)
    places = [(d, w) for d, ws in DISTRICTS.items() for w in ws]
    carriers, cw = zip(*CARRIERS)
    st_names = [s[0] for s in STATUSES]
    st_weights = [s[1] for s in STATUSES]
    st_errors = {s[0]: s[2] for s in STATUSES}
    start = dt.datetime(2024, 7, 29, 1, 0)  # 08:00 in Cần Thơ
    resends = rows // 20
    first = rows - resends

    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    cols = ("campaign_id, run_id, recipient_id, dedupe_key, channel, gateway, address, district, "
            "ward, carrier, status, segments, cost_vnd, error_code, error_reason, attempts, "
            "queued_at, sending_at, sent_at, delivered_at, final_at, updated_at")
    sql = f"INSERT INTO deliveries ({cols}) VALUES ({', '.join('?' * 22)})"
    batch: list[tuple[object, ...]] = []
    t0 = time.perf_counter()
    all_carriers = rng.choices(carriers, cw, k=rows)
    all_statuses = rng.choices(st_names, st_weights, k=rows)
    for i in range(rows):
        resend = i >= first
        rid = (i - first) * 7 % first + 1 if resend else i + 1
        district, ward = places[rid * 2654435761 % len(places)]
        carrier = all_carriers[i]
        channel, gateway = ("zalo", "zalo") if rid % 10 == 0 and not resend else ("sms", "twilio")
        status = all_statuses[i]
        err = rng.choice(st_errors[status])
        code, reason = err if err else (None, None)
        queued = start + dt.timedelta(days=4 if resend else 0)
        # 10 messages per second: a day holds 864,000, so the send spans two days
        sending = queued + dt.timedelta(seconds=(i - first if resend else i) / 10)
        tried = status not in ("queued", "skipped", "opted_out")
        accepted = status in ("sent", "delivered", "undelivered")
        segs = 1 if channel == "zalo" else 4
        cost = (300.0 if channel == "zalo" else 800.0 * segs) if accepted else None
        batch.append((
            CAMPAIGN, 2 if resend else 1, rid, "resend:2" if resend else "once", channel, gateway,
            f"+8490{rid:07d}", district, ward, carrier, status, segs, cost, code, reason,
            1 if tried else 0, queued.strftime(FMT),
            sending.strftime(FMT) if tried else None,
            sending.strftime(FMT) if accepted else None,
            (sending + dt.timedelta(seconds=5)).strftime(FMT) if status == "delivered" else None,
            sending.strftime(FMT) if status not in ("queued", "sent", "unknown") else None,
            sending.strftime(FMT)))
        if len(batch) >= 100_000:
            db.executemany(sql, batch)
            db.commit()
            batch.clear()
    db.executemany(sql, batch)
    db.commit()
    t1 = time.perf_counter()
    db.close()
    engine = create_engine(url)
    for ix in Delivery.__table__.indexes:
        ix.create(engine)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    print(f"wrote {rows:,} deliveries in {t1 - t0:.1f} s, indexes in "
          f"{time.perf_counter() - t1:.1f} s ({os.path.getsize(path) / 1e6:.0f} MB)")


def time_report(path: str, repeat: int = 5) -> tuple[float, float]:
    """Best and median wall time (seconds) of the full report over ``repeat`` runs."""
    import statistics

    from outreach.reporting import reports

    engine = make_engine(f"sqlite:///{path}")
    best = float("inf")
    walls: list[float] = []
    data = None
    for n in range(repeat):
        with reports.report_connection(engine) as conn:
            t, cpu = time.perf_counter(), time.process_time()
            data = reports.campaign_report(conn, CAMPAIGN)
            took, cpu = time.perf_counter() - t, time.process_time() - cpu
        best = min(best, took)
        walls.append(took)
        print(f"full report, run {n + 1}: {took:.3f} s wall, {cpu:.3f} s CPU")
    assert data is not None
    print(f"  deliveries {data['deliveries']:,}, recipients {data['recipients']:,}, reached "
          f"{data['reached']:,}, delivery rate {data['delivery_rate']:.2%}, "
          f"{len(data['by_day'])} days, {sum(len(w) for w in data['by_ward'].values())} wards, "
          f"{len(data['failure_reasons'])} failure reasons, cost {data['cost_vnd']:,.0f} VND")
    from outreach.reporting import official

    with engine.connect() as conn:
        t = time.perf_counter()
        html = official.render_html(conn, CAMPAIGN)
        print(f"official HTML report (incl. SVG chart): {time.perf_counter() - t:.3f} s, "
              f"{len(html) / 1e3:.0f} kB")
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + reports.explain_sql(conn, CAMPAIGN)).all()
        print("query plan of the main scan: " + "; ".join(r[-1] for r in plan))
    engine.dispose()
    return best, statistics.median(walls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", help="SQLite file (default: a temporary file, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the database file")
    ap.add_argument("--reuse", action="store_true", help="time an existing --db, do not rebuild")
    args = ap.parse_args()
    tmpdir = None
    if args.db:
        path = args.db
    else:
        tmpdir = tempfile.mkdtemp(prefix="outreach-bench-")
        path = os.path.join(tmpdir, "report_1m.db")
    if not args.reuse:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        build(path, args.rows)
    best, median = time_report(path)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"RESULT: full report over {args.rows:,} deliveries in SQLite: best {best:.3f} s, "
          f"median {median:.3f} s (goal < 1 s; {os.cpu_count()} CPUs, load average {load:.1f})")
    if not args.keep and not args.reuse:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        if tmpdir:
            os.rmdir(tmpdir)


if __name__ == "__main__":
    main()

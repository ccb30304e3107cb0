"""A whole city: a launch to 1,000,000 generated recipients, phase by phase (time, peak memory).

Usage::

    .venv/bin/python benchmarks/city_1m.py                       # 1,000,000: SQLite, then PostgreSQL
    .venv/bin/python benchmarks/city_1m.py -n 100000 --skip-pg   # SQLite + outbox only
    .venv/bin/python benchmarks/city_1m.py --skip-sqlite --workers 1,2,4 --worker-seconds 60
    .venv/bin/python benchmarks/city_1m.py --code /path/to/other/checkout   # A/B another tree

1. **Lists**: ``-n`` rows spread over nine files, each shaped like its namesake in
   ``recipients/cantho-2024/`` (same header, delimiter, encoding and way of writing numbers,
   the same share of unusable rows): the shipped rows are repeated with the last seven digits
   of each number replaced by a counter, so every valid number is unique.
2. **SQLite + outbox**: ``outreach campaign launch`` of the plan's campaign (a copy of
   ``campaigns/cantho-2024-pcmbn.toml`` whose lists are the generated files) in a child
   process, through the CLI (``outreach.cli.main``). The child times each phase — import
   (``recipients.import_into``), run creation (``runs.create_run``), sending
   (``engine.send_run``) — and samples its resident memory (``/proc/self/statm``, every
   20 ms) for each phase's peak; ``whole`` is the CLI call from start to exit. The import's
   reader child process (large files) is reported apart (``ru_maxrss`` of children).
3. **Raw SQLite**: in the same session, the same number of rows inserted into a fresh copy of
   the ``deliveries`` table (every index) with ``executemany`` in transactions of 100,000,
   then updated by id (status, provider id, sent_at) the same way: the database's own rate.
   Then the writes sending makes for each message, in plain SQL by id, 2,000 rows a batch:
   the claim (``queued → sending``) with its event row, the outcome (``sending → sent``) with
   its event row — the database's own limit for sending through the ledger.
4. **PostgreSQL** (``$OUTREACH_TEST_POSTGRES_URL`` or the local server, a fresh schema):
   ``campaign launch --enqueue-only`` the same way, then for each worker count the run is reset
   to queued and that many ``outreach worker --exit-when-done`` processes send it through
   ``--worker-gateway`` (mock by default); they are stopped (SIGTERM: in-flight sends finish)
   after ``--worker-seconds``. ``msg/s`` is messages sent over the span from the first
   ``sending_at`` to the last ``sent_at`` in the database, so start-up is not counted.

``--code DIR`` runs the children against another checkout's ``outreach`` package (for a
before/after comparison in the same session). Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "recipients" / "cantho-2024"
CAMPAIGN = ROOT / "campaigns" / "cantho-2024-pcmbn.toml"
_DIGIT = re.compile(r"\d")


# -- 1. the lists ------------------------------------------------------------------------------
def _read_shipped(path: Path) -> tuple[str, str, str, list[str], str]:
    """(encoding, newline, header, data lines, delimiter) of a shipped list."""
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "utf-16", "cp1258"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    newline = "\r\n" if b"\r\n" in raw else "\n"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0]
    delim = max((";", ",", "\t"), key=header.count)
    return enc, newline, header, lines[1:], delim


def _phone_column(header: str, delim: str) -> int:
    cols = [c.strip().lower() for c in header.split(delim)]
    for i, c in enumerate(cols):
        if any(k in c for k in ("sđt", "sdt", "điện thoại", "dien thoai", "di động", "phone",
                                "số đt", "so dt", "đt")):
            return i
    return 2


def generate(out: Path, n: int) -> dict[str, int]:
    """Write ``n`` data rows over the nine lists into ``out``; returns rows per file."""
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(SHIPPED.glob("*.csv"))
    per = [n // len(files) + (1 if i < n % len(files) else 0) for i in range(len(files))]
    counter = 0
    written: dict[str, int] = {}
    for path, rows in zip(files, per):
        enc, newline, header, data, delim = _read_shipped(path)
        col = _phone_column(header, delim)
        has_stt = header.split(delim)[0].strip().lower() in ("stt", "tt", "no", "số tt")
        with open(out / path.name, "w", encoding=enc, newline="") as fh:
            fh.write(header + newline)
            buf: list[str] = []
            for i in range(rows):
                cells = _split(data[i % len(data)], delim)
                if col < len(cells):
                    cells[col] = _renumber(cells[col], counter)
                if has_stt:
                    cells[0] = str(i + 1)
                counter += 1
                buf.append(delim.join(cells))
                if len(buf) >= 10_000:
                    fh.write(newline.join(buf) + newline)
                    buf.clear()
            if buf:
                fh.write(newline.join(buf) + newline)
        written[path.name] = rows
    return written


def _split(line: str, delim: str) -> list[str]:
    # the shipped lists quote no cell that holds the delimiter except with double quotes
    out, cur, quoted = [], [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        if ch == delim and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _renumber(cell: str, k: int) -> str:
    """The cell with its last seven digits replaced by ``k`` (7 digits): same shape, unique."""
    if cell.endswith(".0"):  # a number a spreadsheet stored as a float
        return _renumber(cell[:-2], k) + ".0"
    pos = [m.start() for m in _DIGIT.finditer(cell)]
    if len(pos) < 9:
        return cell  # not a whole number (a landline fragment, words): stays as unusable
    digits = f"{k % 10_000_000:07d}"
    chars = list(cell)
    for p, d in zip(pos[-7:], digits):
        chars[p] = d
    return "".join(chars)


def write_campaign(tmp: Path, lists: Path) -> Path:
    """A copy of the plan's campaign whose lists are the generated files and whose send window
    is open all day until 2099 and without a rate limit (so workers through the mock may send
    at their own pace); same text, same hash."""
    text = CAMPAIGN.read_text("utf-8")
    text = re.sub(r'^lists = .*$', f'lists = ["{lists.as_posix()}/*.csv"]', text, flags=re.M)
    text = re.sub(r"^end_date = 2024-09-30", "end_date = 2099-12-31", text, flags=re.M)
    text = re.sub(r'^daily_start = "07:00"', 'daily_start = "00:00"', text, flags=re.M)
    text = re.sub(r'^daily_end = "22:00"', "daily_end = 23:59:59", text, flags=re.M)
    # the 10 msg/s of the brandname at Twilio would hold the mock workers to it (the outbox
    # ignores a campaign's rate: it reaches no phone)
    text = re.sub(r"^rate_per_second = 10 .*$", "", text, flags=re.M)
    path = tmp / "cantho-2024-pcmbn.toml"
    path.write_text(text, "utf-8")
    return path


# -- 2. the launch, in a child process -----------------------------------------------------------
CHILD = r"""
import json, os, resource, sys, threading, time
t_start = time.perf_counter()
page = os.sysconf("SC_PAGE_SIZE")
state = {"phase": "start-up", "peak": {}, "time": {}, "cur": 0}
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page
def sample():
    while True:
        r = rss()
        p = state["phase"]
        if r > state["peak"].get(p, 0):
            state["peak"][p] = r
        if r > state["peak"].get("whole", 0):
            state["peak"]["whole"] = r
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
from outreach.input import recipients
from outreach.ledger import runs
from outreach.sending import engine
def timed(name, fn):
    def wrapper(*a, **k):
        prev = state["phase"]
        state["phase"] = name
        r = rss()
        state["peak"][name] = max(state["peak"].get(name, 0), r)
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            state["time"][name] = state["time"].get(name, 0.0) + time.perf_counter() - t0
            r = rss()
            state["peak"][name] = max(state["peak"].get(name, 0), r)
            state["phase"] = "between"
    return wrapper
recipients.import_into = timed("import", recipients.import_into)
runs.create_run = timed("run creation", runs.create_run)
engine.send_run = timed("sending", engine.send_run)
from outreach.cli import main
code = 0
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit as exc:
    code = exc.code or 0
state["time"]["whole"] = time.perf_counter() - t_start
ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
state["peak"]["whole"] = max(state["peak"].get("whole", 0), ru)
out = {"time": state["time"], "peak_mb": {k: v / 2**20 for k, v in state["peak"].items()},
       "ru_maxrss_mb": ru / 2**20,
       "reader_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "code": code}
with open(os.environ["CITY_RESULT"], "w") as fh:
    json.dump(out, fh)
"""


def child_env(code: Path | None, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(code)] if code else []
    paths.append(str(ROOT))
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env["OUTREACH_HOME"] = str(home)
    env["OUTREACH_OUTBOX_DIR"] = str(home / "outbox")
    env.pop("OUTREACH_DATABASE_URL", None)
    return env


def launch(args: list[str], env: dict[str, str], tmp: Path, log: Path) -> dict[str, object]:
    result = tmp / "result.json"
    result.unlink(missing_ok=True)
    env = dict(env, CITY_RESULT=str(result))
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, stdout=fh,
                              stderr=subprocess.STDOUT, cwd=tmp)
    if proc.returncode or not result.exists():
        raise SystemExit(f"the launch failed (exit {proc.returncode}); see {log}:\n"
                         + log.read_text("utf-8", "replace")[-3000:])
    return json.loads(result.read_text())


def print_phases(label: str, res: dict, n: int) -> None:
    t, p = res["time"], res["peak_mb"]
    print(f"  {label}")
    for name in ("import", "run creation", "sending", "whole"):
        if name in t:
            rate = f"{n / t[name]:>10,.0f} rows/s" if t[name] else ""
            print(f"    {name:<13} {t[name]:>7.1f} s  peak {p.get(name, 0):>6.0f} MB  {rate}")
    print(f"    (ru_maxrss {res['ru_maxrss_mb']:.0f} MB; import reader child "
          f"{res['reader_mb']:.0f} MB)", flush=True)


# -- 3. raw SQLite ---------------------------------------------------------------------------------
def raw_sqlite(tmp: Path, n: int) -> tuple[float, float, float]:
    """Rows/s of a plain executemany INSERT and UPDATE of ``n`` delivery rows (same table and
    indexes as the ledger's, same PRAGMAs as :mod:`outreach.ledger.db`), and messages/s of
    the writes sending makes for each message (two updates and two event inserts), done the
    plainest way: the database's own limit for the ledger's sending."""
    from sqlalchemy import create_engine

    from outreach.ledger.models import Base

    path = tmp / "raw.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    eng = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(eng)
    eng.dispose()
    con = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-16384",
                   "temp_store=MEMORY"):
        con.execute(f"PRAGMA {pragma}")
    con.execute("PRAGMA foreign_keys=OFF")  # no campaign or run rows: the deliveries alone
    ts = "2024-07-30 02:00:00.000000"
    chunk = 100_000
    t0 = time.perf_counter()
    for start in range(0, n, chunk):
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO deliveries (campaign_id, run_id, recipient_id, dedupe_key, channel, "
            "gateway, address, district, ward, carrier, status, encoding, segments, cost_vnd, "
            "attempts, queued_at, updated_at) VALUES ('c', 1, ?, 'once', 'sms', 'outbox', ?, "
            "'Ninh Kiều', 'An Hòa', 'Viettel', 'queued', 'ucs2', 4, 3200, 0, ?, ?)",
            ((i + 1, f"+8496{i:07d}", ts, ts) for i in range(start, min(n, start + chunk))))
        con.execute("COMMIT")
    ins = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, n, chunk):
        con.execute("BEGIN")
        con.executemany(
            "UPDATE deliveries SET status = 'sent', provider_message_id = ?, sent_at = ?, "
            "updated_at = ? WHERE id = ?",
            ((f"outbox-{i}", ts, ts, i) for i in range(start + 1, min(n, start + chunk) + 1)))
        con.execute("COMMIT")
    upd = n / (time.perf_counter() - t0)
    # what sending writes for each message, in the plainest SQL: the claim (queued -> sending)
    # and its event, then the outcome (sending -> sent) and its event, 2,000 rows a batch
    con.execute("UPDATE deliveries SET status = 'queued', provider_message_id = NULL, "
                "sent_at = NULL")
    batch = 2000
    t0 = time.perf_counter()
    for start in range(1, n + 1, batch):
        ids = range(start, min(n, start + batch - 1) + 1)
        for old, new, extra in (("queued", "sending", "sending_at = ?, lease_owner = 'raw', "
                                 "lease_expires_at = ?, attempts = attempts + 1"),
                                ("sending", "sent", "provider_message_id = 'outbox-' || ?, "
                                 "sent_at = ?")):
            con.execute("BEGIN")
            con.executemany(f"UPDATE deliveries SET status = '{new}', {extra}, updated_at = ? "
                            "WHERE id = ?",
                            ((ts, ts, ts, i) if new == "sending" else (i, ts, ts, i)
                             for i in ids))
            con.executemany("INSERT INTO delivery_events (delivery_id, at, source, old_status, "
                            f"new_status, applied) VALUES (?, ?, 'dispatcher', '{old}', "
                            f"'{new}', 1)", ((i, ts) for i in ids))
            con.execute("COMMIT")
    pattern = n / (time.perf_counter() - t0)
    con.close()
    return ins, upd, pattern


# -- 4. PostgreSQL ---------------------------------------------------------------------------------
def reset_run(url: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("UPDATE deliveries SET status = 'queued', sending_at = NULL, "
                          "sent_at = NULL, final_at = NULL, lease_owner = NULL, "
                          "lease_expires_at = NULL, provider_message_id = NULL, "
                          "provider_status = NULL, attempts = 0 WHERE status <> 'queued' "
                          "AND error_reason IS NULL"))
        conn.execute(text("DELETE FROM delivery_events WHERE source = 'dispatcher'"))
        conn.execute(text("UPDATE runs SET status = 'created', started_at = NULL, "
                          "finished_at = NULL, status_reason = NULL"))
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE deliveries"))
        conn.execute(text("VACUUM ANALYZE delivery_events"))
    eng.dispose()


def workers(url: str, k: int, env: dict[str, str], tmp: Path, gateway: str,
            seconds: float) -> dict[str, object]:
    from sqlalchemy import create_engine, text

    cmd = [sys.executable, "-m", "outreach.cli", "--database-url", url, "worker",
           "--gateway", gateway, "--exit-when-done", "--idle", "0.2", "--batch-size", "500"]
    if gateway == "outbox":
        cmd += ["-o", f"directory={tmp / 'outbox-pg'}"]
    started = time.monotonic()
    logs = [open(tmp / f"worker-{k}-{i}.log", "w") for i in range(k)]
    procs = [subprocess.Popen(cmd, env=env, stdout=lg, stderr=subprocess.STDOUT, cwd=tmp)
             for lg in logs]
    stopped = False
    while any(p.poll() is None for p in procs):
        if not stopped and time.monotonic() - started > seconds:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            stopped = True
        time.sleep(0.1)
    wall = time.monotonic() - started
    for lg in logs:
        lg.close()
    bad = [i for i, p in enumerate(procs) if p.returncode]
    if bad:
        raise SystemExit(f"worker failed: {(tmp / f'worker-{k}-{bad[0]}.log').read_text()[-3000:]}")
    eng = create_engine(url)
    with eng.connect() as conn:
        sent, first, last = conn.execute(text(
            "SELECT count(*), min(sending_at), max(sent_at) FROM deliveries "
            "WHERE status = 'sent'")).one()
        twice = conn.execute(text(
            "SELECT count(*) FROM (SELECT delivery_id FROM delivery_events WHERE "
            "new_status = 'sent' GROUP BY delivery_id HAVING count(*) > 1) x")).scalar_one()
    eng.dispose()
    span = (last - first).total_seconds() if sent else 0.0
    return {"workers": k, "sent": sent, "span": span, "rate": sent / span if span else 0.0,
            "wall": wall, "stopped": stopped, "twice": twice}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--recipients", type=int, default=1_000_000)
    ap.add_argument("--code", type=Path, help="checkout whose outreach package the children use")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--worker-gateway", default="mock", choices=["mock", "outbox"])
    ap.add_argument("--worker-seconds", type=float, default=120.0,
                    help="stop the workers after this long (the rate is what they sent)")
    ap.add_argument("--keep", type=Path, help="keep the lists and databases in this folder")
    args = ap.parse_args()
    n = args.recipients
    code = args.code.resolve() if args.code else None
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}; code {code or ROOT}")
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="city-"))
    tmp.mkdir(parents=True, exist_ok=True)
    lists = tmp / "lists"
    t0 = time.perf_counter()
    if not (lists / "vinh-thanh.csv").exists() or sum(
            1 for f in lists.glob("*.csv") for _ in open(f, "rb")) != n + 9:
        generate(lists, n)
    size = sum(f.stat().st_size for f in lists.glob("*.csv"))
    print(f"{n:,} rows in 9 lists ({size / 1e6:.0f} MB) ready in {time.perf_counter() - t0:.1f} s")
    campaign = write_campaign(tmp, lists)
    if not args.skip_sqlite:
        home = tmp / "home-sqlite"
        subprocess.run(["rm", "-rf", str(home)], check=True)
        home.mkdir()
        env = child_env(code, home)
        db = home / "outreach.db"
        res = launch(["--database-url", f"sqlite:///{db}", "campaign", "launch", str(campaign),
                      "--format", "json"], env, tmp, tmp / "launch-sqlite.log")
        outbox = home / "outbox" / "cantho-2024-pcmbn.jsonl"
        lines = sum(1 for _ in open(outbox, "rb")) if outbox.exists() else 0
        print(f"SQLite + outbox, load average {os.getloadavg()[0]:.2f} "
              f"(outbox lines {lines:,}):")
        print_phases("campaign launch", res, n)
        if res["time"].get("sending"):
            print(f"    sending rate {lines / res['time']['sending']:,.0f} msg/s")
    if not args.skip_raw:
        ins, upd, pattern = raw_sqlite(tmp, n)
        print(f"raw SQLite, same session: insert {ins:,.0f} rows/s, update {upd:,.0f} rows/s; "
              f"sending's writes (claim + event, outcome + event, 2,000 a batch) "
              f"{pattern:,.0f} msg/s", flush=True)
    if not args.skip_pg:
        sys.path.insert(0, str(ROOT))
        from tests.pg import temp_schema

        with temp_schema("outreach_city") as url:
            home = tmp / "home-pg"
            subprocess.run(["rm", "-rf", str(home)], check=True)
            home.mkdir()
            env = child_env(code, home)
            subprocess.run([sys.executable, "-m", "outreach.cli", "--database-url", url, "db",
                            "upgrade"], env=env, check=True, cwd=tmp, stdout=subprocess.DEVNULL)
            res = launch(["--database-url", url, "campaign", "launch", str(campaign),
                          "--enqueue-only", "--format", "json"], env, tmp, tmp / "launch-pg.log")
            print(f"PostgreSQL, load average {os.getloadavg()[0]:.2f}:")
            print_phases("campaign launch --enqueue-only", res, n)
            print(f"    workers through {args.worker_gateway}, stopped after "
                  f"{args.worker_seconds:g} s at most:")
            for k in [int(x) for x in args.workers.split(",") if x.strip()]:
                reset_run(url)
                r = workers(url, k, env, tmp, args.worker_gateway, args.worker_seconds)
                print(f"    {k} worker(s): {r['sent']:,} sent in {r['span']:.1f} s = "
                      f"{r['rate']:,.0f} msg/s (wall {r['wall']:.1f} s"
                      f"{', stopped' if r['stopped'] else ''}; sent twice: {r['twice']}); "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()

"""Two real ``outreach scheduler run`` processes on one SQLite file send each recipient once.

The case from the field: daily 08:00 Asia/Ho_Chi_Minh to three recipients, two scheduler
processes on one database → exactly three send requests that day. Here the campaign is due now
(today's firing in Vietnam has passed, within the lateness limit) and the outbox gateway, which
reaches no phone, records each send request as one JSON line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from outreach.clock import VN_TZ
from tests.helpers import write_daily_campaign

pytestmark = pytest.mark.slow

NUMBERS = ["0965550101", "0965550102", "0965550103"]
E164 = sorted("+84" + n[1:] for n in NUMBERS)
CID = "hai-tien-trinh"


def _campaign(tmp: Path) -> Path:
    """Due now: the window covers today in Vietnam, open all day, sent at 00:00 with a lateness
    limit of a whole day."""
    today = dt.datetime.now(VN_TZ).date()
    return write_daily_campaign(tmp, cid=CID, numbers=NUMBERS, start=today.isoformat(),
                                end=(today + dt.timedelta(days=2)).isoformat(),
                                send_time="00:00", daily_start="00:00", daily_end="23:59",
                                lateness=1440, key_dates="[]")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(OUTREACH_HOME=str(tmp_path / "home"), OUTREACH_OUTBOX_DIR=str(tmp_path / "outbox"),
             OUTREACH_DATABASE_URL=f"sqlite:///{tmp_path / 'outreach.db'}",
             COLUMNS="200", PYTHONUNBUFFERED="1")
    e.pop("TZ", None)
    e.pop("OUTREACH_STRICT_CLI", None)
    return e


def _outreach(*args: str) -> list[str]:
    return [sys.executable, "-m", "outreach", *args]


def _add_schedule(tmp_path: Path, env: dict[str, str]) -> None:
    out = subprocess.run(_outreach("schedule", "add", str(_campaign(tmp_path))), env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout


def _outbox_numbers(tmp_path: Path) -> list[str]:
    path = tmp_path / "outbox" / f"{CID}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["to"] for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _runs(tmp_path: Path) -> list[tuple[int, str, str, str, int]]:
    con = sqlite3.connect(tmp_path / "outreach.db")
    try:
        return con.execute(
            "SELECT r.id, r.run_key, r.kind, r.status, "
            "(SELECT count(*) FROM deliveries d WHERE d.run_id = r.id) "
            "FROM runs r ORDER BY r.id").fetchall()
    finally:
        con.close()


def _check_sent_once(tmp_path: Path) -> None:
    sent = _outbox_numbers(tmp_path)
    assert Counter(sent) == {n: 1 for n in E164}  # exactly three send requests, one per number
    with_deliveries = [r for r in _runs(tmp_path) if r[4]]
    assert len(with_deliveries) == 1
    _id, key, kind, status, n = with_deliveries[0]
    assert key.startswith("day:") and kind == "scheduled" and status == "completed" and n == 3


def test_two_scheduler_processes_once_send_each_recipient_once(tmp_path: Path,
                                                              env: dict[str, str]) -> None:
    _add_schedule(tmp_path, env)
    procs = [subprocess.Popen(_outreach("scheduler", "run", "--once", "--gateway", "outbox"),
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
        assert "Traceback" not in err
    _check_sent_once(tmp_path)
    # exactly one process says it created the run; the other may say, in its detail, that
    # "another scheduler process created this day's run" (it lost the race after the check)
    assert sum(": created" in out for out, _ in outs) == 1
    assert sum(": taken by another process" in out for out, _ in outs) <= 1
    assert len(_runs(tmp_path)) == 1


def test_two_foreground_schedulers_then_sigterm(tmp_path: Path, env: dict[str, str]) -> None:
    _add_schedule(tmp_path, env)
    procs = [subprocess.Popen(_outreach("scheduler", "run", "--poll", "1", "--gateway", "outbox"),
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if (len(_outbox_numbers(tmp_path)) >= 3
                    and any(r[3] == "completed" and r[4] for r in _runs(tmp_path))):
                break
            assert all(p.poll() is None for p in procs), "a scheduler exited early"
            time.sleep(0.2)
        time.sleep(2.5)  # both processes poll again: nothing more may be sent
        for p in procs:
            p.send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
        assert "scheduler started (time zone Asia/Ho_Chi_Minh" in out
        assert "scheduler stopped" in out and "SIGTERM" in err
        assert "Traceback" not in err
    _check_sent_once(tmp_path)
    # exactly one process says it created the run; the other may say, in its detail, that
    # "another scheduler process created this day's run" (it lost the race after the check)
    assert sum(": created" in out for out, _ in outs) == 1
    assert sum(": taken by another process" in out for out, _ in outs) <= 1

"""kill -9 the dispatcher at random moments, resume each time: nobody twice, nobody lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from outreach.ledger.db import Database
from outreach.ledger.models import Delivery, DeliveryEvent, Run
from tests.helpers import numbers, write_campaign

pytestmark = pytest.mark.slow
N = 40000  # 20 batches of the outbox (2,000 a batch): room for 8 kills of at most 2 batches
KILLS = 8


def _cli(tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, OUTREACH_HOME=str(tmp / "home"))
    return subprocess.Popen([sys.executable, "-m", "outreach.cli", *args, "--no-progress"],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


LINE_BYTES = 330  # about one outbox line for this campaign

def test_random_kills_then_resume_send_everyone_exactly_once(tmp_path: Path) -> None:
    """Each process is killed (SIGKILL) while it is sending: after a random number of further
    messages reached the outbox, i.e. at a random point inside a batch."""
    rng = random.Random(126)
    campaign = write_campaign(tmp_path, n=N, start="2024-07-01", end="2099-12-31",
                              daily_start="00:00", daily_end="23:59")
    db = Database(f"sqlite:///{tmp_path / 'home' / 'outreach.db'}")
    outbox = tmp_path / "home" / "outbox" / "test-campaign.jsonl"
    kills = 0
    finished = False
    for attempt in range(40):
        has_run = False
        if (tmp_path / "home" / "outreach.db").exists():
            db.upgrade()
            with db.engine.connect() as conn:
                has_run = conn.execute(select(func.count()).select_from(Run)).scalar_one() > 0
        args = ("campaign", "resume", str(campaign)) if has_run else (
            "campaign", "launch", str(campaign))
        proc = _cli(tmp_path, *args)
        if kills < KILLS:
            target = _size(outbox) + rng.randint(50, 2500) * LINE_BYTES
            deadline = time.monotonic() + 60
            while proc.poll() is None and _size(outbox) < target and time.monotonic() < deadline:
                time.sleep(0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            continue
        out, err = proc.communicate(timeout=120)
        if "no unfinished run" in err:  # a killed process had finished the run already
            finished = True
            break
        assert proc.returncode == 0, err
        if "sent" in out:
            finished = True
            break
    assert kills == KILLS
    assert finished
    # a line torn by a kill is cut off before the next write: the file is whole UTF-8 lines
    lines = [json.loads(x) for x in outbox.read_text("utf-8").splitlines()]
    per_number = Counter(line["to"] for line in lines)
    assert len(per_number) == N, "lost recipients"
    assert max(per_number.values()) == 1, "a recipient got the message twice"
    assert set(per_number) == set(numbers(N))
    with db.engine.connect() as conn:
        st = dict(conn.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        ids = Counter(conn.execute(select(Delivery.address)).scalars())
        reconciled = conn.execute(select(func.count()).select_from(DeliveryEvent).where(
            DeliveryEvent.source == "reconcile")).scalar_one()
    assert st == {"sent": N}
    assert max(ids.values()) == 1
    assert reconciled > 0, "no kill landed between marking a batch sending and recording it"

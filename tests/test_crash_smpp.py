"""kill -9 a CLI launch while it sends over SMPP, resume each time: nobody twice, and each kill
leaves no more ``unknown`` deliveries than the window of outstanding submit_sm."""

from __future__ import annotations

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
from tests.fakes.smpp_server import FakeSmsc, smsc  # noqa: F401
from tests.helpers import approve, load, write_campaign

from outreach.ledger.db import Database
from outreach.ledger.models import Delivery, Run

pytestmark = pytest.mark.slow
N = 1500
KILLS = 5
WINDOW = 10


def _cli(tmp: Path, smsc: FakeSmsc, *args: str) -> subprocess.Popen[str]:  # noqa: F811
    env = dict(os.environ, OUTREACH_HOME=str(tmp / "home"), **{
        f"OUTREACH_SMPP_{k.upper()}": str(v) for k, v in smsc.options(
            window=WINDOW, rate=5000, timeout=5).items()})
    return subprocess.Popen([sys.executable, "-m", "outreach.cli", *args, "--no-progress"],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_kill_9_while_sending_over_smpp_never_sends_twice(tmp_path: Path,
                                                          smsc: FakeSmsc) -> None:  # noqa: F811
    rng = random.Random(18)
    smsc.delay = 0.004
    phones = [f"0912{i:06d}" for i in range(N)]
    campaign = write_campaign(tmp_path, phones=phones, start="2024-07-01", end="2099-12-31",
                              daily_start="00:00", daily_end="23:59", channels="""
[[channels]]
channel = "sms"
sender = "STTTTCanTho"
gateway = "smpp"
""")
    db_path = tmp_path / "home" / "outreach.db"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    first = Database(f"sqlite:///{db_path}")
    first.upgrade()
    approve(first, load(campaign))  # SMPP reaches phones: a second person's approval
    first.dispose()
    kills, unknown_per_kill = 0, []
    for _attempt in range(30):
        has_run = False
        if db_path.exists():
            db = Database(f"sqlite:///{db_path}")
            db.upgrade()
            with db.engine.connect() as conn:
                has_run = conn.execute(select(func.count()).select_from(Run)).scalar_one() > 0
        args = ("campaign", "resume", str(campaign)) if has_run else (
            "campaign", "launch", str(campaign), "--yes")
        proc = _cli(tmp_path, smsc, *args)
        if kills < KILLS:
            target = len(smsc.messages) + rng.randint(50, 250)
            deadline = time.monotonic() + 60
            while proc.poll() is None and len(smsc.messages) < target and \
                    time.monotonic() < deadline:
                time.sleep(0.001)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            db = Database(f"sqlite:///{db_path}")
            with db.engine.connect() as conn:
                # started and never recorded: what reconciliation will make unknown
                unknown_per_kill.append(conn.execute(select(func.count()).where(
                    Delivery.status == "sending", Delivery.sending_at.is_not(None))).scalar_one())
            continue
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 1), err
        if "no unfinished run" in err or "sent" in out or proc.returncode == 0:
            break
    assert kills == KILLS
    print("unknown per kill:", unknown_per_kill)
    assert max(unknown_per_kill) <= WINDOW, unknown_per_kill
    assert sum(unknown_per_kill) > 0, "no kill landed while requests were in flight"
    per_number = Counter(m.to for m in smsc.messages)
    assert max(per_number.values()) == 1, "a recipient got the message twice"
    db = Database(f"sqlite:///{db_path}")
    with db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.address, Delivery.status,
                                   Delivery.provider_message_id)).all()
    by_status = Counter(r.status for r in rows)
    assert set(by_status) <= {"sent", "unknown"} and len(rows) == N, by_status
    assert by_status["unknown"] <= sum(unknown_per_kill)
    ids = {m.to: m.message_id for m in smsc.messages}
    for r in rows:
        if r.status == "sent":  # every sent row is on the SMSC under its id
            assert ids[r.address.lstrip("+")] == r.provider_message_id
    # nobody lost: whoever the SMSC does not have is an unknown the operator decides on
    missing = {r.address.lstrip("+") for r in rows} - set(ids)
    assert len(missing) <= by_status["unknown"]

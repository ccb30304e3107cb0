"""`campaign launch` shows its plan, then asks; --yes for scripts; a gateway that reaches phones
never starts without one or the other; the progress counts what was recorded; Ctrl-C exits 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from outreach.cli import main
from outreach.input import campaigns
from outreach.ledger.db import Database
from outreach.ledger.models import Delivery, Run
from outreach.sending import approvals, ops
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.web_helpers import World, make_world, open_campaign

ROOT = Path(__file__).resolve().parent.parent


def cli(db: Database, *args: str, input: str | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--database-url", str(db.url), "--wide", *args], input=input)
    return r.exit_code, r.stdout, r.stderr


def counts(db: Database, cid: str) -> dict[str, int]:
    with db.engine.connect() as conn:
        return dict(conn.execute(select(Delivery.status, func.count()).where(
            Delivery.campaign_id == cid).group_by(Delivery.status)).all())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def test_a_rehearsal_gateway_shows_the_plan_then_goes_ahead_without_a_terminal(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    real = ops.launch

    def counted(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw.get("dry_run", False))
        return real(*a, **kw)

    monkeypatch.setattr(ops, "launch", counted)
    code, out, err = cli(world.db, "campaign", "launch", str(world.mock_file), "--no-progress")
    assert code == 0, err
    # nobody is asked: the plan comes from the launch itself, the lists are read once
    assert calls == [False]
    plan, _, after = out.partition("going ahead without asking")
    assert "Campaign thu-mock — what the launch will send" in plan
    for row in ("recipients to send", "segments in all", "estimated cost", "gateway",
                "send window", "rows read", "rejected", "duplicates"):
        assert row in plan, row
    assert "01/01/2026" not in plan and "2026-01-01 – 2027-12-31, daily 00:00–23:59" in plan
    # the mock bills nothing: the cost is never shown as money spent
    assert "0 VND through mock (nothing is billed); through a provider: " in " ".join(plan.split())
    assert "run #1: sent 6" in after
    assert counts(world.db, "thu-mock") == {"sent": 6}


def test_the_operator_is_asked_and_no_sends_nothing(world: World,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """At a terminal the launch asks after the plan; "n" (or Enter: the default is no) sends
    nothing and creates no run; "y" sends."""
    import outreach.cli.campaign as campaign_cli

    monkeypatch.setattr(campaign_cli, "stdin_is_terminal", lambda: True)
    for answer in ("n\n", "\n"):
        code, out, err = cli(world.db, "campaign", "launch", str(world.mock_file),
                             "--no-progress", input=answer)
        assert code == 1, (out, err)
        assert "Send campaign thu-mock to 6 recipients through mock? [y/N]" in err
        assert "not confirmed: nothing was sent" in err
        assert "recipients to send" in out and "run #" not in out
        assert counts(world.db, "thu-mock") == {}
    with world.db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar_one() == 0
    code, out, err = cli(world.db, "campaign", "launch", str(world.mock_file), "--no-progress",
                         input="y\n")
    assert code == 0, err
    assert "run #1: sent 6" in out and counts(world.db, "thu-mock") == {"sent": 6}


def test_a_gateway_that_reaches_phones_needs_yes_when_no_one_can_answer(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    with world.db.engine.begin() as conn:  # maker–checker: prepared by olga, approved by anna
        approvals.prepare(conn, campaigns.load(world.twilio_file), operator="olga")
        approvals.approve(conn, campaigns.load(world.twilio_file), approver="anna")
    with FakeTwilio() as server:
        for k, v in {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                     "TWILIO_FROM": "SYTECANTHO", "OUTREACH_TWILIO_API_URL": server.base_url}.items():
            monkeypatch.setenv(k, v)
        code, out, err = cli(world.db, "--operator", "olga", "campaign", "launch",
                             str(world.twilio_file), "--no-progress")
        assert code == 1
        assert ("campaign that-twilio: gateway twilio reaches phones and nobody can confirm here "
                "(stdin is not a terminal); nothing was sent. Read the plan above, then run "
                "`outreach campaign launch that-twilio --yes`") in " ".join(err.split())
        assert "recipients to send" in out and "4" in out  # the plan came first
        assert server.creates() == [] and counts(world.db, "that-twilio") == {}
        code, out, err = cli(world.db, "--operator", "olga", "campaign", "launch",
                             str(world.twilio_file), "--no-progress", "--yes")
        assert code == 0, err
        assert len(server.creates()) == 4 and "run #1: sent 4" in out
        assert "what the launch will send" not in out  # --yes: no plan first, as before


def test_the_plan_refuses_before_asking_what_the_launch_would_refuse(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """No approval: the refusal comes before the plan and the question, nothing imported."""
    import outreach.cli.campaign as campaign_cli

    monkeypatch.setattr(campaign_cli, "stdin_is_terminal", lambda: True)
    for k, v in {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                 "TWILIO_FROM": "SYTECANTHO", "OUTREACH_TWILIO_API_URL": "http://127.0.0.1:9"
                 }.items():
        monkeypatch.setenv(k, v)
    code, out, err = cli(world.db, "campaign", "launch", str(world.twilio_file), "--no-progress",
                         input="y\n")
    assert code == 1 and "needs the approval of a second person" in err
    assert "[y/N]" not in err and "recipients to send" not in out


def test_the_progress_counts_what_the_ledger_recorded(world: World) -> None:
    """The bar moves with each group commit of outcomes (several updates, never down) and ends
    at the number of deliveries recorded as handed to the gateway; a run halted by its gateway
    ends the bar at what was recorded, not at the claimed batch."""
    spec = campaigns.load(open_campaign(world.mock_file.parent, "nhieu-tin", "mock", n=600,
                                        start=2000))
    seen: list[tuple[int, int]] = []
    res = ops.launch(world.db, spec, progress=lambda d, t: seen.append((d, t)),
                     gateway_options={"mock": {"latency": 0.002}})
    assert res.report is not None
    recorded = counts(world.db, "nhieu-tin")
    assert recorded == {"sent": 600}
    assert seen[0] == (0, 600) and seen[-1] == (600, 600) and len(seen) > 3
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    # a gateway that stops the run halfway: the bar stops at what was recorded
    spec2 = campaigns.load(open_campaign(world.mock_file.parent, "dung-giua", "mock", n=300,
                                         start=3000))
    seen2: list[tuple[int, int]] = []
    halt = {f"+849655{3000 + i:05d}": ["auth"] for i in range(150, 300)}
    res = ops.launch(world.db, spec2, progress=lambda d, t: seen2.append((d, t)),
                     gateway_options={"mock": {"script": halt}})
    assert res.report is not None and res.report.stopped
    handed = sum(n for s, n in counts(world.db, "dung-giua").items() if s != "queued")
    assert seen2 and seen2[-1][0] == handed and seen2[-1][1] == 300 and handed < 300


def test_the_cli_bar_ends_with_the_recorded_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    r = CliRunner().invoke(main, ["campaign", "launch", "cantho-2024-pcmbn"])
    assert r.exit_code == 0, r.stderr
    assert "2,098 of 2,098 messages recorded" in " ".join(r.stderr.split())
    db = Database(f"sqlite:///{Path(os.environ['OUTREACH_HOME']) / 'outreach.db'}")
    assert counts(db, "cantho-2024-pcmbn") == {"sent": 2098}


def test_ctrl_c_pauses_the_run_and_exits_130(tmp_path: Path) -> None:
    """SIGINT during a launch: the sends in flight are recorded, the run is paused, exit 130."""
    toml = open_campaign(tmp_path, "cham", "mock", n=400, rate=40)  # 10 s at 40 msg/s
    env = dict(os.environ, OUTREACH_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "outreach.cli", "campaign", "launch", str(toml),
                             "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    db_path = tmp_path / "home" / "outreach.db"
    deadline = time.monotonic() + 60
    started = False
    while time.monotonic() < deadline and proc.poll() is None and not started:
        time.sleep(0.2)
        if db_path.exists():
            db = Database(f"sqlite:///{db_path}")
            try:
                started = counts(db, "cham").get("sent", 0) > 20
            except Exception:  # noqa: BLE001 - the schema may still be being created
                started = False
            db.dispose()
    assert started, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "SIGINT: finishing the sends in flight, then pausing" in " ".join(err.split())
    db = Database(f"sqlite:///{db_path}")
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status)).scalar_one() == "paused"
    left = counts(db, "cham")
    assert left.get("queued", 0) > 0 and left.get("sent", 0) + left["queued"] == 400
    # the resume stopped the same way exits 130 too (a script must not read it as success)
    proc = subprocess.Popen([sys.executable, "-m", "outreach.cli", "campaign", "resume",
                             str(toml), "--no-progress"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent_before = left.get("sent", 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and \
            counts(db, "cham").get("sent", 0) < sent_before + 20:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    with db.engine.connect() as conn:
        assert conn.execute(select(Run.status)).scalar_one() == "paused"
    again = counts(db, "cham")
    assert again.get("queued", 0) > 0 and again.get("sent", 0) > sent_before


def test_the_runs_creation_is_written_into_the_database_before_sending(world: World) -> None:
    """The import and run creation are one transaction: its write-ahead log is checkpointed
    into the database file before the first batch, so sending never copies a launch's pages
    back (benchmarks/city_1m.py) and the -wal file is left empty."""
    spec = campaigns.load(open_campaign(world.mock_file.parent, "wal-gon", "mock", n=800,
                                        start=5000))
    db_file = Path(str(world.db.url)[len("sqlite:///"):])
    wal = db_file.with_name(db_file.name + "-wal")
    res = ops.launch(world.db, spec, dispatch=False)
    assert res.plan.created == 800
    assert wal.exists() and wal.stat().st_size == 0
    assert counts(world.db, "wal-gon") == {"queued": 800}

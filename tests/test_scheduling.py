"""Scheduled daily sends (issue #8), driven by a FakeClock: no test sleeps."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from outreach.input import campaigns
from outreach.ledger import states
from outreach.sending import ops, scheduling
from outreach.input import text as textmod
from outreach.cli import main
from outreach.clock import UTC, VN_TZ, FakeClock
from outreach.ledger.db import Database
from outreach.gateways.mock import MockGateway
from outreach.ledger.models import AuditEntry, Delivery, Run, Schedule
from tests.helpers import write_daily_campaign as write_campaign

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Toàn dân tích cực tham gia phòng, chống mua bán người."


# -- builders -----------------------------------------------------------------------------------
def phones(n: int) -> list[str]:
    """``n`` synthetic Viettel numbers, national form (the list files' usual spelling)."""
    return [f"09655500{i:02d}" for i in range(1, n + 1)]


def e164(national: str) -> str:
    return "+84" + national[1:]




def vn(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, ss, tzinfo=VN_TZ)


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'sched.db'}")
    d.upgrade()
    yield d
    d.dispose()


class Setup:
    """A registered campaign, a FakeClock and a MockGateway every tick sends through."""

    def __init__(self, db: Database, path: Path, registered_at: dt.datetime) -> None:
        self.db = db
        self.spec = campaigns.load(path)
        self.clock = FakeClock(registered_at)
        self.mock = MockGateway()
        scheduling.register(db, self.spec, operator="test", now=registered_at)

    def factory(self, names: dict[str, str]) -> dict[str, MockGateway]:
        return {ch: self.mock for ch in names}

    def tick_at(self, when: dt.datetime, **kw: object) -> list[scheduling.TickResult]:
        self.clock.set(when)
        return scheduling.tick(self.db, self.clock, gateways_factory=self.factory, **kw)

    def runs(self) -> list[Run]:
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(Run.__table__).order_by(Run.run_date, Run.id)).all())

    def sent(self) -> list[str]:
        return [m.to for m in self.mock.outbox]


def actions(results: list[scheduling.TickResult]) -> list[tuple[str, str | None]]:
    return [(r.action, r.day.isoformat() if r.day else None) for r in results]


# -- fire times -----------------------------------------------------------------------------------
def test_fire_times_for_the_whole_2024_campaign_window() -> None:
    spec = campaigns.load(ROOT / "campaigns" / "cantho-2024-pcmbn.toml")
    fs = scheduling.firings(spec)
    assert len(fs) == 92  # 31 July days + 31 August + 30 September
    assert fs[0].at == utc(2024, 7, 1, 1, 0) and fs[-1].at == utc(2024, 9, 30, 1, 0)
    assert {(f.at.hour, f.at.minute, f.at.tzinfo) for f in fs} == {(1, 0, UTC)}
    assert [f.day for f in fs] == [dt.date(2024, 7, 1) + dt.timedelta(days=i) for i in range(92)]
    assert [f.day for f in fs if f.key_date] == [dt.date(2024, 7, 30)]
    assert scheduling.fire_times(spec) == [f.at for f in fs]
    # bounds are instants, inclusive
    assert scheduling.fire_times(spec, utc(2024, 7, 30, 1, 0), utc(2024, 8, 1, 0, 59)) == [
        utc(2024, 7, 30, 1, 0), utc(2024, 7, 31, 1, 0)]
    assert scheduling.next_firing(spec, utc(2024, 7, 30, 1, 0)).at == utc(2024, 7, 31, 1, 0)
    assert scheduling.next_firing(spec, utc(2024, 9, 30, 1, 0)) is None
    with pytest.raises(ValueError):
        scheduling.fire_times(spec, dt.datetime(2024, 7, 1))


@pytest.fixture
def los_angeles_tz():
    """The server's local time zone set to America/Los_Angeles for the test, then restored."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


CASE_DATES = [dt.date(2025, 3, 8), dt.date(2025, 3, 9), dt.date(2025, 3, 10),
              dt.date(2025, 11, 1), dt.date(2025, 11, 2), dt.date(2025, 11, 3)]


def test_server_in_los_angeles_still_fires_at_0100_utc(tmp_path: Path, los_angeles_tz: None) -> None:
    # the case from the field: the fault shows as 16:00 UTC, then 15:00 UTC after the US change
    assert time.strftime("%Z", time.localtime(1741435200)) in ("PST", "PDT")
    spec = campaigns.load(write_campaign(tmp_path, start="2025-03-01", end="2025-11-30",
                                         key_dates="[]"))
    times = {t.date(): t for t in scheduling.fire_times(spec)}
    for day in CASE_DATES:
        assert times[day] == dt.datetime.combine(day, dt.time(1, 0), tzinfo=UTC), day
        assert times[day].astimezone(VN_TZ).time() == dt.time(8, 0)
    # APScheduler's trigger for `scheduler run`, time zone explicit, agrees
    trigger = scheduling.cron_trigger(spec)
    for day in CASE_DATES:
        before = dt.datetime.combine(day, dt.time(0, 0), tzinfo=UTC)
        nxt = trigger.get_next_fire_time(None, before)
        assert nxt.astimezone(UTC) == dt.datetime.combine(day, dt.time(1, 0), tzinfo=UTC), day


def test_server_in_los_angeles_tick_creates_each_day_at_0100_utc(
        db: Database, tmp_path: Path, los_angeles_tz: None) -> None:
    s = Setup(db, write_campaign(tmp_path, start="2025-03-01", end="2025-11-30", key_dates="[]"),
              utc(2025, 3, 7, 0, 0))
    # 7 March: the day before the case starts is simply due at its own 01:00 UTC
    assert actions(s.tick_at(utc(2025, 3, 7, 1, 0))) == [("created", "2025-03-07")]
    for day in CASE_DATES[:3]:
        before = dt.datetime.combine(day, dt.time(0, 59), tzinfo=UTC)
        at = dt.datetime.combine(day, dt.time(1, 0), tzinfo=UTC)
        assert s.tick_at(before) == [], day  # 07:59 in Vietnam: not yet
        res = s.tick_at(at)
        assert [(r.action, r.day) for r in res] == [("nothing-to-send", day)]
        assert s.tick_at(at.replace(hour=16)) == []  # the faulty zone's time fires nothing
    due = {r.run_date: r.due_at for r in s.runs()}
    assert due[dt.date(2025, 3, 10)] == utc(2025, 3, 10, 1, 0)
    assert sorted(s.sent()) == [e164(p) for p in phones(3)]  # once mode: all on the first day


# -- due_runs (pure) ---------------------------------------------------------------------------------
def test_due_runs_never_bursts_even_with_a_long_lateness_limit(tmp_path: Path) -> None:
    spec = campaigns.load(write_campaign(tmp_path, lateness=3000))
    due = scheduling.due_runs(spec, vn(2024, 7, 3, 8, 30), since=vn(2024, 7, 1, 0, 0))
    assert [(d.firing.day.isoformat(), d.action) for d in due] == [
        ("2024-07-01", "missed"), ("2024-07-02", "missed"), ("2024-07-03", "run")]
    assert "never sent in a burst" in due[0].reason
    assert due[2].late_by == dt.timedelta(minutes=30)
    # runs that exist are not owed again; a run today means the older days are only recorded
    due = scheduling.due_runs(spec, vn(2024, 7, 3, 8, 30), since=vn(2024, 7, 1, 0, 0),
                              existing={"day:2024-07-03", "day:2024-07-01"})
    assert [(d.firing.day.isoformat(), d.action) for d in due] == [("2024-07-02", "missed")]


def test_due_runs_owes_nothing_before_the_schedule_existed(tmp_path: Path) -> None:
    spec = campaigns.load(write_campaign(tmp_path, lateness=120))
    # added at 11:00 on 30 July: that day's 08:00 is 180 min back, past the limit: not owed
    assert scheduling.due_runs(spec, vn(2024, 7, 30, 11, 0), since=vn(2024, 7, 30, 11, 0)) == []
    # added at 09:00: the 08:00 firing is within the limit and runs
    due = scheduling.due_runs(spec, vn(2024, 7, 30, 9, 0), since=vn(2024, 7, 30, 9, 0))
    assert [(d.firing.run_key, d.action) for d in due] == [("day:2024-07-30", "run")]
    # before the window and after it: nothing
    assert scheduling.due_runs(spec, vn(2024, 6, 30, 9, 0), since=vn(2024, 6, 1)) == []
    assert scheduling.due_runs(spec, vn(2024, 10, 5, 9, 0), since=vn(2024, 10, 1)) == []


# -- tick ---------------------------------------------------------------------------------------------
def test_tick_sends_the_day_once_with_the_dispatcher(db: Database, tmp_path: Path) -> None:
    s = Setup(db, write_campaign(tmp_path), vn(2024, 7, 29, 15, 0))
    assert s.tick_at(vn(2024, 7, 30, 7, 59, 59)) == []
    res = s.tick_at(vn(2024, 7, 30, 8, 0, 5))
    assert actions(res) == [("created", "2024-07-30")]
    assert res[0].report.counts == {"sent": 3} and res[0].report.stopped is None
    assert sorted(s.sent()) == [e164(p) for p in phones(3)]
    [run] = s.runs()
    assert (run.run_key, run.kind, run.status, run.run_date) == (
        "day:2024-07-30", "scheduled", "completed", dt.date(2024, 7, 30))
    assert run.due_at == utc(2024, 7, 30, 1, 0)
    # later the same day, and a restart: nothing more
    assert s.tick_at(vn(2024, 7, 30, 8, 1)) == []
    assert s.tick_at(vn(2024, 7, 30, 21, 0)) == []
    assert len(s.sent()) == 3
    with db.engine.connect() as conn:
        details = conn.execute(select(AuditEntry.details).where(
            AuditEntry.action == "scheduled-run")).scalars().all()
    assert [(d["day"], d["status"], d["deliveries"]) for d in details] == [
        ("2024-07-30", "created", 3)]


def test_downtime_within_the_lateness_limit_gives_one_run(db: Database, tmp_path: Path) -> None:
    s = Setup(db, write_campaign(tmp_path, lateness=120), vn(2024, 7, 29, 15, 0))
    # the scheduler was down at 08:00 and comes back at 09:30: 90 min late, limit 120
    res = s.tick_at(vn(2024, 7, 30, 9, 30))
    assert actions(res) == [("created", "2024-07-30")]
    assert res[0].report.counts == {"sent": 3}
    assert s.tick_at(vn(2024, 7, 30, 9, 31)) == []
    assert [(r.run_key, r.status) for r in s.runs()] == [("day:2024-07-30", "completed")]
    assert len(s.sent()) == 3


def test_downtime_beyond_the_limit_records_missed_days_without_a_burst(
        db: Database, tmp_path: Path) -> None:
    s = Setup(db, write_campaign(tmp_path, lateness=120), vn(2024, 7, 1, 7, 0))
    # down from before the first firing until 10:30 on 4 July (150 min late)
    res = s.tick_at(vn(2024, 7, 4, 10, 30))
    assert actions(res) == [("missed", "2024-07-01"), ("missed", "2024-07-02"),
                            ("missed", "2024-07-03"), ("missed", "2024-07-04")]
    assert s.sent() == []
    assert "lateness limit of 120 min" in res[-1].detail and "150 min late" in res[-1].detail
    # the next day fires normally: one run, everyone once
    res = s.tick_at(vn(2024, 7, 5, 8, 0, 30))
    assert actions(res) == [("created", "2024-07-05")]
    assert sorted(s.sent()) == [e164(p) for p in phones(3)]
    # shown in `outreach runs list`
    out = CliRunner().invoke(main, ["--database-url", str(db.url), "runs", "list",
                                    "--format", "json"])
    assert out.exit_code == 0, out.output
    listed = [(r["run_date"], r["kind"], r["status"]) for r in json.loads(out.output)]
    assert listed == [("2024-07-01", "scheduled", "missed"), ("2024-07-02", "scheduled", "missed"),
                      ("2024-07-03", "scheduled", "missed"), ("2024-07-04", "scheduled", "missed"),
                      ("2024-07-05", "scheduled", "completed")]


def test_restart_after_days_down_sends_only_today(db: Database, tmp_path: Path) -> None:
    s = Setup(db, write_campaign(tmp_path, mode="repeat", every=1), vn(2024, 7, 1, 7, 0))
    res = s.tick_at(vn(2024, 7, 4, 9, 0))  # days 1-3 past, day 4 within the limit
    assert actions(res) == [("missed", "2024-07-01"), ("missed", "2024-07-02"),
                            ("missed", "2024-07-03"), ("created", "2024-07-04")]
    assert Counter(s.sent()) == {e164(p): 1 for p in phones(3)}  # one run, not four


def test_pause_and_resume(db: Database, tmp_path: Path) -> None:
    s = Setup(db, write_campaign(tmp_path, mode="repeat", every=1), vn(2024, 7, 1, 7, 0))
    assert actions(s.tick_at(vn(2024, 7, 1, 8, 0, 10))) == [("created", "2024-07-01")]
    assert scheduling.set_paused(db, s.spec.id, True, now=vn(2024, 7, 1, 12, 0)) is True
    assert scheduling.set_paused(db, s.spec.id, True, now=vn(2024, 7, 1, 12, 1)) is False
    assert s.tick_at(vn(2024, 7, 2, 8, 0, 10)) == []  # paused: nothing, not even "missed"
    assert s.tick_at(vn(2024, 7, 2, 9, 0)) == []
    assert scheduling.set_paused(db, s.spec.id, False, now=vn(2024, 7, 3, 7, 0)) is True
    assert actions(s.tick_at(vn(2024, 7, 3, 8, 0, 10))) == [("created", "2024-07-03")]
    assert [r.run_key for r in s.runs()] == ["day:2024-07-01", "day:2024-07-03"]
    assert Counter(s.sent()) == {e164(p): 2 for p in phones(3)}
    with db.engine.connect() as conn:
        acts = [d["action"] for d in conn.execute(select(AuditEntry.details).where(
            AuditEntry.action == "schedule").order_by(AuditEntry.id)).scalars()]
    assert acts == ["add", "pause", "resume"]


def test_daily_cap_spreads_the_list_over_days_nobody_twice(db: Database, tmp_path: Path) -> None:
    s = Setup(db, write_campaign(tmp_path, numbers=phones(5), cap=2), vn(2024, 7, 1, 7, 0))
    per_day = []
    for day in range(1, 5):
        before = len(s.sent())
        res = s.tick_at(vn(2024, 7, day, 8, 0, 30))
        per_day.append((res[0].action, len(s.sent()) - before))
    assert per_day == [("created", 2), ("created", 2), ("created", 1), ("nothing-to-send", 0)]
    assert Counter(s.sent()) == {e164(p): 1 for p in phones(5)}
    assert [(r.run_key, r.status) for r in s.runs()] == [
        ("day:2024-07-01", "completed"), ("day:2024-07-02", "completed"),
        ("day:2024-07-03", "completed"), ("day:2024-07-04", "completed")]
    assert s.runs()[-1].status_reason.startswith("nothing to send")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_db(request: pytest.FixtureRequest, tmp_path: Path):
    """The same test on SQLite and on PostgreSQL (skipped when no server answers)."""
    if request.param == "sqlite":
        d = Database(f"sqlite:///{tmp_path / 'sched.db'}")
        d.upgrade()
        yield d
        d.dispose()
        return
    pg = pytest.importorskip("tests.pg")
    with pg.temp_schema("outreach_sched") as url:
        d = Database(url)
        d.upgrade()
        yield d
        d.dispose()


def test_two_ticks_at_the_same_instant_create_one_run(any_db: Database, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = any_db
    s = Setup(db, write_campaign(tmp_path), vn(2024, 7, 29, 15, 0))
    s.clock.set(vn(2024, 7, 30, 8, 0, 1))
    dbs = [Database(db.url) for _ in range(2)]  # two engines, as two processes have
    # both processes decide the day is due before either creates the run: the worst case
    decided = threading.Barrier(2, timeout=20)
    original = scheduling.due_runs

    def due_then_wait(*a: object, **kw: object) -> list[scheduling.Due]:
        out = original(*a, **kw)
        decided.wait()
        return out

    monkeypatch.setattr(scheduling, "due_runs", due_then_wait)
    results: list[scheduling.TickResult] = []
    errors: list[BaseException] = []

    def worker(d: Database) -> None:
        try:
            results.extend(scheduling.tick(d, s.clock, gateways_factory=s.factory))
        except BaseException as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(d,)) for d in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for d in dbs:
        d.dispose()
    assert errors == []
    assert sorted(r.action for r in results) == ["created", "taken"]
    assert [r.run_key for r in s.runs()] == ["day:2024-07-30"]
    assert Counter(s.sent()) == {e164(p): 1 for p in phones(3)}  # three send requests in all


def test_recipient_never_gets_the_campaign_twice_on_one_day(db: Database, tmp_path: Path) -> None:
    path = write_campaign(tmp_path, mode="repeat", every=1)
    s = Setup(db, path, vn(2024, 7, 29, 15, 0))
    s.clock.set(vn(2024, 7, 30, 7, 30))
    launched = ops.launch(db, s.spec, clock=s.clock, gateways={"sms": s.mock})
    assert launched.report.counts == {"sent": 3}
    res = s.tick_at(vn(2024, 7, 30, 8, 0, 10))
    assert actions(res) == [("created", "2024-07-30")]
    assert "3 skipped: already sent today" in res[0].detail
    assert len(s.sent()) == 3
    with db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.status, Delivery.error_reason)
                            .where(Delivery.run_id == res[0].run_id)).all()
    assert [tuple(r) for r in rows] == [(states.SKIPPED, "already-sent-today")] * 3
    # the next Vietnamese day they are due again
    s.tick_at(vn(2024, 7, 31, 8, 0, 10))
    assert Counter(s.sent()) == {e164(p): 2 for p in phones(3)}


def test_window_closed_run_waits_and_continues_when_it_opens(db: Database, tmp_path: Path) -> None:
    # send at 21:59, window closes at 22:00: part of a rate-limited list waits for 07:00
    s = Setup(db, write_campaign(tmp_path, send_time="21:59", lateness=600), vn(2024, 7, 1, 7, 0))
    s.mock.latency = 30.0
    s.mock._sleep = s.clock.sleep  # each send takes 30 s of fake time
    res = s.tick_at(vn(2024, 7, 1, 21, 59))
    assert res[0].report.stopped == "window" and len(s.sent()) == 2
    assert s.runs()[0].status == "waiting"
    assert s.tick_at(vn(2024, 7, 2, 6, 59)) == []  # still closed: not touched
    res = s.tick_at(vn(2024, 7, 2, 7, 0, 1))
    assert actions(res) == [("continued", "2024-07-01")]
    assert Counter(s.sent()) == {e164(p): 1 for p in phones(3)}
    assert s.runs()[0].status == "completed"


def test_interrupted_run_is_continued_by_the_next_tick(db: Database, tmp_path: Path) -> None:
    s = Setup(db, write_campaign(tmp_path), vn(2024, 7, 29, 15, 0))
    stop = threading.Event()
    s.mock.latency = 0.001
    s.mock._sleep = lambda _s: stop.set()  # SIGTERM arrives during the first send
    res = s.tick_at(vn(2024, 7, 30, 8, 0, 5), stop_event=stop)
    assert res[0].report.stopped == "interrupted" and len(s.sent()) == 1
    [run] = s.runs()
    assert (run.status, run.status_reason) == ("paused", scheduling.INTERRUPTED_REASON)
    s.mock.latency = 0.0
    res = s.tick_at(vn(2024, 7, 30, 8, 1))  # the restarted scheduler
    assert actions(res) == [("continued", "2024-07-30")]
    assert Counter(s.sent()) == {e164(p): 1 for p in phones(3)}
    # a run the operator paused is left alone
    with db.engine.begin() as conn:
        conn.execute(update(Run).values(status="paused", status_reason="paused by an operator"))
    assert s.tick_at(vn(2024, 7, 30, 8, 2)) == []


def _crash_leftover(db: Database, owner: str) -> None:
    """Make the day's run look like its process died between two batches."""
    with db.engine.begin() as conn:
        conn.execute(update(Run).values(status="running", status_reason=None,
                                        options={"dispatcher": {"owner": owner,
                                                                "claimed_at": "2024-07-30T01:00:05+00:00"}}))
        ids = conn.execute(select(Delivery.id).order_by(Delivery.id)).scalars().all()
        conn.execute(update(Delivery).where(Delivery.id.in_(ids[1:])).values(
            status=states.QUEUED, sent_at=None, sending_at=None))


def test_run_left_running_by_a_crashed_process_is_recovered(db: Database, tmp_path: Path) -> None:
    s = Setup(db, write_campaign(tmp_path), vn(2024, 7, 29, 15, 0))
    s.tick_at(vn(2024, 7, 30, 8, 0, 5))
    dead = f"{socket.gethostname()}:{2 ** 22 + 12345}:deadbeef"  # above pid_max: no such process
    _crash_leftover(db, dead)
    s.mock = MockGateway()
    assert s.tick_at(vn(2024, 7, 30, 8, 3)) == []  # activity 3 min ago: maybe still alive
    res = s.tick_at(vn(2024, 7, 30, 8, 6))  # 6 min without activity, owner gone
    assert actions(res) == [("continued", "2024-07-30")]
    assert sorted(s.sent()) == [e164(p) for p in phones(3)[1:]]
    assert s.runs()[0].status == "completed"


def test_run_of_a_live_scheduler_is_not_taken_over(db: Database, tmp_path: Path) -> None:
    s = Setup(db, write_campaign(tmp_path), vn(2024, 7, 29, 15, 0))
    s.tick_at(vn(2024, 7, 30, 8, 0, 5))
    live = f"{socket.gethostname()}:{os.getppid()}:cafe0001"  # pytest's parent is alive
    _crash_leftover(db, live)
    s.mock = MockGateway()
    assert s.tick_at(vn(2024, 7, 30, 9, 0)) == []
    assert s.sent() == []


def test_changed_text_is_refused_and_the_day_not_sent(db: Database, tmp_path: Path) -> None:
    path = write_campaign(tmp_path, mode="repeat", every=1)
    s = Setup(db, path, vn(2024, 7, 29, 15, 0))
    s.tick_at(vn(2024, 7, 30, 8, 0, 5))
    new = "Toàn dân tích cực tham gia phòng, chống mua bán người!"
    body = path.read_text(encoding="utf-8").replace(json.dumps(TEXT, ensure_ascii=False),
                                                    json.dumps(new, ensure_ascii=False))
    path.write_text(body.replace(textmod.text_sha256(TEXT), textmod.text_sha256(new)),
                    encoding="utf-8")
    res = s.tick_at(vn(2024, 7, 31, 8, 0, 5))
    assert actions(res) == [("error", None)]
    assert "message text changed" in res[0].detail
    assert len(s.sent()) == 3 and [r.run_key for r in s.runs()] == ["day:2024-07-30"]


def test_missing_campaign_file_is_one_error_line(db: Database, tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    s = Setup(db, path, vn(2024, 7, 29, 15, 0))
    path.unlink()
    res = s.tick_at(vn(2024, 7, 30, 8, 0, 5))
    assert actions(res) == [("error", None)] and "schedule add" in res[0].detail


# -- the commands ---------------------------------------------------------------------------------------
def test_schedule_commands(db: Database, tmp_path: Path) -> None:
    today = dt.datetime.now(VN_TZ).date()
    path = write_campaign(tmp_path, start=today.isoformat(),
                          end=(today + dt.timedelta(days=10)).isoformat(), key_dates="[]",
                          send_time="07:00")
    runner = CliRunner()
    base = ["--database-url", str(db.url), "--operator", "cán bộ"]

    out = runner.invoke(main, base + ["schedule", "add", str(path)])
    assert out.exit_code == 0, out.output
    assert "schedule added" in out.output and "07:00 Asia/Ho_Chi_Minh" in out.output
    out = runner.invoke(main, base + ["schedule", "list", "--format", "json"])
    [row] = json.loads(out.output)
    assert (row["campaign"], row["paused"], row["send_time"]) == ("lich-hang-ngay", False, "07:00")
    nxt = dt.datetime.fromisoformat(row["next_fire_utc"])
    assert (nxt.hour, nxt.minute) == (0, 0)  # 07:00 in Vietnam is 00:00 UTC
    assert dt.datetime.fromisoformat(row["next_fire_local"]).hour == 7
    assert row["file"] == str(path.resolve())
    out = runner.invoke(main, base + ["schedule", "list"])
    assert out.exit_code == 0 and "lich-hang-ngay" in out.output

    assert runner.invoke(main, base + ["schedule", "pause", "lich-hang-ngay"]).exit_code == 0
    with db.engine.connect() as conn:
        assert conn.execute(select(Schedule.paused)).scalar() is True
    out = runner.invoke(main, base + ["schedule", "add", "lich-hang-ngay"])  # by id, stored path
    assert out.exit_code == 0 and "schedule updated" in out.output and "paused" in out.output
    assert runner.invoke(main, base + ["schedule", "resume", "lich-hang-ngay"]).exit_code == 0
    with db.engine.connect() as conn:
        assert conn.execute(select(Schedule.paused)).scalar() is False
    assert runner.invoke(main, base + ["schedule", "remove", "lich-hang-ngay"]).exit_code == 0
    out = runner.invoke(main, base + ["schedule", "pause", "lich-hang-ngay"])
    assert out.exit_code == 1 and "has no schedule" in out.output
    assert "Traceback" not in out.output
    with db.engine.connect() as conn:
        who = set(conn.execute(select(AuditEntry.operator).where(
            AuditEntry.action == "schedule")).scalars())
    assert who == {"cán bộ"}


def test_schedule_add_refuses_an_ended_campaign_without_traceback(db: Database,
                                                                  tmp_path: Path) -> None:
    path = write_campaign(tmp_path, start="2020-01-01", end="2020-01-31", key_dates="[]")
    out = CliRunner().invoke(main, ["--database-url", str(db.url), "schedule", "add", str(path)])
    assert out.exit_code == 1
    assert "ended on 2020-01-31" in out.output and "Traceback" not in out.output
    out = CliRunner().invoke(main, ["--database-url", str(db.url), "schedule", "add",
                                    str(tmp_path / "nope.toml")])
    assert out.exit_code == 1 and "file not found" in out.output

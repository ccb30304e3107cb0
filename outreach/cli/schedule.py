"""``outreach schedule ...`` (registered daily sends) and ``outreach scheduler run`` (the process)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import threading
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from outreach.input import campaigns
from outreach.sending import scheduling
from outreach.cli import Ctx, console, err_console, pass_ctx
from outreach.i18n import N_, _, current, day, ngettext, number, when as show_when
from outreach.sending import reasons
from outreach.clock import UTC, VN_TZ
from outreach.ledger.models import Schedule

log = logging.getLogger(__name__)

SCHEDULER_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def _vn(when: dt.datetime | None) -> str:
    """Vietnam's time: ``08:00 ngày 30/07/2024 +07`` (vi), ``2024-07-30 08:00 +07`` (en)."""
    if not when:
        return "-"
    if current() == "vi":
        return f"{show_when(when)} +07"
    return f"{when.astimezone(VN_TZ):%Y-%m-%d %H:%M} +07"


def _utc(when: dt.datetime | None) -> str:
    """UTC: ``01:00 ngày 30/07/2024 UTC`` (vi), ``2024-07-30 01:00 UTC`` (en)."""
    if not when:
        return "-"
    utc = when.astimezone(UTC)
    if current() == "vi":
        return f"{utc:%H:%M} ngày {utc:%d/%m/%Y} UTC"
    return f"{utc:%Y-%m-%d %H:%M} UTC"


def _stamp() -> str:
    from outreach.i18n import stamp

    return f"[{stamp()}]"


#: What registering did (scheduling.register), as shown.
ACTIONS = {"added": N_("added"), "updated": N_("updated")}


@click.group()
def schedule() -> None:
    """Register campaigns for daily sends at their send time in Asia/Ho_Chi_Minh."""


@schedule.command("add")
@click.argument("campaign_ref", metavar="CAMPAIGN_FILE_OR_ID")
@pass_ctx
def add(c: Ctx, campaign_ref: str) -> None:
    """Validate the campaign file and register its daily schedule (send time, window dates,
    lateness limit and daily cap come from the file, which is read again at every firing)."""
    path = scheduling.resolve_campaign_file(c.db, campaign_ref)
    spec = campaigns.load(path)
    now = dt.datetime.now(UTC)
    action, first = scheduling.register(c.db, spec, operator=c.operator, now=now)
    w, s = spec.window, spec.schedule
    console.print(_("[green]schedule {action}:[/green] {id} daily at {time} {tz}, {start} – "
                    "{end}").format(action=_(ACTIONS.get(action, action)), id=spec.id,
                                    time=f"{s.send_time:%H:%M}", tz=w.timezone,
                                    start=day(w.start_date), end=day(w.end_date)))
    console.print(_("file: {path}").format(path=path), soft_wrap=True)
    who = (_("every recipient once") if s.mode == "once"
           else ngettext("each recipient every {n} day", "each recipient every {n} days",
                         s.repeat_every_days or 0).format(n=s.repeat_every_days))
    cap = (ngettext(", at most {n} message a day", ", at most {n} messages a day",
                    s.daily_cap).format(n=number(s.daily_cap)) if s.daily_cap else "")
    console.print(_("sends: {who}{cap}; lateness limit {minutes} min; daily window "
                    "{opens}–{closes}").format(who=who, cap=cap,
                                               minutes=w.lateness_limit_minutes,
                                               opens=f"{w.daily_start:%H:%M}",
                                               closes=f"{w.daily_end:%H:%M}"))
    if first is not None:
        note = ""
        if first.at <= now:
            note = _(" (already passed, within the lateness limit: sent at the scheduler's next "
                     "check)")
        console.print(_("first firing: {local} = {utc}{note}").format(
            local=_vn(first.at), utc=_utc(first.at), note=note))
    if action == "updated":
        with c.db.engine.connect() as conn:
            paused = conn.execute(select(Schedule.paused).where(
                Schedule.campaign_id == spec.id)).scalar()
        if paused:
            console.print(_("[yellow]the schedule is paused[/yellow]: `outreach schedule resume "
                            "{id}` to send again").format(id=spec.id))
    console.print(_("runs are sent by `outreach scheduler run` (keep one running, e.g. as a "
                    "systemd service)"))


@schedule.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def list_(c: Ctx, fmt: str) -> None:
    """Registered schedules: next firing in Vietnam's time and UTC, paused, last run."""
    infos = scheduling.list_schedules(c.db)
    if fmt == "json":
        data = [{"campaign": i.campaign_id, "name": i.name, "paused": i.paused,
                 "send_time": i.send_time.strftime("%H:%M") if i.send_time else None,
                 "timezone": i.timezone,
                 "start_date": i.start_date.isoformat() if i.start_date else None,
                 "end_date": i.end_date.isoformat() if i.end_date else None,
                 "next_fire_utc": i.next_fire.isoformat() if i.next_fire else None,
                 "next_fire_local": (i.next_fire.astimezone(VN_TZ).isoformat()
                                     if i.next_fire else None),
                 "active_since": i.active_since.isoformat(), "file": i.file,
                 "last_run": ({**i.last_run, "run_date": i.last_run["run_date"].isoformat()}
                              if i.last_run else None),
                 "error": i.error} for i in infos]
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    if not infos:
        console.print(_("no schedules: `outreach schedule add CAMPAIGN_FILE` registers one"))
        return
    t = Table(title=_("Schedules"), show_lines=True)
    t.add_column(_("campaign"), overflow="fold")
    t.add_column(_("daily at, dates"), no_wrap=True)
    t.add_column(_("next firing"), no_wrap=True)
    t.add_column(_("last run"), min_width=14)
    for i in infos:
        last = "-"
        if i.last_run:
            lr = i.last_run
            last = f"{day(lr['run_date'])}\n#{lr['id']} {_(lr['status'])}"
            if lr["status_reason"] and lr["status"] in ("missed", "waiting", "paused", "expired"):
                last += f": {reasons.run_reason(lr['status_reason'])}"
        if i.error:
            t.add_row(i.campaign_id, "-", f"[yellow]{_('paused')}[/yellow]" if i.paused else "-",
                      escape(last))
            t.add_row("", f"[red]{escape(i.error)}[/red]", "", "")
            continue
        zone = "+07" if i.timezone == "Asia/Ho_Chi_Minh" else i.timezone
        nxt = f"{_vn(i.next_fire)}\n{_utc(i.next_fire)}" if i.next_fire else _("campaign ended")
        if i.paused:
            nxt = f"[yellow]{_('paused')}[/yellow]\n" + nxt
        t.add_row(i.campaign_id,
                  f"{i.send_time:%H:%M} {zone}\n{day(i.start_date)}\n{day(i.end_date)}",
                  nxt, escape(last))
    console.print(t)


@schedule.command("pause")
@click.argument("campaign_id")
@pass_ctx
def pause(c: Ctx, campaign_id: str) -> None:
    """Stop the daily sends of a campaign (runs already going on are not touched; use
    `outreach campaign pause` for those). Paused days are not recorded as missed."""
    changed = scheduling.set_paused(c.db, campaign_id, True, operator=c.operator)
    console.print((_("schedule of {id} paused") if changed else
                   _("schedule of {id} was already paused")).format(id=campaign_id))


@schedule.command("resume")
@click.argument("campaign_id")
@pass_ctx
def resume(c: Ctx, campaign_id: str) -> None:
    """Send daily again from now on (today's firing too, if within the lateness limit)."""
    changed = scheduling.set_paused(c.db, campaign_id, False, operator=c.operator)
    console.print((_("schedule of {id} resumed") if changed else
                   _("schedule of {id} was not paused")).format(id=campaign_id))


@schedule.command("remove")
@click.argument("campaign_id")
@pass_ctx
def remove(c: Ctx, campaign_id: str) -> None:
    """Delete the schedule of a campaign; its runs and deliveries stay."""
    scheduling.remove(c.db, campaign_id, operator=c.operator)
    console.print(_("schedule of {id} removed").format(id=campaign_id))


# -- the scheduler process ----------------------------------------------------------------------
@click.group()
def scheduler() -> None:
    """The scheduler process that sends registered campaigns at their daily time."""


def _say(msg: str, err: bool = False) -> None:
    """One timestamped line (rich markup), never wrapped: under systemd each line is one
    journal entry."""
    (err_console if err else console).print(f"{_stamp()} {msg}", soft_wrap=True)


def _print_results(results: list[scheduling.TickResult],
                   last_errors: dict[str, str] | None = None) -> None:
    """One line per result. With ``last_errors`` (the foreground loop), an error repeated at
    every poll is printed once, and its end is announced."""
    if last_errors is not None:
        failing = {r.campaign_id for r in results if r.action == "error"}
        for cid in [c for c in last_errors if c not in failing]:
            _say(_("{id}: the error is gone").format(id=cid))
            del last_errors[cid]
    for r in results:
        if last_errors is not None and r.action == "error":
            if last_errors.get(r.campaign_id) == r.detail:
                continue
            last_errors[r.campaign_id] = r.detail or ""
        style = {"error": "red", "missed": "yellow", "created": "green",
                 "continued": "green"}.get(r.action)
        line = escape(r.describe())
        _say(f"[{style}]{line}[/{style}]" if style else line, err=r.action == "error")


@scheduler.command("run")
@click.option("--gateway", help="Gateway for every channel (mock, outbox, twilio, zalo); "
              "default: each campaign's own, as a launch chooses.")
@click.option("--once", is_flag=True, help="Do one check (create/continue/record what is due) "
              "and exit: for tests and for cron users.")
@click.option("--poll", type=click.FloatRange(min=1.0), default=60.0, show_default=True,
              metavar="SECONDS", help="Seconds between checks of the database.")
@pass_ctx
def run(c: Ctx, gateway: str | None, once: bool, poll: float) -> None:
    """Run in the foreground until SIGTERM/SIGINT, firing each registered campaign at its send
    time (Asia/Ho_Chi_Minh, whatever the server's time zone) and checking the database every
    --poll seconds. Safe to restart and to run twice: the database decides what is due."""
    db = c.db
    if once:
        from outreach.cli.campaign import graceful_stop

        with graceful_stop() as stop:
            results = scheduling.tick(db, gateway=gateway, operator=c.operator, stop_event=stop)
        _print_results(results)
        if not results:
            _say(_("nothing due"))
        if any(r.action == "error" for r in results):
            raise SystemExit(1)
        return
    _run_forever(c, gateway, poll)


def _run_forever(c: Ctx, gateway: str | None, poll: float) -> None:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        # "skipped: maximum number of running instances reached" while a long run is sending
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
    db = c.db
    stop = threading.Event()
    jobs_lock = threading.Lock()  # held while jobs are changed, so shutdown never waits on it
    cron: dict[str, tuple[Any, ...]] = {}
    last_errors: dict[str, str] = {}
    sched = BlockingScheduler(
        timezone=SCHEDULER_TZ, executors={"default": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(poll)})

    def do_tick(trigger: str, campaign_id: str | None = None) -> None:
        if stop.is_set():  # a signal that came before start() had nothing to shut down
            threading.Thread(target=stop_scheduler, name="scheduler-shutdown").start()
            return
        if campaign_id:
            _say(_("firing {id} ({trigger})").format(id=campaign_id, trigger=_(trigger)))
        try:
            results = scheduling.tick(db, gateway=gateway, operator=c.operator, stop_event=stop,
                                      campaign_ids={campaign_id} if campaign_id else None)
        except Exception as exc:  # never let one bad check stop the process
            log.debug("tick failed", exc_info=True)
            _say(_("[red]error:[/red] {kind}: {message}").format(
                kind=type(exc).__name__, message=escape(str(exc))), err=True)
            return
        if campaign_id is None:
            _print_results(results, last_errors)
        else:
            _print_results(results)
        sync_jobs()

    def sync_jobs() -> None:
        """One CronTrigger per active schedule, in the campaign's time zone (explicit)."""
        try:
            infos = [i for i in scheduling.list_schedules(db) if not i.paused and not i.error]
            specs = {i.campaign_id: scheduling.load_scheduled_spec(db, i.campaign_id)
                     for i in infos if i.next_fire is not None}
        except Exception as exc:
            _say(_("[red]error reading schedules:[/red] {message}").format(
                message=escape(str(exc))), err=True)
            return
        with jobs_lock:
            if stop.is_set():
                return
            for cid in list(cron):
                if cid not in specs:
                    sched.remove_job(f"fire:{cid}")
                    del cron[cid]
            for cid, spec in specs.items():
                shape = (spec.schedule.send_time, spec.window.timezone, spec.window.start_date,
                         spec.window.end_date, spec.window.lateness_limit_minutes)
                if cron.get(cid) == shape:
                    continue
                sched.add_job(do_tick, scheduling.cron_trigger(spec), args=[N_("daily send time"), cid],
                              id=f"fire:{cid}", name=f"fire {cid}", replace_existing=True,
                              misfire_grace_time=max(spec.window.lateness_limit_minutes * 60, 1))
                cron[cid] = shape
                nxt = scheduling.next_firing(spec, dt.datetime.now(UTC))
                _say(_("{id}: daily at {time} {tz}; next firing {local} = {utc}").format(
                    id=cid, time=f"{spec.schedule.send_time:%H:%M}", tz=spec.window.timezone,
                    local=_vn(nxt.at if nxt else None), utc=_utc(nxt.at if nxt else None)))

    def stop_scheduler() -> None:
        try:
            sched.pause()  # no new job starts
            sched.shutdown(wait=True)  # the running check finishes its in-flight sends first
        except Exception:  # not started yet, or already stopped
            log.debug("scheduler shutdown", exc_info=True)

    def shut_down() -> None:
        with jobs_lock:
            stop.set()
        if sched.running:
            stop_scheduler()

    stopper: list[threading.Thread] = []

    def on_signal(signum: int, _frame: Any) -> None:
        if stopper:
            raise KeyboardInterrupt
        _say(_("{signal}: stopping; sends in flight finish and are recorded, the run continues "
               "at the next start").format(signal=signal.Signals(signum).name), err=True)
        # shutdown(wait=True) waits for the running job, so it must not run in the signal
        # handler: the interrupted main thread may hold a lock that job needs
        t = threading.Thread(target=shut_down, name="scheduler-shutdown")
        stopper.append(t)
        t.start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sync_jobs()
        sched.add_job(do_tick, IntervalTrigger(seconds=poll, timezone=SCHEDULER_TZ),
                      args=[N_("poll")], id="tick", name="check the database",
                      next_run_time=dt.datetime.now(SCHEDULER_TZ))
        _say(ngettext("scheduler started (time zone {tz}, checks every {poll} s, {n} active "
                      "schedule)", "scheduler started (time zone {tz}, checks every {poll} s, "
                      "{n} active schedules)", len(cron)).format(
                          tz=SCHEDULER_TZ.key, poll=f"{poll:g}", n=number(len(cron))))
        if not stop.is_set():
            sched.start()
        for t in stopper:
            t.join()
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
    _say(_("scheduler stopped"))

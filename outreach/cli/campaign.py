"""``outreach campaign ...`` and ``outreach runs list``."""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.progress import (BarColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from outreach.clock import VN_TZ
from outreach.i18n import N_, _, carrier_label, day, ngettext, number
from outreach.input import campaigns, reasons
from outreach.ledger import states
from outreach.sending import ops
from outreach.sending.reasons import run_reason
from outreach.cli import OUT_FILE, Ctx, console, err_console, pass_ctx


def load_spec(ref: str, c: Ctx | None = None) -> campaigns.CampaignSpec:
    """The campaign from a file path, ``campaigns/<id>.toml``, or (for a campaign already in
    the database) the file it was last loaded from."""
    try:
        return campaigns.load(campaigns.resolve(ref))
    except campaigns.CampaignError:
        if c is None or ref.endswith(".toml") or "/" in ref:
            raise
        from sqlalchemy import select

        from outreach.ledger.models import Campaign

        with c.db.engine.connect() as conn:
            stored = conn.execute(select(Campaign.file_path).where(Campaign.id == ref)).scalar()
        if not stored:
            raise
        return campaigns.load(stored)


def unknown_campaign(conn: Any, campaign_id: str) -> str:
    """The message for a campaign id that is not in the database, naming those that are."""
    from sqlalchemy import select

    from outreach.ledger.models import Campaign

    known = list(conn.execute(select(Campaign.id).order_by(Campaign.id).limit(10)).scalars())
    if not known:
        return _("no campaign {id} in this database: no campaign was launched yet (`outreach "
                 "campaign launch FILE.toml`)").format(id=campaign_id)
    return _("no campaign {id} in this database; campaigns: {known}").format(
        id=campaign_id, known=", ".join(known))


def require_campaign(conn: Any, campaign_id: str) -> None:
    """Refuse (:class:`outreach.sending.ops.OperatorError`, :func:`unknown_campaign`'s message
    naming the known campaigns) a campaign id that is not in the database, so that a mistyped
    id is an error, never an empty table or a silent zero."""
    from sqlalchemy import select

    from outreach.ledger.models import Campaign

    if conn.execute(select(Campaign.id).where(Campaign.id == campaign_id)).first() is None:
        raise ops.OperatorError(never_launched(campaign_id)
                                or unknown_campaign(conn, campaign_id))


def never_launched(campaign_id: str) -> str | None:
    """The message for a campaign not in the database whose file is there
    (``campaigns/<id>.toml``): it was never launched, and the command that launches it names
    the file; None when there is no such file."""
    from outreach.input import campaigns

    try:
        path = campaigns.resolve(campaign_id)
    except campaigns.CampaignError:
        return None
    return _("campaign {id} was never launched in this database (`outreach campaign launch "
             "{file}`)").format(id=campaign_id, file=path)


@click.group()
def campaign() -> None:
    """Check, launch, pause, resume, cancel and resend campaigns."""


@contextmanager
def graceful_stop(then: str = N_("pausing")) -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set an event: in-flight sends finish and are recorded, then the run pauses
    (or, for a worker, the process stops); a second signal aborts at once."""
    event = threading.Event()
    previous = {}

    def handler(signum: int, _frame: Any) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        err_console.print("\n" + _("{signal}: finishing the sends in flight, then {then} (press "
                                   "again to abort)").format(signal=signal.Signals(signum).name,
                                                             then=_(then)), soft_wrap=True)
        event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (tests)
            pass
    try:
        yield event
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


class PhaseProgress:
    """The progress view of a launch on the error console: one line per phase (reading the
    lists, creating the run, sending) with its count, rate per second, elapsed time and ETA.
    Each line appears when its phase begins. The number of rows of the lists is estimated
    from their line count (CSV and TSV; a workbook's is unknown, so its line shows no ETA).

    A phase's rate counts from its first call: reading from when the view was made, creating
    and sending from the call each makes before its first row (``(0, total)``; sending's is
    what was recorded before, on a resume), so a phase done in one go shows its real rate,
    never 0. Counts and rates use the Vietnamese separators when the interface is Vietnamese."""

    def __init__(self) -> None:
        import time

        self._prog: Any = None
        self._tasks: dict[str, Any] = {}
        #: phase -> (time it began, count then, time of its last call, count then)
        self._span: dict[str, list[Any]] = {"import": [time.monotonic(), 0, None, 0]}
        self.import_total: int | None = None

    def _rate(self, phase: str) -> float:
        t0, first, t1, done = self._span[phase]
        return (done - first) / max((t1 or t0) - t0, 1e-6) if done > first else 0.0

    def _update(self, phase: str, label: str, done: int, total: int | None, unit: str) -> None:
        import time

        now = time.monotonic()
        if self._prog is None:
            self._prog = Progress(TextColumn("[bold]{task.description:<13}"), BarColumn(),
                                  TextColumn("{task.fields[count]}"),
                                  TextColumn("{task.fields[rate]}"),
                                  TimeElapsedColumn(), TextColumn(_("ETA")),
                                  TimeRemainingColumn(), console=err_console, transient=False)
            self._prog.start()
        span = self._span.setdefault(phase, [now, done, None, done])
        span[2:] = [now, done]
        if phase not in self._tasks:
            self._tasks[phase] = self._prog.add_task(label, total=total, count="", rate="")
        if total is not None and done > total:
            total = done
        count = number(done) if total is None else f"{number(done)}/{number(total)}"
        self._prog.update(self._tasks[phase], completed=done, total=total, count=count,
                          rate=f"{number(self._rate(phase))} {unit}")

    def importing(self, rows: int) -> None:
        self._update("import", _("reading lists"), rows, self.import_total, _("rows/s"))

    def creating(self, done: int, total: int) -> None:
        if "import" in self._tasks:  # the lists are read: their line shows the real count
            rows = self._span["import"][3]
            self._prog.update(self._tasks["import"], total=rows, count=number(rows))
        self._update("create", _("creating run"), done, total, _("rows/s"))

    def sending(self, done: int, total: int) -> None:
        """``(done, total)``: messages the ledger has recorded (called from its writer thread
        after each group commit), never a claimed batch."""
        self._update("send", _("sending"), done, total, _("msg/s"))
        self._sent = (done, total)

    def stop(self) -> None:
        """Stop the view; after sending, one line says how many were recorded, at the rate
        the sending line showed last."""
        if self._prog is not None:
            self._prog.stop()
        if "send" in self._tasks:
            done, total = self._sent
            err_console.print(ngettext(
                "{done} of {total} message recorded ({rate} messages per second)",
                "{done} of {total} messages recorded ({rate} messages per second)",
                total).format(done=number(done), total=number(total),
                              rate=number(self._rate("send"))))


def estimate_rows(files: list[Any]) -> int | None:
    """Data rows of delimited text lists, estimated as their lines minus one header line
    each (1 MB reads; a 60 MB list takes a few hundredths of a second); None when one of
    them is a workbook or cannot be read."""
    total = 0
    for f in files:
        if str(f).lower().rsplit(".", 1)[-1] not in ("csv", "tsv", "txt"):
            return None
        try:
            with open(f, "rb") as fh:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        except OSError:
            return None
        total += max(lines - 1, 0)
    return total


@contextmanager
def phase_progress(enabled: bool) -> Iterator[PhaseProgress | None]:
    """A :class:`PhaseProgress` while enabled (else None), stopped on the way out."""
    if not enabled:
        yield None
        return
    view = PhaseProgress()
    try:
        yield view
    finally:
        view.stop()


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    """A progress line for sending (rate and ETA) that appears with the first message sent:
    a ``(done, total)`` callback, or None when not enabled."""
    with phase_progress(enabled) as view:
        yield view.sending if view is not None else None


def _plan_dict(res: ops.LaunchResult) -> dict[str, Any]:
    plan = res.plan
    imp = res.import_summary
    msg = res.message
    out: dict[str, Any] = {
        "campaign": res.campaign_id, "dry_run": res.dry_run, "gateways": res.gateway_names,
        "window_note": res.window_note,
        "encoding": msg.get("encoding"), "segments": msg.get("segments"),
        "characters": msg.get("characters"), "ucs2_characters": msg.get("ucs2_characters"),
        "recipients": plan.by_status.get(states.QUEUED, 0) if plan else 0,
        "opted_out": plan.by_status.get(states.OPTED_OUT, 0) if plan else 0,
        "skipped": plan.by_status.get(states.SKIPPED, 0) if plan else 0,
        "already_sent": plan.already_had_delivery if plan else 0,
        "by_carrier": dict(sorted(plan.by_carrier.items())) if plan else {},
        "total_segments": plan.segments if plan else 0,
        "estimated_cost_vnd": round(plan.cost_vnd, 2) if plan else 0.0,
        "estimated_duration_s": round(res.duration_s, 1) if res.duration_s is not None else None,
        "sample": plan.sample if plan else None,
    }
    if imp:
        out["import"] = imp.to_dict()
    if plan and not res.dry_run:
        out["run_id"] = plan.run_id
    if res.report:
        out["run_id"] = res.report.run_id
        out["result"] = res.report.counts
        out["stopped"] = res.report.stopped
        out["stopped_reason"] = res.report.reason
        out["reconciled"] = res.report.reconciled
    out["nothing_new"] = res.nothing_new
    out["advice"] = list(res.advice)
    if plan:
        out["skipped_reasons"] = dict(sorted(plan.skipped_reasons.items()))
    return out


def _print_summary(c: Ctx, res: ops.LaunchResult, *, plan_only: bool = False,
                   window: str | None = None, out: Any = None) -> None:
    """The launch's plan (lists read, rejected and duplicate rows, recipients, segments, cost,
    gateway, send window) and, unless ``plan_only``, what was sent."""
    out = out or console
    d = _plan_dict(res)
    if res.window_note:
        out.print(_("[yellow]note:[/yellow] {note}").format(note=res.window_note))
    for line in res.advice:
        out.print(_("[yellow]advice:[/yellow] {line}").format(line=line), soft_wrap=True)
    imp = res.import_summary
    if imp:
        t = Table(title=ngettext("Recipient lists ({n} file)", "Recipient lists ({n} files)",
                                 len(imp.files)).format(n=len(imp.files)), show_header=False)
        t.add_row(_("rows read"), number(imp.rows_read))
        if imp.extra_numbers:
            t.add_row(_("extra numbers in shared cells"), number(imp.extra_numbers))
        t.add_row(_("valid unique mobile numbers"), number(imp.imported))
        t.add_row(_("rejected"), number(imp.rejected))
        t.add_row(_("duplicates"), number(imp.duplicates))
        for reason, n in sorted(imp.by_reason.items()):
            if reason != "duplicate":
                t.add_row(_("  rejected: {reason}").format(reason=reasons.label(reason)), number(n))
        out.print(t)
    title = _("Campaign {id}").format(id=res.campaign_id)
    if res.dry_run and not plan_only:
        title += _(" — DRY RUN, nothing sent")
    elif plan_only:
        title += _(" — what the launch will send")
    t = Table(title=title, show_header=False)
    t.add_row(_("gateway"), ", ".join(f"{k}: {v}" for k, v in res.gateway_names.items()))
    if window:
        t.add_row(_("send window"), window)
    t.add_row(_("encoding"), ngettext("{encoding} ({n} character)", "{encoding} ({n} characters)",
                                      d["characters"] or 0).format(
                                          encoding=d["encoding"], n=number(d["characters"] or 0)))
    t.add_row(_("segments per message"), number(d["segments"] or 0))
    if d["ucs2_characters"]:
        t.add_row(_("characters forcing UCS-2"), " ".join(d["ucs2_characters"]))
    t.add_row(_("recipients to send"), number(d["recipients"]))
    t.add_row(_("opted out"), number(d["opted_out"]))
    if d["skipped"]:
        t.add_row(_("skipped"), number(d["skipped"]))
    t.add_row(_("already had this campaign"), number(d["already_sent"]))
    t.add_row(_("by carrier"), ", ".join(f"{carrier_label(k)} {number(v)}"
                                         for k, v in d["by_carrier"].items())
              or "-")
    t.add_row(_("segments in all"), number(d["total_segments"]))
    from outreach.sending import approvals

    if res.gateway_names and not approvals.phone_gateways(res.gateway_names):
        # the outbox and the rehearsal gateways bill nothing: the carriers' price is shown as
        # what the same run would cost through a provider, never as money spent
        t.add_row(_("estimated cost"), _(
            "0 VND through {gateways} (nothing is billed); through a provider: {amount} VND"
        ).format(gateways=", ".join(sorted(set(res.gateway_names.values()))),
                 amount=number(d["estimated_cost_vnd"])))
    else:
        t.add_row(_("estimated cost"),
                  _("{amount} VND").format(amount=number(d["estimated_cost_vnd"])))
    if d["estimated_duration_s"] is not None:
        t.add_row(_("estimated duration"), _("{seconds} s at the configured rate").format(
            seconds=number(d["estimated_duration_s"])))
    if (res.dry_run or plan_only) and d["sample"]:
        t.add_row(_("sample"), d["sample"])
    out.print(t)
    if res.nothing_new:
        out.print(_("[green]Nothing new to send:[/green] every recipient on the lists already "
                    "has a delivery in this campaign (see `outreach report {id}`).").format(
                        id=res.campaign_id))
    if res.report and not plan_only:
        _print_sent(res)


def _print_sent(res: ops.LaunchResult) -> None:
    assert res.report is not None
    _print_report(res.report, res.campaign_id)
    if "outbox" in res.gateway_names.values():
        from outreach import config

        path = config.outbox_dir() / f"{res.campaign_id}.jsonl"
        console.print(_("outbox (a local file, nothing reached a phone): {path}").format(path=path))


def _print_report(rep: Any, campaign_id: str) -> None:
    counts = {k: v for k, v in rep.counts.items() if v}
    console.print(_("run #{run}: {counts}").format(
        run=rep.run_id, counts=", ".join(f"{_(k)} {number(v)}" for k, v in sorted(counts.items()))))
    rec = {k: v for k, v in (rep.reconciled or {}).items() if v}
    if rec:
        console.print(_("interrupted sends reconciled: {counts}").format(
            counts=", ".join(f"{_(k)} {number(v)}" for k, v in rec.items())))
    after = getattr(rep.reconciled, "decide_after", None)
    if after is not None:
        console.print(_("[yellow]{n} deliveries were not listed by the provider yet, which proves "
                        "nothing while it may still be creating them; they stay unknown until "
                        "{time} (Vietnam time): run `outreach campaign resume {id}` again after "
                        "that[/yellow]").format(n=number(rep.reconciled["deferred"]),
                                                time=f"{after.astimezone(VN_TZ):%H:%M:%S}",
                                                id=campaign_id))
    if rep.stopped:
        from outreach.i18n import when

        when_txt = (_("; the window opens again at {time}").format(time=when(rep.resume_at))
                    if rep.resume_at else "")
        console.print(_("[yellow]run stopped ({why}):[/yellow] {reason}{when}").format(
            why=_(rep.stopped), reason=run_reason(rep.reason), when=when_txt))
    elif counts.get("unknown"):
        console.print(ngettext(
            "[yellow]{n} delivery has an unknown outcome[/yellow]: see `outreach deliveries list "
            "{id} --status unknown` and `outreach deliveries resolve`",
            "[yellow]{n} deliveries have an unknown outcome[/yellow]: see `outreach deliveries "
            "list {id} --status unknown` and `outreach deliveries resolve`",
            counts["unknown"]).format(n=number(counts["unknown"]), id=campaign_id))


def describe_window(spec: campaigns.CampaignSpec) -> str:
    """The campaign's dates and daily window, e.g. ``01/07/2024 – 30/09/2024, 07:00–22:00
    (Asia/Ho_Chi_Minh)``."""
    from outreach.i18n import day

    w = spec.window
    return _("{start} – {end}, daily {opens}–{closes} ({tz})").format(
        start=day(w.start_date), end=day(w.end_date), opens=f"{w.daily_start:%H:%M}",
        closes=f"{w.daily_end:%H:%M}", tz=w.timezone)


@campaign.command("check")
@click.argument("campaign_ref", metavar="FILE_OR_ID")
@click.option("--gateway", help="Gateway to estimate for (default: as the launch would choose).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def check(c: Ctx, campaign_ref: str, gateway: str | None, fmt: str) -> None:
    """Validate a campaign and show what a launch would send (same as launch --dry-run)."""
    _launch(c, campaign_ref, gateway, True, False, False, fmt, False, None, False)


@campaign.command("launch")
@click.argument("campaign_ref", metavar="FILE_OR_ID")
@click.option("--gateway", help="mock, outbox, twilio, zalo or smpp (default: outbox unless "
              "credentials are configured).")
@click.option("--dry-run", is_flag=True, help="Show recipients, segments, cost; send nothing.")
@click.option("--override-window", is_flag=True,
              help="Send through a real gateway even outside the campaign's send window.")
@click.option("--accept-new-text", is_flag=True,
              help="Allow a text different from the one this campaign already sent.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--encoding", help="Force the encoding of the list files (utf-8, utf-16, cp1258).")
@click.option("--convert-old-prefixes", is_flag=True,
              help="Convert pre-2018 11-digit numbers with the official table.")
@click.option("--enqueue-only", is_flag=True,
              help="Only create the run; `outreach worker` processes send it.")
@click.option("--reject-file", type=OUT_FILE,
              help="Write every rejected and duplicate row (file, line, masked value, reason) as CSV.")
@click.option("-y", "--yes", is_flag=True,
              help="Do not ask for confirmation after showing the plan (scripts). Without it, "
                   "a gateway that reaches phones is refused when no one can answer (stdin is "
                   "not a terminal).")
@pass_ctx
def launch(c: Ctx, campaign_ref: str, gateway: str | None, dry_run: bool, override_window: bool,
           accept_new_text: bool, fmt: str, no_progress: bool, encoding: str | None,
           convert_old_prefixes: bool, enqueue_only: bool, reject_file: str | None,
           yes: bool) -> None:
    """Import the campaign's lists, show the plan, ask, then create the run and send every
    eligible recipient once.

    The plan: lists read, rejected and duplicate rows, recipients, segments, cost, gateway and
    send window. Then the launch asks for confirmation; --yes skips the question. When stdin is
    not a terminal, a gateway that reaches no phone (outbox, mock) goes ahead after the plan and
    a gateway that reaches phones is refused unless --yes is given."""
    if enqueue_only and override_window:
        raise click.UsageError(_("--override-window needs the launch to send; workers always "
                                 "keep the campaign's send window"))
    _launch(c, campaign_ref, gateway, dry_run, override_window, accept_new_text, fmt,
            not no_progress and fmt == "table", encoding, convert_old_prefixes,
            dispatch=not enqueue_only, reject_file=reject_file, confirm=not yes)


def stdin_is_terminal() -> bool:
    """Whether someone can answer a question (stdin is a terminal)."""
    import sys

    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed
        return False


def _plan_gateways(c: Ctx, spec: campaigns.CampaignSpec, gateway: str | None,
                   override_window: bool) -> tuple[dict[str, Any], list[str]]:
    """The launch's gateways and the names of those that reach phones; refuses (OperatorError)
    a launch outside the send window through one that does."""
    from outreach.clock import SYSTEM_CLOCK
    from outreach.gateways import build_gateways, gateway_names_for
    from outreach.sending import approvals

    gws = build_gateways(gateway_names_for(spec, gateway), c.db, SYSTEM_CLOCK)
    reaching = approvals.phone_gateways(gws)  # outbox and the rehearsal gateways (mock) do not
    ops.check_window(spec, gws, SYSTEM_CLOCK.now(), override_window)
    return gws, reaching


def _confirm_plan(c: Ctx, spec: campaigns.CampaignSpec, gateway: str | None,
                  accept_new_text: bool, fmt: str, encoding: str | None,
                  convert_old_prefixes: bool, gws: dict[str, Any], reaching: list[str]) -> None:
    """Show the plan of a launch through ``gws`` (a dry run: the same import and run creation,
    rolled back) and ask someone; called when a gateway reaches phones or stdin is a terminal.
    Returns when the launch may go on (also when there is nothing new: the launch says so);
    raises ClickException when a gateway reaches phones and no one can answer, SystemExit(1)
    when the operator answers no. Every refusal the launch itself would make (window,
    approval) comes before the question."""
    from outreach.clock import SYSTEM_CLOCK
    from outreach.sending import approvals

    now = SYSTEM_CLOCK.now()
    if reaching:
        with c.db.engine.connect() as conn:
            trans = conn.begin()
            try:
                approvals.require_approval(conn, spec, gws, operator=c.operator, now=now)
            finally:
                trans.rollback()
    res = ops.launch(c.db, spec, gateway=gateway, dry_run=True, accept_new_text=accept_new_text,
                     operator=c.operator, encoding=encoding, gateways=gws,
                     convert_old_prefixes=convert_old_prefixes)
    out = console if fmt == "table" else err_console
    _print_summary(c, res, plan_only=True, window=describe_window(spec), out=out)
    if res.nothing_new:
        return
    recipients = res.plan.by_status.get(states.QUEUED, 0) if res.plan else 0
    if not stdin_is_terminal():  # only a gateway that reaches phones gets here (see _launch)
        raise click.ClickException(_(
            "campaign {id}: gateway {gateways} reaches phones and nobody can confirm here "
            "(stdin is not a terminal); nothing was sent. Read the plan above, then run "
            "`outreach campaign launch {id} --yes`").format(id=spec.id,
                                                            gateways=", ".join(reaching)))
    question = ngettext("Send campaign {id} to {n} recipient through {gateways}?",
                        "Send campaign {id} to {n} recipients through {gateways}?",
                        recipients).format(id=spec.id, n=number(recipients),
                                           gateways=", ".join(res.gateway_names.values()))
    if not click.confirm(question, default=False, err=True):
        err_console.print(_("not confirmed: nothing was sent"))
        raise SystemExit(1)


def _launch(c: Ctx, ref: str, gateway: str | None, dry_run: bool, override_window: bool,
            accept_new_text: bool, fmt: str, show_progress: bool, encoding: str | None,
            convert_old_prefixes: bool, dispatch: bool = True,
            reject_file: str | None = None, confirm: bool = False) -> None:
    spec = load_spec(ref, c)
    gws = None
    planned = confirm and not dry_run  # the plan is shown first, then the launch asks
    on_plan = None
    if planned:
        gws, reaching = _plan_gateways(c, spec, gateway, override_window)
        if reaching or stdin_is_terminal():
            # someone is asked: the plan is a dry run (rolled back, so no write lock is held
            # while the operator reads it). Nothing new: the launch below creates nothing
            # and says so, as it always did
            _confirm_plan(c, spec, gateway, accept_new_text, fmt, encoding,
                          convert_old_prefixes, gws, reaching)
        else:
            # nobody is asked (no phone reached, no terminal): the plan is printed from the
            # launch itself once the run is created, before anything is sent, and the lists
            # are read once (a million rows: half a minute less)
            out = console if fmt == "table" else err_console

            def on_plan(res: ops.LaunchResult) -> None:
                _print_summary(c, res, plan_only=True, window=describe_window(spec), out=out)
                if not res.nothing_new:
                    out.print(_("gateway {gateways} reaches no phone: going ahead without "
                                "asking").format(gateways=", ".join(res.gateway_names.values())))
    with graceful_stop() as stop, phase_progress(show_progress and not dry_run) as view:
        if view is not None:
            view.import_total = estimate_rows(spec.list_files())
        res = ops.launch(c.db, spec, gateway=gateway, dry_run=dry_run,
                         override_window=override_window, accept_new_text=accept_new_text,
                         operator=c.operator, progress=view.sending if view else None,
                         import_progress=view.importing if view else None,
                         create_progress=view.creating if view else None,
                         stop_event=stop, encoding=encoding,
                         convert_old_prefixes=convert_old_prefixes, dispatch=dispatch,
                         gateways=gws, on_plan=on_plan)
    if reject_file and res.import_summary is not None:
        from pathlib import Path

        from outreach import safeio
        from outreach.cli.recipients import write_issues

        issues = res.import_summary.issues
        write_issues(Path(reject_file), issues)
        safeio.record_file(c.db, reject_file, "reject-file", rows=len(issues),
                           campaign_id=res.campaign_id, operator=c.operator)
    if fmt == "json":
        click.echo(json.dumps(_plan_dict(res), ensure_ascii=False, indent=2))
    else:
        if planned:  # the plan was printed before the question ("Nothing new" included)
            if res.report:
                _print_sent(res)
        else:
            _print_summary(c, res)
        if reject_file and res.import_summary is not None:
            n = len(res.import_summary.issues)
            console.print(ngettext("{n} rejected or duplicate row written to {path}",
                                   "{n} rejected or duplicate rows written to {path}",
                                   n).format(n=number(n), path=reject_file))
        elif res.import_summary and res.import_summary.issues:
            n = len(res.import_summary.issues)
            console.print(ngettext(
                "{n} rejected or duplicate row: add --reject-file FILE.csv to get it with its "
                "file, line and reason",
                "{n} rejected or duplicate rows: add --reject-file FILE.csv to get each one with "
                "its file, line and reason", n).format(n=number(n)))
        if not dispatch and not res.dry_run and res.plan and res.plan.run_id is not None:
            console.print(_("run #{run} created, nothing sent yet: `outreach worker` processes "
                            "send it").format(run=res.plan.run_id))
    if res.report and res.report.stopped in ("gateway", "error-rate", "content"):
        raise SystemExit(1)
    if stop.is_set():
        raise SystemExit(130)  # stopped by Ctrl-C (128 + SIGINT): the run is paused, resumable


@campaign.command("resume")
@click.argument("campaign_ref", metavar="FILE_OR_ID")
@click.option("--run", "run_id", type=int, help="Run id (default: the unfinished run).")
@click.option("--gateway", help="Use another gateway than the run was created with.")
@click.option("--override-window", is_flag=True)
@click.option("--allow-late", is_flag=True, help="Send a run that is past its lateness limit.")
@click.option("--no-progress", is_flag=True)
@pass_ctx
def resume(c: Ctx, campaign_ref: str, run_id: int | None, gateway: str | None,
           override_window: bool, allow_late: bool, no_progress: bool) -> None:
    """Continue an unfinished run. Interrupted sends are reconciled, never resent blindly."""
    spec = load_spec(campaign_ref, c)
    with graceful_stop() as stop, progress_bar(not no_progress) as prog:
        rep = ops.resume(c.db, spec, gateway=gateway, override_window=override_window,
                         allow_late=allow_late, operator=c.operator, run_id=run_id,
                         progress=prog, stop_event=stop)
    _print_report(rep, spec.id)
    if rep.stopped in ("gateway", "error-rate", "content"):
        raise SystemExit(1)
    if stop.is_set():
        raise SystemExit(130)  # stopped by Ctrl-C (128 + SIGINT): the run is paused, resumable


@campaign.command("pause")
@click.argument("campaign_id")
@pass_ctx
def pause(c: Ctx, campaign_id: str) -> None:
    """Pause the unfinished run: a running dispatcher stops after its current batch."""
    run = ops.set_run_state(c.db, campaign_id, "pause", operator=c.operator)
    console.print(_("run #{run} of {id} paused; `outreach campaign resume {id}` continues "
                    "it").format(run=run.id, id=campaign_id))


@campaign.command("cancel")
@click.argument("campaign_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def cancel(c: Ctx, campaign_id: str, yes: bool) -> None:
    """Cancel the unfinished run: queued deliveries become skipped (reason: cancelled)."""
    run = ops.find_run(c.db, campaign_id)
    if not yes:
        click.confirm(_("Cancel run #{run} of {id}? Queued messages will not be sent.").format(
            run=run.id, id=campaign_id), abort=True)
    run = ops.set_run_state(c.db, campaign_id, "cancel", operator=c.operator)
    console.print(_("run #{run} of {id} cancelled").format(run=run.id, id=campaign_id))


@campaign.command("resend")
@click.argument("campaign_ref", metavar="FILE_OR_ID")
@click.option("--failed", "failed", is_flag=True, default=True,
              help="Recipients whose latest delivery failed, was undelivered or was skipped "
                   "(e.g. by a cancel) and who were never reached (the default).")
@click.option("--include-unknown", is_flag=True,
              help="Also recipients whose outcome is unknown (risk of a double send).")
@click.option("--gateway")
@click.option("--override-window", is_flag=True)
@click.option("--no-progress", is_flag=True)
@pass_ctx
def resend(c: Ctx, campaign_ref: str, failed: bool, include_unknown: bool, gateway: str | None,
           override_window: bool, no_progress: bool) -> None:
    """A new run for the recipients not reached: never anyone delivered or opted out."""
    spec = load_spec(campaign_ref, c)
    statuses = (states.FAILED, states.UNDELIVERED, states.SKIPPED) + (
        (states.UNKNOWN,) if include_unknown else ())
    with progress_bar(not no_progress) as prog:
        res = ops.resend(c.db, spec, statuses=statuses, gateway=gateway, operator=c.operator,
                         override_window=override_window, progress=prog)
    if res.nothing_new:
        console.print(_("nobody to resend to: no recipient's latest delivery failed"))
        return
    assert res.report is not None
    _print_report(res.report, spec.id)


@click.group()
def runs() -> None:
    """Runs of a campaign: launches, scheduled days, resends."""


@runs.command("list")
@click.argument("campaign_id", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def runs_list(c: Ctx, campaign_id: str | None, fmt: str) -> None:
    """Every run with its status, reason and counts (missed days included)."""
    from sqlalchemy import case, func, select

    from outreach.ledger.models import Delivery, Run

    with c.db.engine.connect() as conn:
        stmt = select(Run.__table__).order_by(Run.id)
        if campaign_id:
            require_campaign(conn, campaign_id)
            stmt = stmt.where(Run.campaign_id == campaign_id)
        rows = conn.execute(stmt).mappings().all()
        counts: dict[int, dict[str, int]] = {}
        # the gateways that really took the run's rows (a claimed row records its sender: a
        # worker's --gateway replaces the one the run was created with)
        used: dict[int, set[str]] = {}
        claimed = case((Delivery.attempts > 0, 1), else_=0)
        for run_id, status, gateway, was_claimed, n in conn.execute(
                select(Delivery.run_id, Delivery.status, Delivery.gateway, claimed, func.count())
                .group_by(Delivery.run_id, Delivery.status, Delivery.gateway, claimed)):
            run_counts = counts.setdefault(run_id, {})
            run_counts[status] = run_counts.get(status, 0) + n
            if was_claimed and gateway:
                used.setdefault(run_id, set()).add(gateway)
    data = [{"id": r["id"], "campaign": r["campaign_id"], "kind": r["kind"],
             "run_date": r["run_date"].isoformat(), "status": r["status"],
             "reason": r["status_reason"], "gateway": r["gateway"],
             "gateways_used": sorted(used.get(r["id"], ())),
             "created_at": r["created_at"].isoformat(), "counts": counts.get(r["id"], {})}
            for r in rows]
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    t = Table(title=_("Runs"))
    for col in (_("id"), _("campaign"), _("kind"), _("date"), _("status"), _("gateway"),
                _("deliveries"), _("reason")):
        t.add_column(col)
    for d in data:
        t.add_row(str(d["id"]), d["campaign"], _(d["kind"]),
                  day(dt.date.fromisoformat(d["run_date"])),
                  _(d["status"]),
                  run_gateways(d["gateway"], d["gateways_used"]),
                  ", ".join(f"{_(k)} {number(v)}" for k, v in sorted(d["counts"].items())),
                  run_reason(d["reason"]))
    console.print(t)


def run_gateways(planned: str, used: list[str]) -> str:
    """A run's gateway as ``runs list`` shows it: the gateways that sent its messages, with the
    one it was created with when that is another (``mock (created with outbox)``); the
    planned one while nothing was sent."""
    if not used or used == [planned]:
        return planned
    return _("{used} (created with {planned})").format(used=", ".join(used), planned=planned)


def _approval_line(a: Any) -> str:
    line = _("#{id} {status}: text {sha}…, {lists}, {rows}, prepared by {by}").format(
        id=a.id, status=_(a.status), sha=a.text_sha256[:12],
        lists=ngettext("{n} list", "{n} lists", len(a.lists)).format(n=len(a.lists)),
        rows=ngettext("{n} row", "{n} rows", a.rows).format(n=number(a.rows)), by=a.prepared_by)
    if a.approved_by:
        line += _(", approved by {by}").format(by=a.approved_by)
    return line


@campaign.command("submit")
@click.argument("campaign_ref", metavar="FILE_OR_ID")
@click.option("--note", help="A note for the approver.")
@pass_ctx
def submit(c: Ctx, campaign_ref: str, note: str | None) -> None:
    """Ask for approval of the campaign as it is now: its text hash and list files (maker)."""
    from outreach import config
    from outreach.sending import approvals

    spec = load_spec(campaign_ref, c)
    with c.db.engine.begin() as conn:
        a = approvals.prepare(conn, spec, operator=c.operator or config.default_operator(),
                              note=note)
    console.print(_("approval requested for {id}: {line}").format(id=spec.id,
                                                                   line=_approval_line(a)),
                  soft_wrap=True)
    for x in a.lists:
        console.print("  " + ngettext("{file}: {n} row, sha256 {sha}…",
                                      "{file}: {n} rows, sha256 {sha}…", x["rows"]).format(
                                          file=x["file"], n=number(x["rows"]),
                                          sha=x["sha256"][:16]), soft_wrap=True)
    console.print(_("another person approves it: `outreach --operator NAME campaign approve "
                    "{id}`").format(id=spec.id))


def _refuse_unknown_approver(conn: Any, campaign_id: str, approver: str) -> None:
    """When the approval was refused because ``approver`` is no active approver or admin
    account (and a request is pending), raise the refusal again with the command that names
    this account (``outreach users add bob --role approver``; for an account that exists,
    how to enable it or who may approve); otherwise return (the refusal stands as it is)."""
    from outreach import users
    from outreach.sending import approvals

    acc = users.get(conn, approver or "")
    if (acc is not None and acc.has("approver")) or approvals.latest(
            conn, campaign_id, "pending") is None:
        return
    if acc is None:
        hint = _("`outreach users add {name} --role approver`").format(name=approver)
    elif not acc.active:
        hint = _("`outreach users enable {name}`").format(name=acc.username)
    else:
        hint = _("{name} has the role {role}; an approver approves: `outreach --operator "
                 "NAME campaign approve {id}`").format(
                     name=acc.username, role=users.role_label(acc.role, in_sentence=True),
                     id=campaign_id)
    raise approvals.ApprovalError(_("{name!r} is not an active approver or admin account "
                                    "({hint})").format(name=approver, hint=hint))


@campaign.command("approve")
@click.argument("campaign_ref", metavar="FILE_OR_ID")
@pass_ctx
def approve(c: Ctx, campaign_ref: str) -> None:
    """Approve the pending request (checker): --operator must be an approver account other
    than the preparer; the text and the lists must be those that were submitted."""
    from outreach import config
    from outreach.sending import approvals

    spec = load_spec(campaign_ref, c)
    approver = c.operator or config.default_operator()
    with c.db.engine.begin() as conn:
        try:
            a = approvals.approve(conn, spec, approver=approver)
        except approvals.ApprovalError:
            _refuse_unknown_approver(conn, spec.id, approver)
            raise
    console.print(_("[green]approved[/green] {id}: {line}").format(id=spec.id,
                                                                    line=_approval_line(a)),
                  soft_wrap=True)

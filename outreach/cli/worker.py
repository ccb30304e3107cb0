"""``outreach worker``: one sending process among many, on any machine, sharing the database."""

from __future__ import annotations

import json
from typing import Any

import click

from outreach import config
from outreach.cli import Ctx, err_console, pass_ctx
from outreach.i18n import _, number
from outreach.sending.reasons import run_reason


def parse_gateway_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("latency=0.01", "record=/tmp/x.jsonl")`` → ``{"latency": 0.01, "record": "/tmp/x.jsonl"}``:
    each VALUE is read as JSON when it parses (numbers, true/false), else kept as text.
    Raises click.BadParameter for an item without ``=``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(_("{pair!r} is not KEY=VALUE").format(pair=pair),
                                     param_hint="--gateway-option")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def stop_on_signals() -> Any:
    """SIGTERM/SIGINT set an event: sends not started go back to the queue, those in flight are
    recorded, then the worker exits 0. A second signal aborts at once (the rows it leaves
    ``sending`` are reconciled by the other workers)."""
    from outreach.cli.campaign import graceful_stop

    return graceful_stop("stopping")


@click.command()
@click.option("--campaign", "campaign_id", metavar="ID",
              help="Send only this campaign's runs (default: every campaign).")
@click.option("--concurrency", type=click.IntRange(1, 256),
              help="Requests in flight per run (default: the campaign's, else the gateway's).")
@click.option("--gateway", help="Send every run through this gateway (mock, outbox, twilio, "
              "zalo) instead of the gateways the runs were created with.")
@click.option("--gateway-option", "-o", "gateway_option", multiple=True, metavar="KEY=VALUE",
              help="Constructor option of the --gateway (repeatable; VALUE read as JSON when "
                   "it parses, e.g. latency=0.01).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Deliveries claimed at a time.")
@click.option("--lease", "lease", type=click.FloatRange(min=1), default=60.0, show_default=True,
              metavar="SECONDS", help="How long a claimed batch stays this worker's; renewed "
              "every quarter while it is in flight. Rows of a worker that died on another "
              "machine are reclaimed after it.")
@click.option("--idle", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              metavar="SECONDS", help="Pause between polls when there is nothing to send.")
@click.option("--exit-when-done", is_flag=True,
              help="Exit once no created or running run is left (batch jobs, tests).")
@pass_ctx
def worker(c: Ctx, campaign_id: str | None, concurrency: int | None, gateway: str | None,
           gateway_option: tuple[str, ...], batch_size: int, lease: float, idle: float,
           exit_when_done: bool) -> None:
    """Send the queued deliveries of active runs, next to any number of other workers.

    Claims batches with SELECT … FOR UPDATE SKIP LOCKED (PostgreSQL) under a lease, so no two
    workers send the same delivery; a worker that dies leaves its batch to the others, who ask
    the gateway what went out (never resent blindly). The campaign's rate limit holds for all
    workers together. Runs come from `outreach campaign launch --enqueue-only` or the
    scheduler. Stops cleanly on SIGTERM; exit status 75 means it lost its lease or could not
    record outcomes and should be restarted.
    """
    from outreach.sending.worker import Worker

    options = parse_gateway_options(gateway_option)
    if options and not gateway:
        raise click.UsageError(_("--gateway-option needs --gateway"))
    database = c.db
    if campaign_id is not None:  # a mistyped id would wait (or exit) with nothing to send
        from outreach.cli.campaign import require_campaign

        with database.engine.connect() as conn:
            require_campaign(conn, campaign_id)
    if gateway:  # a wrong name or option is refused now, not found run after run
        from outreach.gateways import gateway_class
        from outreach.gateways import build_gateways

        for g in build_gateways({gateway_class(gateway).channel: gateway}, database,
                                **{gateway: options}).values():
            g.close()
    with stop_on_signals() as stop:
        w = Worker(database, campaign_id=campaign_id, gateway=gateway,
                   gateway_options={gateway: options} if gateway else None,
                   concurrency=concurrency, batch_size=batch_size, lease_seconds=lease,
                   idle_seconds=idle, exit_when_done=exit_when_done, stop_event=stop,
                   on_run_done=lambda run_id, what: err_console.print(
                       _("run #{id}: {what}").format(id=run_id, what=what), soft_wrap=True))
        which = (_("campaign {id}").format(id=campaign_id) if campaign_id
                 else _("every campaign"))
        err_console.print(_("worker {owner} on {db}: {which}, batches of {size}, lease {lease} "
                            "s").format(owner=w.owner, db=config.redact_url(database.url),
                                        which=which, size=batch_size, lease=f"{lease:g}"),
                          soft_wrap=True)
        rep = w.run()
    kinds = ", ".join(f"{_(k)} {number(v)}" for k, v in sorted(rep.outcomes.items()) if v
                      ) or _("nothing")
    rate = rep.sent / rep.seconds if rep.seconds else 0.0
    rec = {k: v for k, v in rep.reconciled.items() if v}
    line = _("worker {owner}: {kinds} in {seconds} s ({rate} msg/s)").format(
        owner=rep.owner, kinds=kinds, seconds=number(round(rep.seconds, 1)),
        rate=number(round(rate)))
    if rec:
        line += _("; reconciled {counts}").format(counts=json.dumps(rec))
    err_console.print(line + f"; {run_reason(_(rep.reason)) if rep.reason else ''}", soft_wrap=True)
    if rep.exit_status:
        raise SystemExit(rep.exit_status)

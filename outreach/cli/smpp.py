"""`outreach smpp listen`: keep an SMPP session bound to receive delivery receipts and replies
while no run is sending (paused runs, between daily runs)."""

from __future__ import annotations

import signal
import threading
import time

import click

from outreach.cli import Ctx, pass_ctx
from outreach.i18n import _, ngettext, number


@click.group()
def smpp() -> None:
    """SMPP (carrier SMSC or aggregator)."""


@smpp.command("listen")
@click.option("--seconds", type=click.FloatRange(min=0), default=0,
              help="Stop after this many seconds (default: until SIGTERM or Ctrl-C).")
@pass_ctx
def listen(c: Ctx, seconds: float) -> None:
    """Bind with the OUTREACH_SMPP_* account and apply every receipt (deliver_sm) and record every
    citizen's reply that arrives (keywords opt out and are confirmed once through this
    session; other replies go to `outreach inbox`), until stopped; unbinds on SIGTERM.
    Reconnects with backoff when the SMSC drops the session. Run it beside (not instead of)
    sending processes only if the account allows a second bind."""
    from outreach.gateways import base
    from outreach.gateways.smpp import SmppGateway
    from outreach.receipts import inbound

    with c.db.engine.begin() as conn:  # replies stored earlier without being recorded
        earlier = inbound.ingest_smpp(conn, settings=inbound.current_settings())
    if earlier:
        click.echo(ngettext("{n} earlier SMPP reply recorded (see `outreach inbox list`)",
                            "{n} earlier SMPP replies recorded (see `outreach inbox list`)",
                            len(earlier)).format(n=number(len(earlier))))

    gw = SmppGateway(db=c.db)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    facts = gw.check()
    click.echo(_("listening on {host}:{port} as {system_id} (SMSC {smsc}); SIGTERM to stop"
                 ).format(host=facts["host"], port=facts["port"], system_id=facts["system_id"],
                          smsc=facts["smsc"] or "?"))
    until = time.monotonic() + seconds if seconds else None
    try:
        while not stop.wait(1.0):
            if until is not None and time.monotonic() >= until:
                break
            if not gw.session.bound:
                try:
                    gw.session.ensure_bound()
                except base.TransientError:
                    pass  # backing off; the next second tries again
    finally:
        confirmations = getattr(gw, "_inbound_confirmations", None)
        if confirmations is not None:
            confirmations.flush()
        gw.close()
    click.echo(_("receipts applied: {applied}; replies stored: {inbound}").format(
        applied=number(gw.receipts.applied), inbound=number(gw.receipts.inbound)))

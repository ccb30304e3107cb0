"""`outreach webhooks` commands: serve the delivery-receipt application with waitress."""

from __future__ import annotations

import os

import click
from click.core import ParameterSource

from outreach import config
from outreach.i18n import _, number


@click.group()
@click.option("--database-url", envvar="OUTREACH_DATABASE_URL", default=None, metavar="URL",
              help="SQLAlchemy URL of the database (default: the main option, "
                   "$OUTREACH_DATABASE_URL, or SQLite in $OUTREACH_HOME).")
@click.pass_context
def webhooks(ctx: click.Context, database_url: str | None) -> None:
    """Receive delivery receipts from Twilio (and Zalo) over HTTP."""
    from_main = _main_db_url(ctx)
    source = ctx.get_parameter_source("database_url")
    # An explicit --database-url here wins; the environment does not override the main group's.
    if database_url and (source == ParameterSource.COMMANDLINE or not from_main):
        ctx.meta[_DB_URL] = database_url
    else:
        ctx.meta[_DB_URL] = from_main


_DB_URL = "outreach.receipts.receiver.db_url"


def _main_db_url(ctx: click.Context) -> str | None:
    """The main group's database URL: ``ctx.obj.db_url`` (the CLI's Ctx) or
    ``ctx.obj["db_url"]``."""
    obj = ctx.obj
    if isinstance(obj, dict):
        return obj.get("db_url")
    return getattr(obj, "db_url", None)


@webhooks.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (put a TLS reverse proxy in front for Twilio).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="waitress worker threads.")
@click.option("--no-twilio", is_flag=True,
              help="Start without the Twilio routes (TWILIO_AUTH_TOKEN not needed).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="Refuse bodies larger than this before reading them (413) [default: 262144].")
@click.option("--max-header-bytes", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="Refuse request headers larger than this (431) [default: 16384].")
@click.option("--timeout", "channel_timeout", type=click.IntRange(min=1), default=None,
              metavar="SECONDS", help="Close a connection idle this long [default: 30].")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, threads: int, no_twilio: bool,
          max_body_bytes: int | None, max_header_bytes: int | None,
          channel_timeout: int | None) -> None:
    """Serve POST /webhooks/twilio/status[/<delivery id>], POST /twilio/inbound (citizens'
    SMS replies), POST /webhooks/zalo (receipts, replies, unfollows), /webhooks/esms/status and
    /webhooks/esms/mo (with OUTREACH_ESMS_MO_KEY), and GET /healthz.

    Keyword replies (OUTREACH_INBOUND_FILE: the keyword table) opt out and are confirmed once
    through the gateway they came in on, configured from the environment as for sending.

    Reads TWILIO_AUTH_TOKEN (to verify X-Twilio-Signature) and OUTREACH_PUBLIC_BASE_URL (the
    public https base URL Twilio calls, also given to the gateway for StatusCallback) from the
    environment; neither is ever printed.
    """
    from outreach.receipts import receiver as app_module
    from outreach.ledger.db import Database, has_schema

    token = os.environ.get("TWILIO_AUTH_TOKEN") or None
    if no_twilio:
        token = None
    elif not token:
        raise click.UsageError(_("TWILIO_AUTH_TOKEN is not set: Twilio callbacks could not be "
                                 "verified. Set it, or pass --no-twilio to serve without them."))
    from outreach.receipts import inbound

    try:
        settings = inbound.current_settings()
    except inbound.InboundConfigError as exc:
        raise click.ClickException(str(exc)) from None
    public = os.environ.get("OUTREACH_PUBLIC_BASE_URL") or None
    url = config.database_url(ctx.meta.get(_DB_URL))
    db = Database(url)
    if not has_schema(db.engine):
        raise click.ClickException(_("the database {url} has no schema; run `outreach db "
                                     "upgrade` first").format(url=config.redact_url(url)))
    if token and not public:
        click.echo(_("warning: OUTREACH_PUBLIC_BASE_URL is not set; signatures are checked "
                     "against the URL this server sees, which is wrong behind a reverse proxy"),
                   err=True)
    routes = (_("Twilio receipts and inbound SMS; {optout} opt-out and {optin} opt-in keywords")
              if token else
              _("no Twilio routes; {optout} opt-out and {optin} opt-in keywords")).format(
        optout=number(len(settings.optout)), optin=number(len(settings.optin)))
    click.echo(_("outreach webhooks on http://{host}:{port} ({routes}, {threads} threads, "
                 "database {db})").format(host=host, port=port, routes=routes,
                                          threads=number(threads), db=config.redact_url(url)),
               err=True)
    limits = {k: v for k, v in (("max_body_bytes", max_body_bytes),
                                ("max_header_bytes", max_header_bytes),
                                ("channel_timeout", channel_timeout)) if v is not None}
    app_module.serve(db, host, port, threads=threads, twilio_auth_token=token,
                     public_base_url=public, **limits)

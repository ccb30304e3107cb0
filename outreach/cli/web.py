"""``outreach web serve``: the web application with waitress, on loopback by default."""

from __future__ import annotations

import os

import click

from outreach import config
from outreach.cli import Ctx, pass_ctx
from outreach.i18n import _


@click.group()
def web() -> None:
    """The web application for the people who follow a campaign (Vietnamese pages)."""


@web.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback; put a TLS reverse proxy in front for others).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--trusted-header", metavar="HEADER",
              help="Sign in the account named by this header (e.g. X-Remote-User) on requests "
                   "from --trusted-proxy only: for a single-sign-on reverse proxy.")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, default=("127.0.0.1", "::1"),
              show_default=True, metavar="ADDRESS", help="Address or network of the proxy.")
@click.option("--secure-cookies", is_flag=True, help="Session cookie only over HTTPS.")
@click.option("--org", default="Sở Thông tin và Truyền thông", show_default=True,
              help="Organisation shown in the header and the official report.")
@pass_ctx
def serve(c: Ctx, host: str, port: int, threads: int, trusted_header: str | None,
          trusted_proxies: tuple[str, ...], secure_cookies: bool, org: str) -> None:
    """Serve the dashboard. OUTREACH_WEB_SECRET_KEY (≥ 32 characters) signs the session
    cookies; without it a random key is made and sessions end when the server stops."""
    from outreach import web as webapp

    key = os.environ.get("OUTREACH_WEB_SECRET_KEY") or None
    if key is not None and len(key) < 32:
        raise click.UsageError(_("OUTREACH_WEB_SECRET_KEY must have at least 32 characters"))
    db = c.db
    with db.engine.connect() as conn:
        from outreach import users

        if not users.list_all(conn):
            click.echo(_("note: no account yet; add one with `outreach users add NAME --role "
                         "admin`"), err=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(_("warning: listening on {host}, not only on this machine: use HTTPS through "
                     "a reverse proxy and --secure-cookies").format(host=host), err=True)
    header = (_(", sign-in by header {header}").format(header=trusted_header)
              if trusted_header else "")
    click.echo(_("outreach web on http://{host}:{port} (database {db}{header})").format(
        host=host, port=port, db=config.redact_url(db.url), header=header), err=True)
    webapp.serve(db, host, port, threads=threads, secret_key=key, trusted_header=trusted_header,
                 trusted_proxies=trusted_proxies, secure_cookies=secure_cookies, org=org)

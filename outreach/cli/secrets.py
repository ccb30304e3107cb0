"""``outreach secrets status|rotate``: provider tokens stored in the database, encrypted at rest."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from outreach.cli import Ctx, console, pass_ctx
from outreach.i18n import _


@click.group()
def secrets() -> None:
    """Provider secrets kept in the database (Zalo tokens), encrypted with OUTREACH_SECRET_KEY."""


def _rows(c: Ctx) -> list[str]:
    from outreach.ledger.models import GatewayToken

    with c.db.engine.connect() as conn:
        return list(conn.execute(select(GatewayToken.gateway).order_by(GatewayToken.gateway))
                    .scalars())


@secrets.command("status")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def status(c: Ctx, fmt: str) -> None:
    """Which stored secrets are encrypted (needs no key; never prints a secret)."""
    from outreach.gateways.zalo_tokens import TokenStore

    data = [{"gateway": g, "state": (st := TokenStore(c.db, g).status())["state"],
             "encrypted": st["encrypted"]} for g in _rows(c)]
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        console.print(_("no provider secret is stored in the database"))
    for d in data:
        line = (_("{gateway}: tokens encrypted ({state})") if d["encrypted"] else
                _("{gateway}: tokens in PLAINTEXT ({state}); run `outreach secrets rotate`"))
        console.print(line.format(gateway=d["gateway"], state=_(d["state"])))


@secrets.command("rotate")
@pass_ctx
def rotate(c: Ctx) -> None:
    """Re-encrypt every stored secret with the first key of OUTREACH_SECRET_KEY.

    Rotation: set OUTREACH_SECRET_KEY=NEW,OLD for every process, run this, then set
    OUTREACH_SECRET_KEY=NEW. Also encrypts tokens stored in plaintext by older versions.
    """
    from outreach import secretstore
    from outreach.reporting import audit
    from outreach.gateways.zalo_tokens import TokenStore

    kid = secretstore.key_id()  # SecretKeyError (one line) when the key is missing
    done = []
    for g in _rows(c):
        store = TokenStore(c.db, g)
        for _attempt in range(20):  # a refresh meanwhile wins the compare-and-swap: try again
            if store.reseal():
                break
        else:
            raise click.ClickException(_("{gateway}: the tokens kept changing during the "
                                         "rotation; run it again").format(gateway=g))
        done.append(g)
        console.print(_("{gateway}: tokens encrypted with key {key}").format(gateway=g, key=kid))
    with c.db.engine.begin() as conn:
        audit.record(conn, "token", operator=c.operator,
                     details={"action": "rotate-key", "key_id": kid, "gateways": done})
    if not done:
        console.print(_("no provider secret is stored in the database"))

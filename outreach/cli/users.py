"""``outreach users add|list|disable|enable`` and ``outreach approvals show|relax|require``."""

from __future__ import annotations

import json
import os

import click
from rich.table import Table

from outreach.cli import Ctx, console, pass_ctx
from outreach.i18n import N_, _, label


@click.group()
def users() -> None:
    """Accounts of the web application (roles: viewer, operator, approver, admin)."""


@users.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["viewer", "operator", "approver", "admin"]))
@click.option("--name", "display_name", help="Full name shown in pages and the audit log.")
@click.option("--password-env", metavar="VAR",
              help="Read the password from this environment variable (default: ask twice).")
@click.option("--no-password", is_flag=True,
              help="Sign-in only through the trusted reverse-proxy header (single sign-on).")
@pass_ctx
def add(c: Ctx, username: str, role: str, display_name: str | None, password_env: str | None,
        no_password: bool) -> None:
    """Create an account. The password is never echoed, printed or logged."""
    from outreach import users as usermod

    password: str | None
    if no_password:
        password = None
    elif password_env:
        password = os.environ.get(password_env)
        if not password:
            raise usermod.UserError(_("environment variable {name} is not set or empty").format(
                name=password_env))
    else:
        password = click.prompt(_("password"), hide_input=True, confirmation_prompt=True)
    with c.db.engine.begin() as conn:
        acc = usermod.add(conn, username, role, password=password, display_name=display_name,
                          operator=c.operator)
    console.print(_("user {user} added (role {role}{proxy})").format(
        user=acc.username, role=usermod.role_label(acc.role, in_sentence=True),
        proxy=_(", reverse-proxy sign-in only") if password is None else ""))


@users.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def list_(c: Ctx, fmt: str) -> None:
    """Every account with its role and whether it is active."""
    from outreach import users as usermod

    with c.db.engine.connect() as conn:
        accs = usermod.list_all(conn)
    if fmt == "json":
        click.echo(json.dumps([{"username": a.username, "name": a.display_name, "role": a.role,
                                "active": a.active} for a in accs], ensure_ascii=False, indent=2))
        return
    t = Table(title=_("Users"))
    for col in (_("user"), _("name"), _("role"), label(N_("account|active"))):
        t.add_column(col)
    for a in accs:
        t.add_row(a.username, a.display_name or "", usermod.role_label(a.role),
                  _("yes") if a.active else _("no"))
    console.print(t)


@users.command("disable")
@click.argument("username")
@pass_ctx
def disable(c: Ctx, username: str) -> None:
    """Disable an account: it can no longer sign in or approve (its history stays)."""
    from outreach import users as usermod

    with c.db.engine.begin() as conn:
        acc = usermod.set_active(conn, username, False, operator=c.operator)
    console.print(_("user {user} disabled").format(user=acc.username))


@users.command("enable")
@click.argument("username")
@pass_ctx
def enable(c: Ctx, username: str) -> None:
    """Enable a disabled account again."""
    from outreach import users as usermod

    with c.db.engine.begin() as conn:
        acc = usermod.set_active(conn, username, True, operator=c.operator)
    console.print(_("user {user} enabled").format(user=acc.username))


@click.group()
def approvals() -> None:
    """The maker–checker requirement for sends that reach phones."""


@approvals.command("relax")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@pass_ctx
def relax(c: Ctx, reason: str) -> None:
    """Lift the approval requirement (admin accounts only, audited; every send is noted)."""
    from outreach import config
    from outreach.sending import approvals as ap

    with c.db.engine.begin() as conn:
        ap.set_required(conn, False, operator=c.operator or config.default_operator(),
                        reason=reason)
    console.print(_("[yellow]approval requirement lifted[/yellow]: sends that reach phones no "
                    "longer need a second person's approval (recorded in the audit log)"))


@approvals.command("require")
@pass_ctx
def require(c: Ctx) -> None:
    """Restore the approval requirement (the default)."""
    from outreach import config
    from outreach.sending import approvals as ap

    with c.db.engine.begin() as conn:
        ap.set_required(conn, True, operator=c.operator or config.default_operator(), reason=None)
    console.print(_("approval requirement restored"))

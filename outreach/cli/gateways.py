"""`outreach gateways` commands: check a gateway's credentials, manage the Zalo OAuth tokens."""

from __future__ import annotations

import datetime as dt
import inspect
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from outreach import config
from outreach.i18n import N_, _, number, when
from outreach.reporting import audit

_META_URL = "outreach.gateways.database_url"
#: Keys never printed, whatever a gateway's check() returns.
_SECRET_WORDS = ("secret", "password", "auth_token", "access_token", "refresh_token", "api_key")


def _database_url(ctx: click.Context) -> str:
    url = ctx.meta.get(_META_URL)
    if not url:
        parent = ctx.find_root().obj
        url = getattr(parent, "database_url", None) or (
            parent.get("database_url") if isinstance(parent, dict) else None)
    return config.database_url(url)


def _database(ctx: click.Context) -> Any:
    from outreach.ledger.db import Database

    return Database(_database_url(ctx))


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _set_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.meta[_META_URL] = value
    return value


_db_option = click.option("--database-url", envvar=config.ENV_DATABASE_URL, expose_value=False,
                          callback=_set_url, is_eager=True,
                          help="SQLAlchemy URL (env OUTREACH_DATABASE_URL).")


@click.group()
@_db_option
def gateways() -> None:
    """Check gateways and manage their credentials."""


#: A check() fact's key → the English words the Vietnamese table shows for it (a msgid); the
#: English table shows the keys themselves, as it always has; a key not listed is shown as is.
FACT_LABELS: dict[str, str] = {
    "gateway": N_("gateway"),
    "ok": N_("check passed"),
    "account": N_("account"),
    "account_name": N_("account name"),
    "account_status": N_("account status"),
    "auth": N_("authentication"),
    "sender": N_("sender"),
    "messaging_service_sid": N_("messaging service"),
    "api_url": N_("API address"),
    "status_callback_base": N_("delivery receipt address"),
    "validity_period": N_("validity period (seconds)"),
    "app_id": N_("Zalo app id"),
    "zns_api": N_("ZNS API address"),
    "oa_api": N_("Official Account API address"),
    "daily_quota": N_("daily quota"),
    "remaining_quota": N_("quota left today"),
    "token_version": N_("token version"),
    "token_expires_at": N_("token expires at"),
    "host": N_("host"),
    "port": N_("port"),
    "system_id": N_("system id"),
    "smsc": N_("SMSC"),
    "tls": N_("TLS encryption"),
    "window": N_("window (requests in flight)"),
    "join": N_("joining long messages"),
    "source": N_("source address"),
    "sandbox": N_("sandbox (nothing delivered)"),
    "callbacks": N_("delivery receipts by callback"),
    "balance_vnd": N_("balance (VND)"),
    "user_id": N_("user id"),
}


def fact_label(key: str) -> str:
    """A fact's key as the table shows it: the key itself in English, its words in another
    interface language (``ok`` → ``kiểm tra đạt``); an unknown key as is."""
    from outreach import i18n

    found = FACT_LABELS.get(key)
    if found is None or i18n.current() == "en":
        return key
    return _(found)


def check_error(name: str, exc: Any) -> str:
    """The one-line message of a failed check (a :class:`~outreach.gateways.base.GatewayError`):
    English ``NAME: REASON-CODE (code N): DETAIL``, as it always was; another interface language
    ``NAME: DETAIL (mã N)`` without the English reason code (the detail is already in the
    interface language; without one, the reason's label from :mod:`outreach.sending.reasons`)."""
    from outreach import i18n
    from outreach.sending import reasons

    code = (_(" (code {code})").format(code=exc.provider_code) if exc.provider_code else "")
    if i18n.current() == "en":
        return f"{name}: {exc.reason}{code}: {exc.detail or exc}"
    return f"{name}: {exc.detail or reasons.describe(exc.reason)}{code}"


def _fact_value(value: Any) -> str:
    """A fact as the table shows it (English: as it is; Vietnamese: có/không for a flag, a
    time as ``08:00 ngày 30/07/2024``)."""
    from outreach import i18n

    if i18n.current() == "en":
        return str(value)
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, dt.datetime):
        return i18n.when(value)
    return str(value)


def _printable(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in facts.items()
            if not any(word in k.lower() for word in _SECRET_WORDS)}


@gateways.command("check")
@click.argument("name")
@_db_option
def check(name: str) -> None:
    """Validate gateway NAME's configuration and credentials without sending a message."""
    from outreach.gateways import base, gateway_class

    ctx = click.get_current_context()
    console = Console()
    db = None
    try:
        cls = gateway_class(name)
        options: dict[str, Any] = {}
        if "db" in inspect.signature(cls.__init__).parameters:
            db = options["db"] = _database(ctx)
        gateway = cls(**options)
        try:
            facts = gateway.check()
        finally:
            gateway.close()
    except base.GatewayError as exc:
        _fail(check_error(name, exc))
        return
    except ImportError as exc:
        _fail(_("{name}: the gateway cannot be loaded ({error})").format(name=name, error=exc))
        return
    except Exception as exc:  # a database without schema, an unreadable URL...
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            _fail(_("{name}: database error ({kind}); is the schema created (`outreach db "
                    "upgrade`)?").format(name=name, kind=type(exc).__name__))
        raise
    finally:
        if db is not None:
            db.dispose()
    table = Table(title=_("gateway {name}").format(name=name), show_header=False)
    table.add_column(_("fact"), style="bold")
    table.add_column(_("value"))
    for key, value in _printable(facts).items():
        table.add_row(fact_label(str(key)), _fact_value(value))
    console.print(table)


@gateways.group("zalo")
@_db_option
def zalo() -> None:
    """Zalo Official Account / ZNS: OAuth tokens."""


@zalo.command("set-token")
@click.option("--access-token", envvar="ZALO_ACCESS_TOKEN", default=None,
              help="Access token from the OA consent (env ZALO_ACCESS_TOKEN; prompted, hidden, "
                   "if absent; empty = refresh on first use). Prefer the env var or the prompt: "
                   "command-line values stay in shell history.")
@click.option("--refresh-token", envvar="ZALO_REFRESH_TOKEN", default=None,
              help="Refresh token (env ZALO_REFRESH_TOKEN; prompted, hidden, if absent).")
@click.option("--expires-in", type=click.IntRange(min=1), default=90000, show_default=True,
              help="Seconds the access token is valid (Zalo gives 90000 = 25 h).")
@click.option("--operator", default=None, help="Who is setting the token (audit log).")
@_db_option
def set_token(access_token: str | None, refresh_token: str | None, expires_in: int,
              operator: str | None) -> None:
    """Store Zalo OAuth tokens obtained by an OA administrator (never printed).

    The refresh token is single-use: once stored here only this database refreshes it; do not
    use it anywhere else.
    """
    from outreach.gateways.zalo_tokens import TokenStore

    ctx = click.get_current_context()
    if refresh_token is None:
        refresh_token = click.prompt(_("Zalo refresh token"), hide_input=True)
    if access_token is None:
        access_token = click.prompt(_("Zalo access token (Enter: refresh on first use)"),
                                    hide_input=True, default="", show_default=False)
    refresh_token = (refresh_token or "").strip()
    access_token = (access_token or "").strip()
    db = _database(ctx)
    store = TokenStore(db, "zalo")
    try:
        with db.engine.begin() as conn:
            version = store.set_tokens(access_token, refresh_token, expires_in, conn=conn)
            audit.record(conn, "token", operator=operator,
                         details={"gateway": "zalo", "version": version,
                                  "with_access_token": bool(access_token),
                                  "expires_in_seconds": expires_in if access_token else 0})
    except ValueError as exc:
        _fail(str(exc))
    except Exception as exc:
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            _fail(_("could not store the token: database error ({kind}); is the schema created "
                    "(`outreach db upgrade`)?").format(kind=type(exc).__name__))
        raise
    finally:
        db.dispose()
    click.echo(_("Zalo tokens stored (version {version}).").format(version=version))


@zalo.command("token-status")
@_db_option
def token_status() -> None:
    """Show the Zalo token's state, version and expiry (never the tokens). Exit code 1 when no
    usable token is stored."""
    from sqlalchemy.exc import SQLAlchemyError

    from outreach.gateways.zalo_tokens import TokenStore

    ctx = click.get_current_context()
    db = _database(ctx)
    try:
        st = TokenStore(db, "zalo").status()
    except SQLAlchemyError as exc:
        _fail(_("database error ({kind}); is the schema created?").format(
            kind=type(exc).__name__))
        return
    finally:
        db.dispose()
    table = Table(title=_("Zalo token"), show_header=False)
    table.add_column("", style="bold")
    table.add_column(_("value"))
    table.add_row(_("state"), _(st["state"]))
    table.add_row(_("version"), str(st["version"]) if st["version"] is not None else "-")
    expires: dt.datetime | None = st["expires_at"]
    if expires is not None:
        table.add_row(_("expires at"), _("{time} (Vietnam time)").format(time=when(expires)))
        table.add_row(_("expires in"), _("{n} s").format(n=number(st["expires_in_seconds"])))
    if st["updated_at"] is not None:
        table.add_row(_("updated at"), _("{time} (Vietnam time)").format(
            time=when(st["updated_at"])))
    if st["detail"]:
        table.add_row(_("note"), st["detail"])
    Console().print(table)
    if st["state"] in ("missing", "rejected", "unknown", "interrupted"):
        ctx.exit(1)

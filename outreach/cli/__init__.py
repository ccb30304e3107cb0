"""The ``outreach`` command line: noun groups with verb commands, errors as one clear message."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
from rich.console import Console

from outreach import __version__

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class Ctx:
    """What every command shares: database URL, operator name, whether to show numbers."""

    def __init__(self, db_url: str | None, operator: str | None, show_numbers: bool,
                 debug: bool) -> None:
        self.db_url = db_url
        self.operator = operator
        self.show_numbers = show_numbers
        self.debug = debug
        self._db: Any = None

    @property
    def db(self) -> Any:
        if self._db is None:
            from outreach import config
            from outreach.ledger.db import Database

            url = config.database_url(self.db_url)
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
            fresh = path is not None and path != ":memory:" and not os.path.exists(path)
            self._db = Database(url)
            self._db.upgrade()
            if fresh:
                err_console.print(f"note: created a new, empty database at {path}")
        return self._db

    def phone(self, e164: str | None) -> str:
        if not e164:
            return ""
        if self.show_numbers:
            return e164
        from outreach.input.phones import mask

        return mask(e164)


pass_ctx = click.make_pass_decorator(Ctx)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    from outreach.input.campaigns import CampaignError
    from outreach.gateways.base import GatewayError
    from outreach.input.listfiles import ListFileError
    from outreach.sending.ops import OperatorError
    from outreach.ledger.runs import RunError
    from outreach.receipts.inbound import InboundConfigError
    from outreach.users import UserError

    return (OperatorError, CampaignError, ListFileError, GatewayError, RunError, SQLAlchemyError,
            OSError, UserError, InboundConfigError)


class OutreachGroup(click.Group):
    """Turns every expected error into one line on stderr and exit code 1; anything else into
    an 'internal error' line (exit 2) — the traceback only with ``--debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise SystemExit(130) from None
        except Exception as exc:
            debug = bool(ctx.obj and getattr(ctx.obj, "debug", False))
            if debug:
                raise
            expected = _expected_errors()
            if isinstance(exc, ModuleNotFoundError):
                from outreach import extras

                missing = exc if isinstance(exc, extras.MissingExtra) else \
                    extras.for_module(exc.name)
                if missing is not None:  # an optional extra: say which and how to install it
                    from rich.markup import escape

                    err_console.print(f"[red]error:[/red] {escape(str(missing))}", markup=True,
                                      soft_wrap=True)
                    raise SystemExit(1) from None
                err_console.print(f"[red]error:[/red] a required module is not installed: "
                                  f"{exc.name} (for this database URL or gateway)", markup=True)
                raise SystemExit(1) from None
            if isinstance(exc, expected):
                msg = str(exc)
                from sqlalchemy.exc import SQLAlchemyError

                if isinstance(exc, SQLAlchemyError):
                    msg = f"database error: {getattr(exc, 'orig', exc)}"
                from rich.markup import escape

                # escaped: "pip install 'outreach[twilio]'" is text, not a style tag
                err_console.print(f"[red]error:[/red] {escape(msg)}", markup=True,
                                  soft_wrap=True)
                raise SystemExit(1) from None
            err_console.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc} "
                              "(run with --debug for the traceback, and report it)", markup=True)
            raise SystemExit(2) from None


@click.group(cls=OutreachGroup)
@click.version_option(__version__, prog_name="outreach")
@click.option("--database-url", envvar="OUTREACH_DATABASE_URL", metavar="URL",
              help="SQLAlchemy URL (default: SQLite at $OUTREACH_HOME/outreach.db, "
                   "OUTREACH_HOME defaults to ./.outreach).")
@click.option("--operator", envvar="OUTREACH_OPERATOR", help="Name recorded in the audit log "
              "(default: the operating-system user).")
@click.option("--show-numbers", is_flag=True, help="Show whole phone numbers (masked by default).")
@click.option("--debug", is_flag=True, hidden=True)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, operator: str | None, show_numbers: bool,
         debug: bool, verbose: int) -> None:
    """outreach: send a prescribed message by SMS and Zalo to every recipient, exactly once,
    and report who got it."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from outreach.logmask import install

    install()
    ctx.obj = Ctx(database_url, operator, show_numbers, debug)


def _register() -> None:
    from outreach.cli import (campaign, carriers, db as dbcmd, deliveries, message, optout,
                              recipients, report)

    main.add_command(campaign.campaign)
    main.add_command(campaign.runs)
    main.add_command(recipients.recipients)
    main.add_command(optout.optout)
    main.add_command(report.report)
    main.add_command(deliveries.deliveries)
    main.add_command(message.message)
    main.add_command(dbcmd.db)
    main.add_command(dbcmd.audit)
    main.add_command(carriers.carriers)
    optional = {
        "webhooks": ("outreach.cli.webhooks", "webhooks"),
        "gateways": ("outreach.cli.gateways", "gateways"),
        "schedule": ("outreach.cli.schedule", "schedule"),
        "scheduler": ("outreach.cli.schedule", "scheduler"),
        "worker": ("outreach.cli.worker", "worker"),
        "privacy": ("outreach.cli.privacy", "privacy"),
        "users": ("outreach.cli.users", "users"),
        "approvals": ("outreach.cli.users", "approvals"),
        "web": ("outreach.cli.web", "web"),
        "secrets": ("outreach.cli.secrets", "secrets"),
        "smpp": ("outreach.cli.smpp", "smpp"),
        "inbox": ("outreach.cli.inbox", "inbox"),
    }
    import importlib

    # citizens' replies over SMPP are recorded by the receipts stage's hook (outreach.gateways.smpp)
    importlib.import_module("outreach.receipts.inbound")
    for _name, (module, attr) in optional.items():
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            if os.environ.get("OUTREACH_STRICT_CLI"):
                raise
            logging.getLogger(__name__).debug("command %s unavailable: %s", attr, exc)
            continue
        cmd = getattr(mod, attr, None)
        if cmd is not None:
            main.add_command(cmd)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

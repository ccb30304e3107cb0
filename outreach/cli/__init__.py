"""The ``outreach`` command line: noun groups with verb commands, errors as one clear message."""

from __future__ import annotations

import errno
import gc
import logging
import os
import re
import sys
from typing import Any

import click
from rich.console import Console

from outreach import __version__, i18n, safeio
from outreach.i18n import N_, _, label

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
#: ``--wide``: the width tables may take (columns); otherwise the terminal's (80 in a pipe).
WIDE_COLUMNS = 400
_NATURAL_WIDTH = {id(console): console._width, id(err_console): err_console._width}


class DatabaseProblem(Exception):
    """The database cannot be opened or brought up to date: the message names the database and
    the likely cause (:func:`database_error_message`)."""


class OutputFolderMissing(click.ClickException):
    """An output option names a folder that does not exist: one line on stderr, exit 2 (a
    usage error), nothing written."""

    exit_code = 2


class OutPath(click.Path):
    """The type of every output option (``--out``, ``--export``, ``--reject-file``, an OUT
    argument): checked before the command runs (:func:`outreach.safeio.require_folder`), so a
    missing folder is an error naming it and nothing is written; never created silently.
    ``is_folder``: the option names an output folder the command creates (its help says so);
    its parent must exist."""

    def __init__(self, *, is_folder: bool = False) -> None:
        super().__init__(file_okay=not is_folder, dir_okay=is_folder, writable=True)
        self.is_folder = is_folder

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        value = super().convert(value, param, ctx)
        try:
            safeio.require_folder(value, is_folder=self.is_folder)
        except safeio.MissingFolder as exc:
            option = (param.opts[0] if isinstance(param, click.Option) and param.opts
                      else i18n.metavar(param.human_readable_name) if param is not None
                      else "")
            if exc.not_a_folder:
                msg = _("{option} {path}: {folder} is a file, not a folder; nothing was "
                        "written").format(option=option, path=value, folder=exc.folder)
            else:
                msg = _("{option} {path}: the folder {folder} does not exist; nothing was "
                        "written (create it first, or give a path in an existing folder)"
                        ).format(option=option, path=value, folder=exc.folder)
            raise OutputFolderMissing(msg) from None
        return value


#: An output file whose folder must exist; an output folder created by the command.
OUT_FILE = OutPath()
OUT_FOLDER = OutPath(is_folder=True)


class Ctx:
    """What every command shares: database URL, operator name, whether to show numbers."""

    def __init__(self, db_url: str | None, operator: str | None, show_numbers: bool,
                 debug: bool) -> None:
        self.db_url = db_url
        self.operator = operator
        self.show_numbers = show_numbers
        self.debug = debug
        self._db: Any = None

    def close(self) -> None:
        """Close the database's pooled connections when the command ends (a process that runs
        several commands, a test or a script calling ``main``, keeps no file open)."""
        if self._db is not None:
            self._db.dispose()
            self._db = None

    @property
    def db(self) -> Any:
        if self._db is None:
            from outreach import config
            from outreach.ledger.db import Database

            url = config.database_url(self.db_url)
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
            fresh = path is not None and path != ":memory:" and not os.path.exists(path)
            # a 0-byte file (a failed copy, a truncated restore) is said, never passed over
            emptied = (path is not None and path != ":memory:" and not fresh
                       and os.path.getsize(path) == 0)
            try:
                self._db = Database(url)
                self._db.upgrade()
            except Exception as exc:
                from alembic.util import CommandError
                from sqlalchemy.exc import SQLAlchemyError

                if isinstance(exc, (CommandError, SQLAlchemyError)) or (
                        isinstance(exc, OSError) and safeio.write_problem(exc.errno, None)):
                    self._db = None
                    raise DatabaseProblem(database_error_message(exc, self)) from None
                raise
            if fresh:
                err_console.print(_("note: created a new, empty database at {path}").format(
                    path=path))
            elif emptied:
                err_console.print(_("[yellow]warning:[/yellow] the database file {path} was "
                                    "empty (0 bytes); it now holds a new, empty ledger. If it "
                                    "should have held campaigns, stop and restore it from a "
                                    "backup.").format(path=path), markup=True)
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
            OSError, UserError, InboundConfigError, DatabaseProblem)


class OutreachGroup(click.Group):
    """Turns every expected error into one line on stderr and exit code 1; anything else into
    an 'internal error' line (exit 2) — the traceback only with ``--debug``; Ctrl-C exits 130
    (128 + SIGINT, as shells do). Sets the interface language before anything is parsed
    (``OUTREACH_LANG`` or the locale; ``--lang`` then overrides it, see ``outreach.i18n``)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # the objects made by importing the package (a few hundred thousand) never die:
        # moved out of the collector's generations, they are not scanned again by every full
        # collection of a million-row import or send (Python docs, gc.freeze)
        gc.freeze()
        i18n.init_from_environment()
        translate_commands(self)
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, SystemExit):
            raise
        except (KeyboardInterrupt, click.Abort) as exc:
            if isinstance(exc, click.Abort) and exc.__context__ is None:
                raise  # a prompt answered "no": click prints "Aborted!" (exit 1)
            err_console.print(_("interrupted (Ctrl-C)"))
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
                err_console.print(_("[red]error:[/red] a required module is not installed: "
                                    "{name} (for this database URL or gateway)").format(
                                        name=exc.name), markup=True)
                raise SystemExit(1) from None
            if isinstance(exc, expected):
                msg = str(exc)
                from sqlalchemy.exc import SQLAlchemyError

                if isinstance(exc, SQLAlchemyError):
                    msg = database_error_message(exc, ctx.obj)
                elif isinstance(exc, OSError) and exc.errno is not None:
                    msg = safeio.os_error_text(exc)  # by errno: permissions, read-only, full
                from rich.markup import escape

                # escaped: "pip install 'outreach[twilio]'" is text, not a style tag
                err_console.print(_("[red]error:[/red] {message}").format(message=escape(msg)),
                                  markup=True, soft_wrap=True)
                raise SystemExit(1) from None
            err_console.print(_("[red]internal error:[/red] {kind}: {message} (run with --debug "
                                "for the traceback, and report it)").format(
                                    kind=type(exc).__name__, message=exc), markup=True)
            raise SystemExit(2) from None


def database_error_message(exc: BaseException, obj: Any) -> str:
    """One line for a database error: the database (the SQLite file, or the server URL without
    its password) and the likely cause — no permission, a read-only filesystem, a full disk
    (by errno, :func:`outreach.safeio.write_problem`), a damaged file, a database written by
    another version of outreach, a server that does not answer — else the driver's message."""
    from outreach import config

    orig = getattr(exc, "orig", None) or exc
    text = str(orig)
    low = text.lower()
    try:
        url = config.database_url(getattr(obj, "db_url", None))
    except Exception:  # noqa: BLE001 - the message must still be shown
        url = ""
    if url.startswith("sqlite:///"):
        where = url[len("sqlite:///"):]
    else:
        from sqlalchemy.engine import make_url

        try:
            where = make_url(url).render_as_string(hide_password=True) if url else "?"
        except Exception:  # noqa: BLE001
            where = "?"
    code = getattr(orig, "errno", None) if isinstance(orig, OSError) else None
    if code is None:  # a driver's message: its words, else what the filesystem says
        if "read-only file system" in low:
            code = errno.EROFS
        elif "disk is full" in low or "no space left" in low:
            code = errno.ENOSPC
        elif "quota" in low:
            code = getattr(errno, "EDQUOT", errno.ENOSPC)
        elif "readonly" in low or "read-only" in low or "unable to open database" in low:
            # SQLite says "readonly database" for a read-only mount and for a file this user
            # may not write alike: ask the filesystem which it is
            code = (safeio.probe_write_problem(where) if url.startswith("sqlite:///")
                    else None) or errno.EACCES
        elif "permission denied" in low:
            code = errno.EACCES
    fs_cause = safeio.write_problem(code, where)
    if fs_cause is not None:
        cause = fs_cause
    elif "malformed" in low or "not a database" in low or "file is encrypted" in low or \
            "disk image" in low:
        cause = _("the file is damaged or is not an outreach database (corruption): restore "
                  "it from a backup, or point --database-url at the right file")
    elif "no such table" in low or "no such column" in low or "undefinedtable" in low or \
            "undefinedcolumn" in low or ("column" in low and "does not exist" in low) or \
            "can't locate revision" in low:
        cause = _("the database was written by another version of outreach: run `outreach db "
                  "upgrade` with the newest version (or use the version that created it)")
    elif "connection refused" in low or "could not connect" in low or "timeout" in low:
        cause = _("the database server does not answer: is it running, and is the URL right?")
    elif "locked" in low or "busy" in low:
        cause = _("another outreach process holds the database: wait for it to finish")
    else:
        cause = text.splitlines()[0] if text else type(orig).__name__
    return _("database {where}: {cause}").format(where=where, cause=cause)


#: The format of the log lines on stderr (``-v``; warnings always).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Log levels as a log line names them, marked ``log|LEVEL``.
LOG_LEVELS = {"DEBUG": N_("log|DEBUG"), "INFO": N_("log|INFO"), "WARNING": N_("log|WARNING"),
              "ERROR": N_("log|ERROR"), "CRITICAL": N_("log|CRITICAL")}


#: The lines of waitress (the HTTP server of ``webhooks serve`` and ``web serve``) that an
#: operator reads, with the words they carry.
WAITRESS_LINES = (
    (re.compile(r"Serving on (?P<url>\S+)"), N_("listening on {url}")),
    (re.compile(r"Task queue depth is (?P<n>\d+)"),
     N_("{n} requests are waiting for a free server thread (more threads: --threads)")),
)


class LogFormatter(logging.Formatter):
    """Log lines with their level in the interface language (``CẢNH_BÁO``, ``LỖI``), and the
    lines of waitress in it too (:data:`WAITRESS_LINES`), read when each line is written;
    stamped in Vietnam's time (:func:`outreach.i18n.stamp`), whatever the server's zone."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        import datetime as dt

        return i18n.stamp(dt.datetime.fromtimestamp(record.created, dt.timezone.utc))

    def format(self, record: logging.LogRecord) -> str:
        saved = record.levelname, record.msg, record.args
        if record.levelname in LOG_LEVELS:
            record.levelname = label(LOG_LEVELS[record.levelname])
        if record.name.startswith("waitress"):
            message = record.getMessage()
            for pattern, msgid in WAITRESS_LINES:
                found = pattern.fullmatch(message)
                if found:
                    record.msg, record.args = _(msgid).format(**found.groupdict()), None
                    break
        try:
            return super().format(record)
        finally:
            record.levelname, record.msg, record.args = saved


def _lang_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    try:
        lang = i18n.resolve(value)
    except i18n.LanguageError:
        # said in the locale's language, naming where the value came from
        i18n.set_language(i18n.language_from_locale())
        translate_commands(ctx.find_root().command)
        source = ("OUTREACH_LANG" if ctx.get_parameter_source(param.name or "lang")
                  == click.core.ParameterSource.ENVIRONMENT else "--lang")
        raise click.UsageError(_("{source}={value!r}: the interface speaks vi (Vietnamese) or "
                                 "en (English)").format(source=source, value=value)) from None
    i18n.set_language(lang)
    translate_commands(ctx.find_root().command)
    return lang


def _show_version(ctx: click.Context) -> None:
    click.echo(_("outreach, version {version}").format(version=__version__))
    ctx.exit()


def translate_commands(cmd: click.Command) -> None:
    """Put every help text of ``cmd`` and its subcommands in the current language (the English
    originals are kept on the objects, so the language can change between invocations)."""
    from outreach.i18n_tools import help_key

    def tr(obj: Any, attr: str) -> None:
        key = f"_i18n_{attr}"
        if not hasattr(obj, key):
            setattr(obj, key, getattr(obj, attr, None))
        orig = getattr(obj, key)
        if orig:
            setattr(obj, attr, _(help_key(orig)))

    seen: set[int] = set()

    def walk(c: click.Command) -> None:
        if id(c) in seen:
            return
        seen.add(id(c))
        tr(c, "help")
        tr(c, "short_help")
        for p in c.params:
            if isinstance(p, click.Option):
                tr(p, "help")
        helper = getattr(c, "_help_option", None)  # click caches --help once made
        if helper is not None:
            helper._i18n_help = "Show this message and exit."
            tr(helper, "help")
        if isinstance(c, click.Group):
            for sub in c.commands.values():
                walk(sub)

    walk(cmd)
    i18n.install_click()


@click.group(cls=OutreachGroup)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _p, v: _show_version(ctx) if v else None,
              help="Show the version and exit.")
@click.option("--lang", metavar="vi|en", envvar="OUTREACH_LANG", is_eager=True,
              expose_value=False, callback=_lang_option,
              help="Interface language: vi or en (default: $OUTREACH_LANG, else the locale; "
                   "Vietnamese when the locale is Vietnamese or not set).")
@click.option("--database-url", envvar="OUTREACH_DATABASE_URL", metavar="URL",
              help="SQLAlchemy URL (default: SQLite at $OUTREACH_HOME/outreach.db, "
                   "OUTREACH_HOME defaults to ./.outreach).")
@click.option("--operator", envvar="OUTREACH_OPERATOR", help="Name recorded in the audit log "
              "(default: the operating-system user).")
@click.option("--show-numbers", is_flag=True, help="Show whole phone numbers (masked by default).")
@click.option("--wide", is_flag=True,
              help="Tables at their full width (no wrapping at the terminal's width): for "
                   "copying file:line and long values, or piping into a file.")
@click.option("--debug", is_flag=True, hidden=True)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, operator: str | None, show_numbers: bool,
         wide: bool, debug: bool, verbose: int) -> None:
    """outreach: send a prescribed message by SMS and Zalo to every recipient, exactly once,
    and report who got it."""
    level = logging.WARNING - 10 * verbose
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter(LOG_FORMAT))
    logging.basicConfig(level=max(level, logging.DEBUG), handlers=[handler])  # once per process
    from outreach.logmask import install

    install()
    for con in (console, err_console):
        con._width = WIDE_COLUMNS if wide else _NATURAL_WIDTH[id(con)]
    ctx.obj = Ctx(database_url, operator, show_numbers, debug)
    ctx.call_on_close(ctx.obj.close)


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

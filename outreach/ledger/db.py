"""Engines and sessions: SQLite by default (WAL, busy timeout, immediate transactions), any URL."""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from outreach import config, safeio
from outreach.i18n import _

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 60_000
#: the execution option of :meth:`Database.read` connections (a deferred BEGIN on SQLite)
READ_ONLY = "outreach_read_only"


class DatabaseLocationError(OSError):
    """A SQLite URL whose folder does not exist (never created silently)."""


class Database:
    """An engine plus a session factory. ``url`` is any SQLAlchemy URL.

    On SQLite every transaction starts with ``BEGIN IMMEDIATE`` and waits up to
    ``SQLITE_BUSY_TIMEOUT_MS`` for the write lock, so concurrent writers (dispatcher, webhook
    receiver, import) queue instead of failing with "database is locked"; the journal is WAL so
    readers never block writers.
    """

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        self.url = config.database_url(url)
        self.engine = make_engine(self.url, echo=echo)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions() as s, s.begin():
            yield s

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads only. On SQLite its transaction is a plain (deferred)
        ``BEGIN``: in WAL mode it reads the last committed snapshot at once, where ``BEGIN
        IMMEDIATE`` waits for the writer's commit. It must not write (on SQLite the write
        would fail with "database is locked" rather than wait). Elsewhere an ordinary
        connection."""
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            yield conn

    def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database file and truncate it
        (``PRAGMA wal_checkpoint(TRUNCATE)``, https://sqlite.org/pragma.html#pragma_wal_checkpoint);
        nothing elsewhere. After one large transaction — a launch's import and run creation
        write every page of a million rows to the WAL — the automatic checkpoints would copy
        those pages back while the run is being sent, and every read would search the large
        log. Raises :class:`sqlalchemy.exc.OperationalError` (another connection is busy)."""
        if not self.is_sqlite:
            return
        raw = self.engine.raw_connection()  # outside a transaction, as SQLite requires
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            raise OperationalError("PRAGMA wal_checkpoint(TRUNCATE)", None, exc) from exc
        finally:
            raw.close()

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (creates a new database)."""
        from outreach.ledger import migrate

        migrate.upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            folder = Path(url[len("sqlite:///"):]).parent
            if not folder.exists():
                default = (config.home_dir().resolve() == folder.resolve())
                if not default:
                    raise DatabaseLocationError(_(
                        "the folder {folder} of the SQLite database does not exist: check "
                        "--database-url / OUTREACH_DATABASE_URL (a mistyped path would start an "
                        "empty ledger and send everyone again)").format(folder=folder))
                safeio.private_dir(folder)
            safeio.prepare_sqlite_file(url[len("sqlite:///"):].split("?", 1)[0])
        engine = create_engine(url, echo=echo,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                             "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA cache_size=-16384")  # 16 MB: enough for the hot index pages; memory stays low
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            read_only = conn.get_execution_options().get(READ_ONLY)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def is_locked_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, OperationalError) and ("database is locked" in text or "busy" in text)


def retry_write(fn: Callable[..., T]) -> Callable[..., T]:
    """Retry a write transaction that met a locked SQLite database (never retries the send itself)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        delay = 0.05
        for attempt in range(30):
            try:
                return fn(*args, **kwargs)
            except OperationalError as exc:
                if not is_locked_error(exc) or attempt == 29:
                    raise
                log.warning(_("database busy, retrying the write (attempt {n})").format(n=attempt + 1))
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    return wrapper


def has_schema(engine: Engine) -> bool:
    return inspect(engine).has_table("campaigns")

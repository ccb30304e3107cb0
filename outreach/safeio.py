"""Safe output: spreadsheet cells that cannot become formulas, and private files.

Every CSV and XLSX writer of outreach goes through this module:

* :func:`neutralise` is the one rule for a cell. OWASP "CSV Injection"
  (https://owasp.org/www-community/attacks/CSV_Injection): a text cell whose first character
  is ``=``, ``+``, ``-``, ``@``, tab (0x09) or carriage return (0x0D) may be run as a formula
  by Excel, LibreOffice or Google Sheets; such a value gets a leading ``'`` so the spreadsheet
  shows it as text. The full-width forms ``＝ ＋ － ＠`` (U+FF1D, U+FF0B, U+FF0D, U+FF20), which
  some spreadsheet locales fold to the ASCII ones, are treated the same way. Only text from
  data is changed: numbers (``int``, ``float``, ``Decimal``) stay numbers, so a negative count
  stays ``-3``. One exception, by choice: text that is exactly a decimal number literal (an
  optional sign, digits, optionally a fraction: ``-118``, Zalo's error codes, or an E.164 phone
  number ``+84912345678``) is kept as it is. Such a cell cannot carry a formula payload (a
  spreadsheet reads it as the number it is, at worst dropping a ``+``), and export files feed
  resend lists and other tools that expect E.164, which a ``'`` would break. Anything more
  after the sign (``+84 9…``, ``-2+3+cmd|…``, ``-118: no-zalo-account``) is neutralised.
* :func:`csv_writer` wraps :func:`csv.writer` so every row passes through :func:`neutralise`.
* :func:`xlsx_append` writes a row into an openpyxl worksheet: every ``str`` cell is written
  as a string cell (``data_type='s'``), never a formula; a formula-leading one also gets the
  style flag ``quotePrefix`` (Excel's own "this is text" mark), so the cell shows the text as
  written and stays text when edited. Numbers stay numbers.
* :func:`private_dir`, :func:`open_private`, :func:`write_private` create folders 0700 and
  files 0600 whatever the umask (files holding personal data: database, outbox, exports,
  reject files); an existing file that is rewritten is tightened to 0600 too.
  :func:`prepare_sqlite_file` does this for a SQLite database before SQLite creates it
  (SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file) and warns once
  when an existing database is readable by others.
* :func:`require_folder` is the one check of every ``--out``-like option: the folder an output
  goes in must exist (a mistyped path is an error naming the folder, never a folder created
  silently), unless the command documents creating it.
* :func:`os_error_text` is the one wording of a failed file write (or read) by its ``errno``:
  permissions (``EACCES``, ``EPERM``), a read-only filesystem (``EROFS``), a full disk or used-up
  quota (``ENOSPC``, ``EDQUOT``); :func:`probe_write_problem` finds which one applies to a path
  when only a library's message is known (SQLite says "readonly database" for all of them).
"""

from __future__ import annotations

import csv
import errno
import logging
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

#: First characters that make a spreadsheet evaluate a cell (OWASP CSV Injection), plus their
#: full-width forms.
FORMULA_LEADS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
#: A bare number literal (``-118``, ``+84912345678``): kept as it is (see the module docstring).
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")

FILE_MODE = 0o600
DIR_MODE = 0o700

_warned: set[str] = set()


def is_formula_like(value: Any) -> bool:
    """True for a ``str`` that a spreadsheet could run as a formula (see :func:`neutralise`)."""
    return (isinstance(value, str) and bool(value) and value[0] in FORMULA_LEADS
            and not _NUMBER.fullmatch(value))


def neutralise(value: Any) -> Any:
    """``value`` made safe for a spreadsheet cell: a formula-leading ``str`` gets a leading
    ``'``; everything else (numbers, ``None``, other text, a bare number literal such as an
    E.164 phone number) is returned
    unchanged. Rule: OWASP CSV Injection (module docstring)."""
    if is_formula_like(value):
        return "'" + value
    return value


class SafeCsvWriter:
    """:func:`csv.writer` whose rows pass through :func:`neutralise` cell by cell.

    A row with a carriage return inside a cell is written with every field quoted: the csv
    module quotes only the characters of its ``lineterminator``, so with ``"\n"`` a bare CR
    would split the row for the next reader (OWASP also asks for such fields to be quoted)."""

    def __init__(self, fh: IO[str], **kwargs: Any) -> None:
        self._w = csv.writer(fh, **kwargs)
        self._quoted = csv.writer(fh, **{**kwargs, "quoting": csv.QUOTE_ALL})

    def writerow(self, row: Iterable[Any]) -> Any:
        cells = [neutralise(v) for v in row]
        if any(isinstance(v, str) and "\r" in v for v in cells):
            return self._quoted.writerow(cells)
        return self._w.writerow(cells)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(fh: IO[str], **kwargs: Any) -> SafeCsvWriter:
    """A CSV writer on ``fh`` (``csv.writer`` keyword arguments) that neutralises every cell."""
    return SafeCsvWriter(fh, **kwargs)


def xlsx_append(ws: Any, values: Sequence[Any]) -> None:
    """Append ``values`` as a row of the openpyxl worksheet ``ws``: text as string cells (never
    a formula), formula-leading text also marked ``quotePrefix``; numbers and dates unchanged."""
    ws.append([None if isinstance(v, str) else v for v in values])
    row = ws.max_row
    for col, v in enumerate(values, start=1):
        if isinstance(v, str):
            cell = ws.cell(row, col)
            cell.value = v
            cell.data_type = "s"
            if is_formula_like(v):
                cell.quotePrefix = True


# -- private files ---------------------------------------------------------------------------

def _chmod(path: str | os.PathLike[str], mode: int) -> None:
    try:
        os.chmod(path, mode)
    except (NotImplementedError, PermissionError):  # pragma: no cover - not POSIX, not ours
        pass


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and any missing parents, each one it creates 0700 (folders that already
    exist are left as they are: they may be the operator's). Returns the path."""
    p = Path(path)
    missing = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        _chmod(d, DIR_MODE)
    return p


def open_private(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode, **kwargs)`` for a file with personal data: created 0600 (an existing
    file is set to 0600), its missing folders 0700. ``mode``: ``w``, ``a``, ``wb`` or ``ab``."""
    if mode not in ("w", "a", "wb", "ab"):
        raise ValueError(f"open_private mode {mode!r}: use w, a, wb or ab")
    p = Path(path)
    if not p.parent.exists():
        private_dir(p.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(p, flags | getattr(os, "O_BINARY", 0), FILE_MODE)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: str | os.PathLike[str], data: str | bytes, *,
                  encoding: str = "utf-8") -> Path:
    """Write ``data`` (text in ``encoding``, or bytes) to ``path`` with :func:`open_private`."""
    if isinstance(data, bytes):
        with open_private(path, "wb") as fh:
            fh.write(data)
    else:
        with open_private(path, "w", encoding=encoding, newline="") as fh:
            fh.write(data)
    return Path(path)


def mode_of(path: str | os.PathLike[str]) -> int | None:
    """The permission bits of ``path`` (e.g. ``0o600``), None when it does not exist."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def too_open(mode: int | None) -> bool:
    """True when group or others have any access (``mode & 0o077``)."""
    return mode is not None and bool(mode & 0o077)


def sqlite_files(path: str | os.PathLike[str]) -> list[Path]:
    """The database file and its ``-wal``, ``-shm`` and ``-journal`` companions."""
    p = Path(path)
    return [p] + [p.with_name(p.name + s) for s in ("-wal", "-shm", "-journal")]


def prepare_sqlite_file(path: str | os.PathLike[str]) -> None:
    """Before SQLite opens ``path``: a missing database file is created empty with mode 0600
    (its missing folders 0700), so SQLite's ``-wal``/``-shm`` get 0600 too; an existing one
    readable or writable by group or others is logged once per process at WARNING (it is not
    changed: the operator may share it on purpose)."""
    p = Path(path)
    if not p.exists():
        if not p.parent.exists():
            private_dir(p.parent)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass
        else:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, FILE_MODE)
            os.close(fd)
        return
    loose = [(f, m) for f in sqlite_files(p) if too_open(m := mode_of(f))]
    key = str(p.resolve())
    if loose and key not in _warned:
        from outreach.i18n import _

        _warned.add(key)
        log.warning(_("the database {path} holds personal data but is readable by others "
                      "({modes}); run `chmod 600 {path}*`").format(
                          path=p, modes=", ".join(f"{f.name} {m:04o}" for f, m in loose)))


# -- output folders and write errors ---------------------------------------------------------

class MissingFolder(Exception):
    """The folder an output should be written in does not exist, or is not a folder. ``folder``:
    that folder; ``not_a_folder``: it exists but is a file."""

    def __init__(self, folder: Path, not_a_folder: bool = False) -> None:
        super().__init__(str(folder))
        self.folder = folder
        self.not_a_folder = not_a_folder


def require_folder(path: str | os.PathLike[str], *, is_folder: bool = False) -> Path:
    """Check an output ``path`` before anything is written: the folder it goes in must exist.
    ``is_folder``: ``path`` is itself an output folder that the command creates (documented by
    that command), so only its parent must exist. Raises :class:`MissingFolder`; returns the
    path. Every ``--out``, ``--export`` and ``--reject-file`` goes through here (the CLI's
    ``OUT_FILE`` and ``OUT_FOLDER`` parameter types)."""
    p = Path(path)
    if is_folder and p.exists():
        if not p.is_dir():
            raise MissingFolder(p, not_a_folder=True)
        return p
    folder = p.parent
    if not folder.exists():
        # name the topmost missing folder: the one to create first (or the typo)
        while not folder.parent.exists() and folder.parent != folder:
            folder = folder.parent
        raise MissingFolder(folder)
    if not folder.is_dir():
        raise MissingFolder(folder, not_a_folder=True)
    return p


#: errno → kind of write problem (:func:`os_error_text`).
PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
READ_ONLY_ERRNOS = frozenset({errno.EROFS})
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def write_problem(code: int | None, path: str | os.PathLike[str] | None) -> str | None:
    """The cause of a failed write with errno ``code`` at ``path``, one clause in the interface
    language: permissions, a read-only filesystem, a full disk; None for other errnos."""
    from outreach.i18n import _

    where = str(path) if path is not None else "?"
    if code in PERMISSION_ERRNOS:
        return _("this user may not write there (permissions): check the owner and mode of "
                 "the file and its folder, e.g. `ls -ld {where}`").format(where=where)
    if code in READ_ONLY_ERRNOS:
        return _("the filesystem is read-only (mounted read-only, or a write-protected disk): "
                 "write to another place, or have it mounted read-write")
    if code in DISK_FULL_ERRNOS:
        return _("the disk is full (or this user's disk quota is used up): free some space, "
                 "or write to another disk")
    return None


def os_error_text(exc: OSError) -> str:
    """One line for an :class:`OSError` of a file write or read: the file and its cause by
    ``errno`` (:func:`write_problem`; no such file, a folder), else the system's reason."""
    from outreach.i18n import _

    path = exc.filename if exc.filename is not None else None
    cause = write_problem(exc.errno, path)
    if cause is None:
        if exc.errno == errno.ENOENT:
            cause = _("no such file or folder")
        elif exc.errno == errno.EISDIR:
            cause = _("it is a folder, not a file")
        else:
            cause = exc.strerror or str(exc)
    if path is None:
        return cause
    if exc.errno in PERMISSION_ERRNOS | READ_ONLY_ERRNOS | DISK_FULL_ERRNOS:
        return _("cannot write {path}: {cause}").format(path=path, cause=cause)
    return _("{path}: {cause}").format(path=path, cause=cause)


def probe_write_problem(path: str | os.PathLike[str]) -> int | None:
    """The errno that writing at ``path`` (a file, or the folder it would go in) would likely
    fail with, found from its filesystem: ``EROFS`` (mounted read-only), ``ENOSPC`` (no free
    blocks for this user), ``EACCES`` (not writable by this user); None when none applies."""
    p = Path(path)
    target = p if p.exists() else p.parent
    while not target.exists() and target.parent != target:
        target = target.parent
    try:
        st = os.statvfs(target)
    except (OSError, AttributeError):  # pragma: no cover - not POSIX
        st = None
    if st is not None and st.f_flag & getattr(os, "ST_RDONLY", 1):
        return errno.EROFS
    if st is not None and st.f_bavail == 0:
        return errno.ENOSPC
    if not os.access(target, os.W_OK) or (p.exists() and not os.access(p.parent, os.W_OK)):
        return errno.EACCES
    return None


def record_file(db: Any, path: str | os.PathLike[str], kind: str, *, rows: int | None = None,
                campaign_id: str | None = None, operator: str | None = None) -> None:
    """Record in the audit log (action ``export``, details ``{"what": kind, "file": absolute
    path, "rows"}``) that a file with personal data was written, so ``outreach privacy check``
    can list the files still on disk. ``db``: a :class:`outreach.ledger.db.Database`."""
    from outreach.reporting import audit

    details: dict[str, Any] = {"what": kind, "file": str(Path(path).resolve())}
    if rows is not None:
        details["rows"] = rows
    with db.engine.begin() as conn:
        audit.record(conn, "export", operator=operator, campaign_id=campaign_id, details=details)

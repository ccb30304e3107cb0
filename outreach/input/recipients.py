"""Importing recipient lists: read, normalise to E.164, deduplicate, record every rejected row."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from bisect import bisect_left, insort
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select

from outreach.i18n import _, ngettext, vi_sort_key
from outreach.input import listfiles, phones, reasons as reasonmod
from outreach.reporting import audit
from outreach.ledger.db import Database, retry_write
from outreach.ledger.models import Import, ListMember, Recipient

CHUNK = 5000
_DIGITS = re.compile(r"\d")


@dataclass(frozen=True)
class Issue:
    """A row that did not become a new recipient: ``kind`` is ``rejected`` or ``duplicate``.

    ``raw_masked`` never shows a whole number; ``detail`` says where a duplicate was first seen
    or gives the hint for an old 11-digit number.
    """

    kind: str
    file: str
    line: int | None
    raw_masked: str
    reason: str
    detail: str | None = None
    sheet: str | None = None

    def __post_init__(self) -> None:
        # the file as reports show it: NFC (a list made on macOS is named in NFD on disk)
        object.__setattr__(self, "file", unicodedata.normalize("NFC", str(self.file)))

    def where(self) -> str:
        return _where(self.file, self.sheet, self.line)


class IssueLog(Sequence[Issue]):
    """The issues of one import in arrival order, in bounded memory: the first :attr:`HEAD`
    are kept as objects, the rest spooled as JSON lines to an anonymous temporary file (no name
    on disk, removed when closed; the rows hold masked numbers only). A million-row list with
    5 % unusable rows has 50,000 issues: 18 MB as objects, a few kB here. Reading one past
    the head reads the spool."""

    HEAD = 1000

    def __init__(self) -> None:
        self._head: list[Issue] = []
        self._spool: Any = None
        self._pending: list[tuple[Any, ...]] = []
        self._n = 0

    def append(self, issue: Issue) -> None:
        self.add(issue.kind, issue.file, issue.line, issue.raw_masked, issue.reason,
                 issue.detail, issue.sheet)

    def add(self, kind: str, file: str, line: int | None, raw_masked: str, reason: str,
            detail: str | None = None, sheet: str | None = None) -> None:
        """Append the issue of these fields (an :class:`Issue` is built only for the head)."""
        self._n += 1
        if len(self._head) < self.HEAD:
            self._head.append(Issue(kind, file, line, raw_masked, reason, detail, sheet))
            return
        self._pending.append((kind, file, line, raw_masked, reason, detail, sheet))
        if len(self._pending) >= self.HEAD:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._spool is None:
            import tempfile

            self._spool = tempfile.TemporaryFile("w+b")
        self._spool.seek(0, os.SEEK_END)
        dumps = json.dumps
        self._spool.write("".join(dumps(t, ensure_ascii=False) + "\n"
                                  for t in self._pending).encode())
        self._pending.clear()

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[Issue]:
        yield from list(self._head)
        self._flush()
        if self._spool is None:
            return
        self._spool.flush()
        pos = 0
        while True:  # re-seek each line: an append between two lines must not move the reader
            self._spool.seek(pos)
            line = self._spool.readline()
            if not line:
                return
            pos = self._spool.tell()
            yield Issue(*json.loads(line))

    def __getitem__(self, index: Any) -> Any:
        """An item or a slice; the head answers what lies inside it, else the spool is read."""
        head = self._head
        inside = (index.stop is not None and 0 <= (index.start or 0) and
                  0 <= index.stop <= len(head) and index.step in (None, 1)
                  ) if isinstance(index, slice) else 0 <= index < len(head)
        return head[index] if inside else list(self)[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"IssueLog({self._n} issues)"


def _where(file: str, sheet: str | None, line: int | None = None) -> str:
    """``file [sheet 'S']:line`` as shown in rejects and reports, the file name in NFC."""
    file = unicodedata.normalize("NFC", str(file))
    label = file if sheet is None else _("{file} [sheet {sheet!r}]").format(file=file, sheet=sheet)
    return f"{label}:{line}" if line else label


class FewValidNumbers(listfiles.ListFileError):
    """A file or sheet that yields no valid mobile number, or valid numbers in fewer than half
    of its data rows: usually the wrong column, the wrong sheet or a damaged export. Raised
    by default (nothing is written); ``allow_few_valid=True`` imports such a file anyway."""


@dataclass
class ImportSummary:
    """Counts of one import. They add up:
    ``rows_read + extra_numbers == imported + rejected + duplicates``, where ``extra_numbers``
    counts the second and later numbers of cells holding several numbers."""

    import_id: int
    list_name: str
    files: list[str]
    rows_read: int = 0
    extra_numbers: int = 0
    imported: int = 0
    new_recipients: int = 0
    rejected: int = 0
    duplicates: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_carrier: Counter[str] = field(default_factory=Counter)
    issues: IssueLog = field(default_factory=IssueLog)
    #: per file: format, and per sheet header row, columns used, rows, rows skipped as non-data
    lists: list[listfiles.ListInfo] = field(default_factory=list)
    #: cells that held several numbers or words around a number: (where, masked cell, numbers)
    shared_cells: list[tuple[str, str, int]] = field(default_factory=list)
    shared_cell_count: int = 0
    #: administrative units: names not found in the official lists, (kind, name) → rows
    unknown_units: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def skipped_rows(self) -> int:
        """Rows recognised as not data (sections, totals, signatures): never counted as read."""
        return sum(sh.skipped for info in self.lists for sh in info.sheets)

    @property
    def balanced(self) -> bool:
        return self.rows_read + self.extra_numbers == self.imported + self.rejected + self.duplicates

    def to_dict(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id, "list": self.list_name, "files": self.files,
            "rows_read": self.rows_read, "extra_numbers": self.extra_numbers,
            "imported": self.imported, "new_recipients": self.new_recipients,
            "rejected": self.rejected, "duplicates": self.duplicates,
            "by_reason": dict(sorted(self.by_reason.items())),
            "by_carrier": dict(sorted(self.by_carrier.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))),
            "skipped_rows": self.skipped_rows,
            "lists": [info.to_dict() for info in self.lists],
            "shared_cells": self.shared_cell_count,
            "unknown_units": [{"kind": k, "name": n, "rows": c}
                              for (k, n), c in sorted(self.unknown_units.items(), key=lambda kv: (
                                  kv[0][0], vi_sort_key(kv[0][1])))],
        }


def mask_raw(raw: str) -> str:
    """Mask the middle digits of a raw cell so a report never shows a whole number."""
    digits = [m.start() for m in _DIGITS.finditer(raw)]
    if len(digits) < 7:
        return raw[:40]
    hide = set(digits[3:-3])
    return "".join("*" if i in hide else ch for i, ch in enumerate(raw))[:40]


def import_files(db: Database, paths: Sequence[str | Path], *, list_name: str,
                 encoding: str | None = None, convert_old_prefixes: bool = False,
                 default_district: str | None = None,
                 district_by_file: dict[str, str] | None = None, operator: str | None = None,
                 progress: Callable[[int], None] | None = None,
                 now: dt.datetime | None = None, sheet: str | None = None,
                 allow_few_valid: bool = False, province: str | None = None) -> ImportSummary:
    """Import recipient files into list ``list_name`` in one transaction.

    Every number is normalised with :func:`outreach.input.phones.normalise` (E.164, mobile only).
    A number seen earlier in this import (any file, any form) is a duplicate, reported with where
    it was first seen. A number already in the database from an earlier import is the same
    recipient: it joins the list and counts as imported, its stored details unchanged.
    Districts and wards are matched to the official administrative units
    (:mod:`outreach.input.adminunits`): both the pre-2025 units and the current ones are stored;
    ``province`` names the province for lists without a province column (default: found from
    the district names).

    Raises :class:`outreach.input.listfiles.ListFileError` (file, line, reason) for a file that cannot
    be read, and :class:`FewValidNumbers` for a file or sheet with no data rows, no valid mobile
    number or valid numbers in fewer than half of its rows, unless ``allow_few_valid``; nothing
    is written then. ``progress`` is called with the rows read so far every 10,000 rows; an
    exception it raises (KeyboardInterrupt: Ctrl-C) aborts the import with nothing written.
    """
    now = now or dt.datetime.now(dt.timezone.utc)

    @retry_write
    def run() -> ImportSummary:
        with db.engine.begin() as conn:
            return import_into(conn, paths, list_name=list_name, encoding=encoding,
                               convert_old_prefixes=convert_old_prefixes,
                               default_district=default_district,
                               district_by_file=district_by_file, operator=operator,
                               progress=progress, now=now, sheet=sheet,
                               allow_few_valid=allow_few_valid, province=province)

    return run()


def import_into(conn: Connection, paths: Sequence[str | Path], *, list_name: str,
                encoding: str | None = None, convert_old_prefixes: bool = False,
                default_district: str | None = None,
                district_by_file: dict[str, str] | None = None, operator: str | None = None,
                progress: Callable[[int], None] | None = None,
                now: dt.datetime, sheet: str | None = None, allow_few_valid: bool = False,
                province: str | None = None) -> ImportSummary:
    """:func:`import_files` in the caller's transaction (a dry run rolls it back)."""
    files = [str(p) for p in paths]
    imp_id = conn.execute(insert(Import).values(
        list_name=list_name, files=files, operator=operator, created_at=now,
        rows_read=0, imported=0, rejected=0, duplicates=0)).inserted_primary_key[0]
    summary = ImportSummary(import_id=imp_id, list_name=list_name, files=files)
    _import(conn, summary, files, encoding, convert_old_prefixes, default_district,
            district_by_file or {}, progress, now, sheet, allow_few_valid, province)
    conn.execute(Import.__table__.update().where(Import.id == imp_id).values(
        rows_read=summary.rows_read, imported=summary.imported,
        rejected=summary.rejected, duplicates=summary.duplicates))
    audit.record(conn, "import", operator=operator, now=now, details=summary.to_dict())
    return summary


#: Files larger than this (bytes) are read and normalised in a child process while this one
#: deduplicates and writes: the two halves of an import each take about half the time.
PARALLEL_MIN_BYTES = 4_000_000
#: PostgreSQL: the temporary table a batch of new recipients is copied into
_STAGE = "outreach_import_stage"
_BATCH = 5000

# One normalised cell: (line, raw cell, E.164 or None, carrier, reason, hint, name, district,
# ward, zalo user id, extra numbers in this row's cell (on its first cell only; -1 on the
# others), sheet, province, the whole cell when it held several numbers or words (else None))
Cell = tuple[int, str, "str | None", "str | None", "str | None", "str | None", "str | None",
             "str | None", "str | None", "str | None", int, "str | None", "str | None",
             "str | None"]


# One row as read: (line, phone cell, name, district, ward, zalo user id, sheet, province)
Row = tuple[int, str, "str | None", "str | None", "str | None", "str | None", "str | None",
            "str | None"]


def _rows(path: str, encoding: str | None, sheet: str | None,
          info: listfiles.ListInfo) -> Iterator[list[Row]]:
    """Read one file, in batches of rows. Pure: no database, no normalisation."""
    batch: list[Row] = []
    for row in listfiles.read_list(path, encoding=encoding, sheet=sheet, info=info):
        batch.append((row.line, row.phone, row.name, row.district, row.ward, row.zalo_user_id,
                      row.sheet, row.province))
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _normalised(rows: list[Row], convert: bool) -> list[Cell]:
    """Every number of a batch of rows normalised (a cell may hold several)."""
    out: list[Cell] = []
    split, normalise = phones.split_cell, phones.normalise
    for line, raw, name, district, ward, zalo, sheet, province in rows:
        cells = (split(raw) if raw else None) or [raw or ""]
        extra = len(cells) - 1
        whole = raw if extra > 0 or (len(cells) == 1 and cells[0] != raw.strip()) else None
        for i, cell in enumerate(cells):
            res = normalise(cell, convert_old_prefixes=convert)
            out.append((line, cell, res.e164, res.carrier, res.reason, res.hint, name, district,
                        ward, zalo, extra if i == 0 else -1, sheet, province,
                        whole if i == 0 else None))
    return out


def _cells(path: str, encoding: str | None, convert: bool, sheet: str | None,
           info: listfiles.ListInfo) -> Iterator[list[Cell]]:
    """Read one file and normalise every number in it, in batches. Pure: no database."""
    for batch in _rows(path, encoding, sheet, info):
        yield _normalised(batch, convert)


def _produce(path: str, encoding: str | None, convert: bool, sheet: str | None, queue: Any,
             normalise: bool = True) -> None:
    # A forked reader has the parent's signal handlers (a launch's graceful stop catches
    # SIGINT and SIGTERM): Ctrl-C is the parent's to handle, and its terminate() must end
    # this process at once, never leave it blocked on a full queue after the parent is gone.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    info = listfiles.ListInfo(path)
    try:
        batches = (_cells(path, encoding, convert, sheet, info) if normalise
                   else _rows(path, encoding, sheet, info))
        for batch in batches:
            queue.put(batch)
        queue.put(info)
        queue.put(None)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent handles it
        return
    except BaseException as exc:  # sent to the parent, raised there with file, line, reason
        queue.put(exc if isinstance(exc, listfiles.ListFileError)
                  else listfiles.ListFileError(path, None, f"{type(exc).__name__}: {exc}"))  # a bug: as Python says it


_WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def _is_workbook(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(8).startswith(_WORKBOOK_MAGIC)
    except OSError:
        return False


def _batches(path: str, encoding: str | None, convert: bool, sheet: str | None,
             info: listfiles.ListInfo) -> Iterator[list[Cell]]:
    """Batches of normalised cells; large files are read by a child process. ``info`` is
    filled once the file has been read. A text file's child also normalises the numbers
    (reading text is cheap); a workbook's child only reads (parsing the sheet XML costs about
    as much as everything else), and the numbers are normalised here, so that the two
    processes share the work."""
    try:
        big = Path(path).stat().st_size >= PARALLEL_MIN_BYTES
    except OSError:
        big = False
    if not big or os.environ.get("OUTREACH_IMPORT_PARALLEL") == "0":
        yield from _cells(path, encoding, convert, sheet, info)
        return
    import multiprocessing as mp

    in_child = not _is_workbook(path)
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    queue = ctx.Queue(maxsize=8)
    proc = ctx.Process(target=_produce, args=(path, encoding, convert, sheet, queue, in_child),
                       daemon=True)
    proc.start()
    try:
        while True:
            item = queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, listfiles.ListInfo):
                info.format, info.sheets = item.format, item.sheets
                continue
            yield item if in_child else _normalised(item, convert)
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(timeout=5)


#: A file or sheet needs valid mobile numbers in at least this share of its data rows.
MIN_VALID_SHARE = 0.5


def _check_valid(path: str, info: listfiles.ListInfo, rows: Counter[str | None],
                 valid: Counter[str | None], reasons: dict[str | None, Counter[str]]) -> None:
    for sh in info.sheets:
        if not sh.read:
            continue
        n, ok = rows[sh.name], valid[sh.name]
        if n and ok >= n * MIN_VALID_SHARE:
            continue
        where = _where(path, sh.name)
        column = sh.columns.get("phone", "?")
        if not n:
            why = _("no data rows under the header (row {row})").format(row=sh.header_line)
        else:
            top = ", ".join(_("{reason} {rows}").format(reason=reasonmod.label(r), rows=c)
                            for r, c in reasons[sh.name].most_common(3))
            why = (ngettext("no valid mobile number in {n} row", "no valid mobile number in {n} rows",
                            n).format(n=n) if not ok else
                   ngettext("only {ok} of {n} row has a valid mobile number",
                            "only {ok} of {n} rows have a valid mobile number", n).format(ok=ok, n=n)
                   ) + f" ({top})"
        raise FewValidNumbers(path, None, _(
            "{why}; phone column {column!r}, header at row {row}: check the column and the sheet; "
            "nothing was imported (pass --allow-few-valid to import it anyway)").format(
                why=why, column=column, row=sh.header_line), sh.name)


class _Seen:
    """The numbers already seen in one import and where each was first seen, in about 16
    bytes a number (a dict of Python ints takes about 100): 65,536 buckets by the number's
    low 16 bits, each a sorted ``array('q')`` of ``high bits << 26 | index``, the index
    pointing into one ``array('q')`` of places. A million numbers take about 20 MB, a
    hundred thousand about 6 MB. Keys are E.164 digits as ints (< 2**47); at most 2**26
    (67 million) numbers per import."""

    BUCKETS = 1 << 16

    def __init__(self) -> None:
        from array import array

        self._array = array
        self._buckets: dict[int, Any] = {}
        self._where = array("q")

    def first(self, key: int, where: int) -> int:
        """Where ``key`` was first seen; -1 when it is new, and then ``where`` is recorded."""
        low = key & 0xFFFF
        bucket = self._buckets.get(low)
        if bucket is None:
            bucket = self._buckets[low] = self._array("q")
        high = key >> 16
        probe = high << 26
        i = bisect_left(bucket, probe)
        if i < len(bucket) and bucket[i] >> 26 == high:
            return self._where[bucket[i] & 0x3FFFFFF]
        idx = len(self._where)
        if idx >= 1 << 26:
            raise OverflowError("more than 67,108,864 numbers in one import")
        self._where.append(where)
        bucket.insert(i, probe | idx)
        return -1

    def __len__(self) -> int:
        return len(self._where)


def _import(conn: Connection, summary: ImportSummary, files: list[str], encoding: str | None,
            convert: bool, default_district: str | None, district_by_file: dict[str, str],
            progress: Callable[[int], None] | None, now: dt.datetime, sheet: str | None,
            allow_few_valid: bool, province: str | None) -> None:
    from outreach.input import adminunits

    # E.164 digits as an int -> place index << 32 | line, in 16 bytes a number
    first_seen = _Seen()
    places: list[str] = []  # "file" or "file [sheet 'X']", indexed by first_seen
    place_index: dict[tuple[str, str | None], int] = {}
    pending: list[tuple[Any, ...]] = []
    issues: list[tuple[Any, ...]] = []
    before = conn.execute(select(func.count()).select_from(Recipient)).scalar_one()
    from outreach.ledger.states import db_time

    ts = db_time(conn, now)
    ph = "?" if conn.dialect.name == "sqlite" else "%s"
    imp_id, list_name = summary.import_id, summary.list_name
    if conn.dialect.name == "sqlite":
        # a large import touches each index page once or twice: a 16 MB page cache is enough
        # and keeps a million-row import's memory down
        conn.exec_driver_sql("PRAGMA cache_size=-16384")
    units = adminunits.Resolver(province)
    staged: list[bool] = []  # the PostgreSQL staging table exists on this connection

    def flush() -> None:
        # plain driver SQL: no per-row type processing on the hot path of a large import
        if pending and conn.dialect.name == "postgresql":
            # COPY into a temporary table (psycopg formats the rows in C), then one
            # INSERT … SELECT per table: no round trip per row and no array built in Python
            # (PostgreSQL docs, "Populating a Database": COPY is the bulk path)
            cur = conn.connection.driver_connection.cursor()
            try:
                if not staged:
                    cur.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} ("
                                "e164 text, carrier text, name text, district text, ward text, "
                                "zalo_user_id text, source_file text, source_line integer, "
                                "created_at timestamp, province text, district_code text, "
                                "ward_code text, new_province text, new_ward text, "
                                "new_ward_code text)")
                    staged.append(True)
                cur.execute(f"TRUNCATE {_STAGE}")
                with cur.copy(f"COPY {_STAGE} FROM STDIN") as copy:
                    for row in pending:
                        copy.write_row(row)
            finally:
                cur.close()
            # the new recipients' ids come from the INSERT itself (RETURNING), so their
            # memberships need no lookup (benchmarks/city_1m.py, PostgreSQL import of
            # 1,000,000: 39.3-40.3 -> 38.3 s)
            new = conn.exec_driver_sql(
                "WITH added AS (INSERT INTO recipients (e164, carrier, name, district, ward, "
                "zalo_user_id, source_file, source_line, created_at, province, district_code, "
                f"ward_code, new_province, new_ward, new_ward_code) SELECT * FROM {_STAGE} "
                "ON CONFLICT (e164) DO NOTHING RETURNING id), "
                "joined AS (INSERT INTO list_members (list_name, recipient_id, import_id) "
                "SELECT %s, id, %s FROM added ON CONFLICT (list_name, recipient_id) DO NOTHING) "
                "SELECT count(*) FROM added", (list_name, imp_id)).scalar_one()
            if new < len(pending):
                # some numbers were already known (another list, an earlier import): each
                # staged number looked up in the unique index, the new ones' memberships
                # conflicting harmlessly. A statement of its own, so it sees recipients
                # committed by a concurrent import meanwhile; a join let the planner, whose
                # statistics of recipients lag behind an import that is filling it, hash the
                # whole table for every batch (a million-row import: quadratic)
                conn.exec_driver_sql(
                    "INSERT INTO list_members (list_name, recipient_id, import_id) "
                    f"SELECT %s, (SELECT r.id FROM recipients r WHERE r.e164 = s.e164), %s "
                    f"FROM {_STAGE} s ON CONFLICT (list_name, recipient_id) DO NOTHING",
                    (list_name, imp_id))
            pending.clear()
        if pending:
            # SQLite: this transaction has held the write lock since it added the import's
            # row, so the recipients this INSERT adds are exactly those with an id above the
            # highest one before it (a new rowid is one more than the largest, SQLite's
            # "ROWIDs and the INTEGER PRIMARY KEY"): their memberships are one range read of
            # the table, no lookup per number (benchmarks/city_1m.py)
            top = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM recipients").scalar_one()
            added = conn.exec_driver_sql(
                "INSERT INTO recipients (e164, carrier, name, district, ward, zalo_user_id, "
                "source_file, source_line, created_at, province, district_code, ward_code, "
                "new_province, new_ward, new_ward_code) "
                f"VALUES ({', '.join([ph] * 15)}) ON CONFLICT (e164) DO NOTHING",
                pending).rowcount
            conn.exec_driver_sql(
                "INSERT INTO list_members (list_name, recipient_id, import_id) "
                f"SELECT {ph}, id, {ph} FROM recipients WHERE id > {ph} ORDER BY id "
                "ON CONFLICT (list_name, recipient_id) DO NOTHING", (list_name, imp_id, top))
            if added != len(pending):
                # some numbers were known already: each looked up (the new ones' memberships
                # conflict harmlessly)
                conn.exec_driver_sql(
                    "INSERT INTO list_members (list_name, recipient_id, import_id) "
                    f"SELECT {ph}, id, {ph} FROM recipients WHERE e164 = {ph} "
                    "ON CONFLICT (list_name, recipient_id) DO NOTHING",
                    [(list_name, imp_id, r[0]) for r in pending])
            pending.clear()
        if issues:
            conn.exec_driver_sql(
                "INSERT INTO import_issues (import_id, kind, file, line, raw_masked, reason, "
                f"detail, sheet) VALUES ({', '.join([ph] * 8)})", issues)
            issues.clear()

    def issue(kind: str, file: str, sheet_name: str | None, line: int, raw: str, reason: str,
              detail: str | None) -> None:
        masked = mask_raw(raw)
        summary.issues.add(kind, file, line, masked, reason, detail, sheet_name)
        issues.append((imp_id, kind, file, line, masked, reason, detail, sheet_name))

    def place(path: str, sheet_name: str | None) -> int:
        key = (path, sheet_name)
        found = place_index.get(key)
        if found is None:
            found = place_index[key] = len(places)
            places.append(_where(path, sheet_name))
        return found

    for path in files:
        # file names compared in NFC (a macOS list is named in NFD on disk; keys are NFC)
        by_nfc = {unicodedata.normalize("NFC", k): v for k, v in district_by_file.items()}
        file_district = by_nfc.get(unicodedata.normalize("NFC", Path(path).name),
                                   default_district)
        info = listfiles.ListInfo(path)
        summary.lists.append(info)
        rows: Counter[str | None] = Counter()
        valid: Counter[str | None] = Counter()
        reasons: dict[str | None, Counter[str]] = {}
        last_sheet: object = object()
        here = 0
        for batch in _batches(path, encoding, convert, sheet, info):
            for (line, cell, e164, carrier, reason, hint, name, district, ward, zalo,
                 extra, sheet_name, row_province, whole) in batch:
                if sheet_name is not last_sheet:
                    last_sheet, here = sheet_name, place(path, sheet_name)
                if extra >= 0:  # the first number of a row
                    summary.rows_read += 1
                    rows[sheet_name] += 1
                    summary.extra_numbers += extra
                    if whole is not None:
                        summary.shared_cell_count += 1
                        if len(summary.shared_cells) < 50:
                            summary.shared_cells.append(
                                (_where(path, sheet_name, line), mask_raw(whole), extra + 1))
                    if progress and summary.rows_read % 10_000 == 0:
                        progress(summary.rows_read)
                if e164 is None:
                    summary.rejected += 1
                    summary.by_reason[reason or "invalid"] += 1
                    reasons.setdefault(sheet_name, Counter())[reason or "invalid"] += 1
                    if hint and hint.startswith("+"):
                        hint = _("new number would be {number}").format(number=phones.mask(hint))
                    issue("rejected", path, sheet_name, line, cell, reason or "invalid", hint)
                    continue
                valid[sheet_name] += 1
                key = int(e164[1:])
                seen = first_seen.first(key, (here << 32) | line)
                if seen >= 0:
                    summary.duplicates += 1
                    summary.by_reason["duplicate"] += 1
                    issue("duplicate", path, sheet_name, line, cell, "duplicate",
                          _("first seen at {where}").format(
                              where=f"{places[seen >> 32]}:{seen & 0xFFFFFFFF}"))
                    continue
                summary.imported += 1
                summary.by_carrier[carrier or "unknown"] += 1
                u = units.resolve(row_province, district or file_district, ward)
                pending.append((e164, carrier, name, u.district, u.ward, zalo, path, line, ts,
                                u.province, u.district_code, u.ward_code, u.new_province,
                                u.new_ward, u.new_ward_code))
            flush()
        if not allow_few_valid:
            _check_valid(path, info, rows, valid, reasons)
    flush()
    summary.unknown_units = units.unknown
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA cache_size=-16384")  # the default of outreach.ledger.db
    after = conn.execute(select(func.count()).select_from(Recipient)).scalar_one()
    summary.new_recipients = after - before


def list_recipients(db: Database, list_name: str | None = None) -> Iterable[Recipient]:
    """Recipients (optionally of one list), ordered by id."""
    with db.session() as s:
        stmt = select(Recipient).order_by(Recipient.id)
        if list_name:
            stmt = stmt.join(ListMember, ListMember.recipient_id == Recipient.id).where(
                ListMember.list_name == list_name)
        return list(s.scalars(stmt))

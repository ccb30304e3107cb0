"""Importing recipient lists: read, normalise to E.164, deduplicate, record every rejected row."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from outreach import audit, listfiles, phones
from outreach.db import Database, retry_write
from outreach.models import Import, ImportIssue, ListMember, Recipient

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

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


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
    issues: list[Issue] = field(default_factory=list)

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
                 now: dt.datetime | None = None) -> ImportSummary:
    """Import recipient files into list ``list_name`` in one transaction.

    Every number is normalised with :func:`outreach.phones.normalise` (E.164, mobile only).
    A number seen earlier in this import (any file, any form) is a duplicate, reported with where
    it was first seen. A number already in the database from an earlier import is the same
    recipient: it joins the list and counts as imported, its stored details unchanged.

    Raises :class:`outreach.listfiles.ListFileError` (file, line, reason) for a file that cannot
    be read; nothing is written then.
    """
    now = now or dt.datetime.now(dt.timezone.utc)

    @retry_write
    def run() -> ImportSummary:
        with db.engine.begin() as conn:
            return import_into(conn, paths, list_name=list_name, encoding=encoding,
                               convert_old_prefixes=convert_old_prefixes,
                               default_district=default_district,
                               district_by_file=district_by_file, operator=operator,
                               progress=progress, now=now)

    return run()


def import_into(conn: Connection, paths: Sequence[str | Path], *, list_name: str,
                encoding: str | None = None, convert_old_prefixes: bool = False,
                default_district: str | None = None,
                district_by_file: dict[str, str] | None = None, operator: str | None = None,
                progress: Callable[[int], None] | None = None,
                now: dt.datetime) -> ImportSummary:
    """:func:`import_files` in the caller's transaction (a dry run rolls it back)."""
    files = [str(p) for p in paths]
    imp_id = conn.execute(insert(Import).values(
        list_name=list_name, files=files, operator=operator, created_at=now,
        rows_read=0, imported=0, rejected=0, duplicates=0)).inserted_primary_key[0]
    summary = ImportSummary(import_id=imp_id, list_name=list_name, files=files)
    _import(conn, summary, files, encoding, convert_old_prefixes, default_district,
            district_by_file or {}, progress, now)
    conn.execute(Import.__table__.update().where(Import.id == imp_id).values(
        rows_read=summary.rows_read, imported=summary.imported,
        rejected=summary.rejected, duplicates=summary.duplicates))
    audit.record(conn, "import", operator=operator, now=now, details=summary.to_dict())
    return summary


def _import(conn: Connection, summary: ImportSummary, files: list[str], encoding: str | None,
            convert: bool, default_district: str | None, district_by_file: dict[str, str],
            progress: Callable[[int], None] | None, now: dt.datetime) -> None:
    # E.164 digits as an int -> file index << 32 | line: ints keep a million entries small
    first_seen: dict[int, int] = {}
    pending: list[dict[str, Any]] = []
    issues: list[dict[str, Any]] = []
    before = conn.execute(select(func.count()).select_from(Recipient)).scalar_one()
    from outreach.states import db_time

    ts = db_time(conn, now)

    def flush() -> None:
        if pending:
            # plain driver SQL: no per-row type processing on the hot path of a large import
            ph = "?" if conn.dialect.name == "sqlite" else "%s"
            conn.exec_driver_sql(
                "INSERT INTO recipients (e164, carrier, name, district, ward, zalo_user_id, "
                f"source_file, source_line, created_at) VALUES ({', '.join([ph] * 9)}) "
                "ON CONFLICT (e164) DO NOTHING",
                [(r["e164"], r["carrier"], r["name"], r["district"], r["ward"],
                  r["zalo_user_id"], r["source_file"], r["source_line"], ts) for r in pending])
            ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
                ListMember)
            conn.execute(ins.from_select(
                ["list_name", "recipient_id", "import_id"],
                select(_literal(summary.list_name), Recipient.id, _literal(summary.import_id))
                .where(Recipient.e164.in_([r["e164"] for r in pending])))
                .on_conflict_do_nothing())
            pending.clear()
        if issues:
            conn.execute(insert(ImportIssue), issues)
            issues.clear()

    def issue(kind: str, row: listfiles.RawRow, raw: str, reason: str, detail: str | None) -> None:
        masked = mask_raw(raw)
        summary.issues.append(Issue(kind, row.file, row.line, masked, reason, detail))
        issues.append({"import_id": summary.import_id, "kind": kind, "file": row.file,
                       "line": row.line, "raw_masked": masked, "reason": reason, "detail": detail})

    for file_index, path in enumerate(files):
        file_district = district_by_file.get(Path(path).name, default_district)
        for row in listfiles.read_list(path, encoding=encoding):
            summary.rows_read += 1
            cells = phones.split_cell(row.phone) if row.phone else [row.phone or ""]
            summary.extra_numbers += max(len(cells) - 1, 0)
            for cell in cells:
                res = phones.normalise(cell, convert_old_prefixes=convert)
                if not res.ok:
                    summary.rejected += 1
                    summary.by_reason[res.reason or "invalid"] += 1
                    hint = f"new number would be {phones.mask(res.hint)}" if (
                        res.hint and res.hint.startswith("+")) else res.hint
                    issue("rejected", row, cell, res.reason or "invalid", hint)
                    continue
                e164 = res.e164
                assert e164 is not None
                key = int(e164[1:])
                seen = first_seen.get(key)
                if seen is not None:
                    summary.duplicates += 1
                    summary.by_reason["duplicate"] += 1
                    issue("duplicate", row, cell, "duplicate",
                          f"first seen at {files[seen >> 32]}:{seen & 0xFFFFFFFF}")
                    continue
                first_seen[key] = (file_index << 32) | row.line
                summary.imported += 1
                summary.by_carrier[res.carrier or "unknown"] += 1
                pending.append({"e164": e164, "carrier": res.carrier, "name": row.name,
                                "district": row.district or file_district, "ward": row.ward,
                                "zalo_user_id": row.zalo_user_id, "source_file": row.file,
                                "source_line": row.line, "created_at": now})
                if len(pending) >= CHUNK:
                    flush()
            if progress and summary.rows_read % 10_000 == 0:
                progress(summary.rows_read)
        if len(issues) >= CHUNK:
            flush()
    flush()
    after = conn.execute(select(func.count()).select_from(Recipient)).scalar_one()
    summary.new_recipients = after - before


def _literal(value: Any) -> Any:
    from sqlalchemy import literal

    return literal(value)


def list_recipients(db: Database, list_name: str | None = None) -> Iterable[Recipient]:
    """Recipients (optionally of one list), ordered by id."""
    with db.session() as s:
        stmt = select(Recipient).order_by(Recipient.id)
        if list_name:
            stmt = stmt.join(ListMember, ListMember.recipient_id == Recipient.id).where(
                ListMember.list_name == list_name)
        return list(s.scalars(stmt))

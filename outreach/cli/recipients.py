"""``outreach recipients import|list``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from outreach.input import reasons
from outreach.input import recipients as rec
from outreach import safeio
from outreach.cli import OUT_FILE, Ctx, console, pass_ctx
from outreach.i18n import _, carrier_label, ngettext, number, vi_sort_key


@click.group()
def recipients() -> None:
    """Import recipient lists and see what was imported."""


@recipients.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--list", "list_name", default="default", show_default=True,
              help="Name of the list the recipients join.")
@click.option("--encoding", help="Force the file encoding (utf-8, utf-8-sig, utf-16, cp1258).")
@click.option("--district", help="District for rows without a district column.")
@click.option("--convert-old-prefixes", is_flag=True,
              help="Convert pre-2018 11-digit numbers with the official table instead of rejecting.")
@click.option("--reject-file", type=OUT_FILE,
              help="Write every rejected and duplicate row (file, line, masked value, reason) as CSV.")
@click.option("--sheet", help="Read only this sheet of a workbook (default: every sheet with a list).")
@click.option("--province", help="Province of lists without a province column (default: found "
                                 "from the district names), e.g. 'Cần Thơ'.")
@click.option("--allow-few-valid", is_flag=True,
              help="Import a file or sheet even when fewer than half of its rows (or none) hold "
                   "a valid mobile number; refused by default.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def import_cmd(c: Ctx, files: tuple[str, ...], list_name: str, encoding: str | None,
               district: str | None, convert_old_prefixes: bool, reject_file: str | None,
               sheet: str | None, province: str | None, allow_few_valid: bool, fmt: str) -> None:
    """Read CSV/TSV/XLSX/XLS/ODS lists, normalise numbers to E.164, deduplicate, report every bad row.

    Nothing is written unless the whole import succeeds: an error or Ctrl-C leaves the
    database as it was."""
    from outreach.cli import err_console

    if province:
        from outreach.input.adminunits import UnknownProvince, official_province

        try:
            official_province(province)
        except UnknownProvince:
            raise click.BadParameter(_(
                "{name!r} is not a Vietnamese province (before or after 1 July 2025); write it "
                "as in 'Cần Thơ' or 'Thành phố Cần Thơ'").format(name=province),
                param_hint="--province") from None
    try:
        with import_progress(err_console.is_terminal, list(files)) as prog:
            summary = rec.import_files(
                c.db, list(files), list_name=list_name, encoding=encoding,
                convert_old_prefixes=convert_old_prefixes, default_district=district,
                operator=c.operator, sheet=sheet, allow_few_valid=allow_few_valid,
                province=province, progress=prog)
    except KeyboardInterrupt:
        err_console.print(_("import interrupted: nothing was written"))
        raise SystemExit(130) from None
    if reject_file:
        write_issues(Path(reject_file), summary.issues)
        safeio.record_file(c.db, reject_file, "reject-file", rows=len(summary.issues),
                           operator=c.operator)
    if fmt == "json":
        d = summary.to_dict()
        d["issues"] = [i.__dict__ for i in summary.issues]
        click.echo(json.dumps(d, ensure_ascii=False, indent=2))
        return
    console.print(lists_table(summary))
    t = Table(title=_("Import #{id} into list {name!r}").format(id=summary.import_id,
                                                                  name=list_name),
              show_header=False)
    t.add_row(_("rows read"), number(summary.rows_read))
    if summary.skipped_rows:
        t.add_row(_("rows skipped as not data (sections, totals, signatures)"),
                  number(summary.skipped_rows))
    if summary.extra_numbers:
        t.add_row(_("extra numbers in shared cells"), number(summary.extra_numbers))
    t.add_row(_("imported (unique valid mobile numbers)"), number(summary.imported))
    t.add_row(_("  of which new recipients"), number(summary.new_recipients))
    t.add_row(_("rejected"), number(summary.rejected))
    t.add_row(_("duplicates"), number(summary.duplicates))
    t.add_row(_("by carrier"), ", ".join(f"{carrier_label(k)} {number(v)}"
                                         for k, v in sorted(summary.by_carrier.items())))
    if summary.shared_cell_count:
        t.add_row(_("cells with several numbers or words"), number(summary.shared_cell_count))
    if summary.unknown_units:
        t.add_row(_("unknown districts/wards (kept as written)"), "; ".join(
            ngettext("{kind} {name!r} ({n} row)", "{kind} {name!r} ({n} rows)", n).format(
                kind=_(kind), name=name, n=number(n))
            for (kind, name), n in sorted(summary.unknown_units.items(),
                                          key=lambda kv: (kv[0][0], vi_sort_key(kv[0][1])))[:10]))
    console.print(t)
    if summary.shared_cells:
        st = Table(title=_("Cells with several numbers or words around the number"))
        for col in (_("where"), _("cell"), _("numbers")):
            st.add_column(col)
        st.columns[0].overflow = "fold"
        for where, cell, n in summary.shared_cells[:10]:
            st.add_row(where, cell.replace("\n", " | "), str(n))
        console.print(st)
    if summary.issues:
        title = _("Rejected and duplicate rows")
        if len(summary.issues) > 30:
            title += _(" (first 30 of {n}; all in --reject-file)").format(
                n=number(len(summary.issues)))
        it = Table(title=title)
        for col in (_("where"), _("value"), _("reason"), _("detail")):
            it.add_column(col)
        it.columns[0].overflow = "fold"  # file:line wraps, never cut
        it.columns[3].overflow = "fold"  # "first seen at file:line" too
        for i in summary.issues[:30]:
            it.add_row(i.where(), i.raw_masked, reasons.label(i.reason), i.detail or "")
        console.print(it)
    line = _("rows read {n}").format(n=number(summary.rows_read))
    if summary.extra_numbers:
        line += _(" + {n} extra numbers").format(n=number(summary.extra_numbers))
    line += _(" = imported {imported} + rejected {rejected} + duplicates {duplicates}").format(
        imported=number(summary.imported), rejected=number(summary.rejected),
        duplicates=number(summary.duplicates))
    console.print(line)


@contextmanager
def import_progress(enabled: bool, files: list[Any]) -> Iterator[Callable[[int], None] | None]:
    """A progress display while lists are read (stderr, on a terminal): rows read, rows per
    second since the start and, when the lists are text files (CSV/TSV: their line count, read
    in one pass over the bytes), the total and the ETA. Yields the callback to pass as the
    import's ``progress`` (rows read so far), or None when disabled."""
    if not enabled:
        yield None
        return
    import time

    from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from outreach.cli import err_console

    total = 0
    for f in files:
        path = Path(f)
        if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
            total = 0  # a workbook: rows unknown until read, so no ETA
            break
        try:
            with path.open("rb") as fh:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        except OSError:
            total = 0
            break
    bar = Progress(SpinnerColumn(), TextColumn(_("importing")), BarColumn(),
                   TextColumn("{task.fields[rows]} " + _("rows read")),
                   TextColumn("{task.fields[rate]} " + _("rows/s")), TimeElapsedColumn(),
                   TextColumn(_("ETA")), TimeRemainingColumn(), console=err_console,
                   transient=True)
    task = bar.add_task("import", rows="0", rate="0", total=total or None)
    start = time.monotonic()

    def update(rows: int) -> None:
        rate = rows / max(time.monotonic() - start, 1e-6)
        bar.update(task, completed=min(rows, total) if total else rows, rows=number(rows),
                   rate=number(rate))

    with bar:
        yield update


def lists_table(summary: rec.ImportSummary) -> Table:
    """One row per file and sheet: format, header row, columns used, rows read and skipped."""
    t = Table(title=_("Files and sheets read"))
    for col in (_("file"), _("sheet"), _("format"), _("header row"), _("columns used"),
                _("rows"), _("skipped"), _("note")):
        t.add_column(col)
    t.columns[0].overflow = "fold"
    for info in summary.lists:
        for sh in info.sheets:
            cols = ", ".join(f"{field}={label!r}" for field, label in sh.columns.items())
            note = sh.note or ""
            if sh.phone_columns_unused:
                note = (note + "; " if note else "") + _("other phone columns not used: ") + ", ".join(
                    repr(x) for x in sh.phone_columns_unused)
            t.add_row(info.file, sh.name or "", info.format,
                      str(sh.header_line) if sh.header_line else "", cols, str(sh.rows),
                      str(sh.skipped), note)
    return t


def write_issues(path: Path, issues: Iterable[rec.Issue]) -> None:
    """The reject file: CSV (UTF-8 with BOM), file 0600, cells neutralised (safeio)."""
    with safeio.open_private(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = safeio.csv_writer(fh)
        w.writerow([_("kind"), _("file"), _("line"), _("value_masked"), _("reason"), _("detail")])
        for i in issues:  # a workbook's sheet is named with the file: x.xlsx [sheet 'Ấp 1']
            file = i.file if i.sheet is None else _("{file} [sheet {sheet!r}]").format(
                file=i.file, sheet=i.sheet)
            w.writerow([i.kind, file, i.line or "", i.raw_masked, i.reason, i.detail or ""])


@recipients.command("list")
@click.option("--list", "list_name", help="Only this list.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--limit", type=int, default=0, help="At most this many rows (0: all).")
@pass_ctx
def list_cmd(c: Ctx, list_name: str | None, fmt: str, limit: int) -> None:
    """What was imported: E.164 (masked unless --show-numbers), carrier, district, ward, lists."""
    from sqlalchemy import select

    from outreach.ledger.models import ListMember, Recipient, Suppression

    with c.db.engine.connect() as conn:
        stmt = select(Recipient.id, Recipient.e164, Recipient.carrier, Recipient.district,
                      Recipient.ward).order_by(Recipient.id)
        if list_name:
            known = list(conn.execute(select(ListMember.list_name).distinct().order_by(
                ListMember.list_name)).scalars())
            if list_name not in known:
                raise click.ClickException(
                    _("no list {name!r} in this database; lists: {known}").format(
                        name=list_name, known=", ".join(known) or _("none (nothing imported "
                                                                      "yet)")))
            stmt = stmt.join(ListMember, ListMember.recipient_id == Recipient.id).where(
                ListMember.list_name == list_name)
        if limit:
            stmt = stmt.limit(limit)
        rows = conn.execute(stmt).all()
        lists: dict[int, list[str]] = {}
        for rid, ln in conn.execute(select(ListMember.recipient_id, ListMember.list_name)):
            lists.setdefault(rid, []).append(ln)
        suppressed = set(conn.execute(select(Suppression.e164)).scalars())
    data = [{"e164": c.phone(r.e164), "carrier": r.carrier, "district": r.district, "ward": r.ward,
             "lists": sorted(lists.get(r.id, [])),
             "status": "opted_out" if r.e164 in suppressed else "active"} for r in rows]
    heads = [_("number"), _("carrier"), _("district"), _("ward"), _("lists"), _("status")]
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        w = safeio.csv_writer(buf, lineterminator="\n")
        w.writerow([_("e164"), _("carrier"), _("district"), _("ward"), _("lists"), _("status")])
        for d in data:
            w.writerow([d["e164"], d["carrier"], d["district"], d["ward"], ";".join(d["lists"]),
                        _(d["status"])])
        click.echo(buf.getvalue(), nl=False)
    else:
        t = Table(title=_("Recipients ({n})").format(n=number(len(data))))
        for col in heads:
            t.add_column(col)
        for d in data:
            t.add_row(d["e164"], d["carrier"] or "", d["district"] or "", d["ward"] or "",
                      ", ".join(d["lists"]), _(d["status"]))
        console.print(t)

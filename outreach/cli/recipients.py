"""``outreach recipients import|list``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import click
from rich.table import Table

from outreach.input import recipients as rec
from outreach import safeio
from outreach.cli import Ctx, console, pass_ctx


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
@click.option("--reject-file", type=click.Path(dir_okay=False, writable=True),
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
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from outreach.cli import err_console

    bar = Progress(SpinnerColumn(), TextColumn("importing: {task.fields[rows]:,} rows read"),
                   TimeElapsedColumn(), console=err_console, transient=True,
                   disable=not err_console.is_terminal)
    task = bar.add_task("import", rows=0, total=None)
    try:
        with bar:
            summary = rec.import_files(
                c.db, list(files), list_name=list_name, encoding=encoding,
                convert_old_prefixes=convert_old_prefixes, default_district=district,
                operator=c.operator, sheet=sheet, allow_few_valid=allow_few_valid,
                province=province, progress=lambda n: bar.update(task, rows=n))
    except KeyboardInterrupt:
        err_console.print("import interrupted: nothing was written")
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
    t = Table(title=f"Import #{summary.import_id} into list {list_name!r}", show_header=False)
    t.add_row("rows read", str(summary.rows_read))
    if summary.skipped_rows:
        t.add_row("rows skipped as not data (sections, totals, signatures)",
                  str(summary.skipped_rows))
    if summary.extra_numbers:
        t.add_row("extra numbers in shared cells", str(summary.extra_numbers))
    t.add_row("imported (unique valid mobile numbers)", str(summary.imported))
    t.add_row("  of which new recipients", str(summary.new_recipients))
    t.add_row("rejected", str(summary.rejected))
    t.add_row("duplicates", str(summary.duplicates))
    t.add_row("by carrier", ", ".join(f"{k} {v}" for k, v in sorted(summary.by_carrier.items())))
    if summary.shared_cell_count:
        t.add_row("cells with several numbers or words", str(summary.shared_cell_count))
    if summary.unknown_units:
        t.add_row("unknown districts/wards (kept as written)", "; ".join(
            f"{kind} {name!r} ({n} rows)" for (kind, name), n in
            sorted(summary.unknown_units.items())[:10]))
    console.print(t)
    if summary.shared_cells:
        st = Table(title="Cells with several numbers or words around the number")
        for col in ("where", "cell", "numbers"):
            st.add_column(col)
        for where, cell, n in summary.shared_cells[:10]:
            st.add_row(where, cell.replace("\n", " | "), str(n))
        console.print(st)
    if summary.issues:
        it = Table(title="Rejected and duplicate rows" + (
            f" (first 30 of {len(summary.issues)}; all in --reject-file)" if len(summary.issues) > 30
            else ""))
        for col in ("where", "value", "reason", "detail"):
            it.add_column(col)
        for i in summary.issues[:30]:
            it.add_row(i.where(), i.raw_masked, i.reason, i.detail or "")
        console.print(it)
    console.print(f"rows read {summary.rows_read}"
                  + (f" + {summary.extra_numbers} extra numbers" if summary.extra_numbers else "")
                  + f" = imported {summary.imported} + rejected {summary.rejected} + duplicates "
                  f"{summary.duplicates}")


def lists_table(summary: rec.ImportSummary) -> Table:
    """One row per file and sheet: format, header row, columns used, rows read and skipped."""
    t = Table(title="Files and sheets read")
    for col in ("file", "sheet", "format", "header row", "columns used", "rows", "skipped", "note"):
        t.add_column(col)
    for info in summary.lists:
        for sh in info.sheets:
            cols = ", ".join(f"{field}={label!r}" for field, label in sh.columns.items())
            note = sh.note or ""
            if sh.phone_columns_unused:
                note = (note + "; " if note else "") + "other phone columns not used: " + ", ".join(
                    repr(x) for x in sh.phone_columns_unused)
            t.add_row(info.file, sh.name or "", info.format,
                      str(sh.header_line) if sh.header_line else "", cols, str(sh.rows),
                      str(sh.skipped), note)
    return t


def write_issues(path: Path, issues: list[rec.Issue]) -> None:
    """The reject file: CSV (UTF-8 with BOM), file 0600, cells neutralised (safeio)."""
    with safeio.open_private(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = safeio.csv_writer(fh)
        w.writerow(["kind", "file", "line", "value_masked", "reason", "detail"])
        for i in issues:  # a workbook's sheet is named with the file: x.xlsx [sheet 'Ấp 1']
            file = i.file if i.sheet is None else f"{i.file} [sheet {i.sheet!r}]"
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
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        w = safeio.csv_writer(buf, lineterminator="\n")
        w.writerow(["e164", "carrier", "district", "ward", "lists", "status"])
        for d in data:
            w.writerow([d["e164"], d["carrier"], d["district"], d["ward"], ";".join(d["lists"]),
                        d["status"]])
        click.echo(buf.getvalue(), nl=False)
    else:
        t = Table(title=f"Recipients ({len(data)})")
        for col in ("number", "carrier", "district", "ward", "lists", "status"):
            t.add_column(col)
        for d in data:
            t.add_row(d["e164"], d["carrier"] or "", d["district"] or "", d["ward"] or "",
                      ", ".join(d["lists"]), d["status"])
        console.print(t)

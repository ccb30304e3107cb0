"""``outreach optout add|import|remove|list``: the suppression list."""

from __future__ import annotations

import datetime as dt
import json
import re

import click
from rich.table import Table

from outreach.input import listfiles, phones, reasons as reason_labels
from outreach.ledger import suppression
from outreach.cli import Ctx, console, err_console, pass_ctx
from outreach import i18n
from outreach.i18n import N_, _, ngettext, number

#: Headers of an opt-out file's reason column (compared without case or diacritics).
REASON_HEADERS = ("reason", "ly do", "ly do tu choi", "ly do tu choi nhan tin")


def _plain(label: str) -> str:
    import unicodedata

    text = unicodedata.normalize("NFD", label.replace("đ", "d").replace("Đ", "D"))
    return " ".join("".join(ch for ch in text if not unicodedata.combining(ch)).lower().split())


def reason_column(extra: dict[str, str]) -> str | None:
    """The header of the reason column among a row's other columns ("Lý do", "Lý do từ chối
    nhận tin", "Reason"), or None (a "Ghi chú" column is a note, not a reason)."""
    for label in extra:
        if _plain(label) in REASON_HEADERS:
            return label
    return None


def shown_raw(c: Ctx, raw: str) -> str:
    """A number as the operator typed it, for a message: whole with --show-numbers, else its
    middle digits masked as in the import tables (:func:`outreach.input.recipients.mask_raw`:
    ``02923555123`` → ``029*****123``)."""
    if c.show_numbers:
        return raw
    from outreach.input.recipients import mask_raw

    return mask_raw(raw)


def _normalise_all(c: Ctx, numbers: tuple[str, ...]) -> list[str]:
    """E.164 of every number; an old 11-digit number is converted (an opt-out written the old
    way must still stop the converted number). Any unreadable number refuses the whole command
    (:class:`click.ClickException` naming the number, masked unless --show-numbers, and the
    reason in words)."""
    out = []
    for raw in numbers:
        res = phones.normalise(raw, convert_old_prefixes=True)
        if not res.ok:
            raise click.ClickException(_("{raw!r} is not a mobile number ({reason}); nothing "
                                         "was changed").format(
                                             raw=shown_raw(c, raw),
                                             reason=reason_labels.label(res.reason)))
        assert res.e164
        out.append(res.e164)
    return out


@click.group()
def optout() -> None:
    """Numbers that must never receive a message (applied at run creation and before each send)."""


@optout.command("add")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--reason", default="citizen-request", show_default=True)
@click.option("--source", default="operator", show_default=True,
              help="Where the request came from (hotline, letter, provider...).")
@pass_ctx
def add(c: Ctx, numbers: tuple[str, ...], reason: str, source: str) -> None:
    """Add numbers (any written form) to the suppression list."""
    e164s = _normalise_all(c, numbers)
    with c.db.engine.begin() as conn:
        n = suppression.add(conn, e164s, reason=reason, source=source, operator=c.operator)
    console.print(ngettext("{n} number added to the suppression list ({old} already there)",
                           "{n} numbers added to the suppression list ({old} already there)",
                           n).format(n=number(n), old=number(len(e164s) - n)))


@optout.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--reason", default="citizen-request", show_default=True)
@click.option("--source", help="Default: the file name.")
@pass_ctx
def import_(c: Ctx, files: tuple[str, ...], reason: str, source: str | None) -> None:
    """Import opt-outs from CSV/XLSX files (a phone column is required).

    Every number in a cell is read, old 11-digit forms converted (an opt-out must block the
    number as it is dialled today). A reason column ("Lý do", "Reason") gives each
    number its own reason; --reason is used for rows without one. Prints, per file, the rows
    read and the numbers suppressed (new, or already on the list); unreadable rows are named by
    file and line on stderr. Each file is added in one transaction, after it has been read in
    full.
    """
    sums = {"rows": 0, "numbers": 0, "added": 0, "bad": 0}
    for f in files:
        good: list[str] = []
        reasons: dict[str, str] = {}
        rows = bad = 0
        for row in listfiles.read_list(f):
            rows += 1
            col = reason_column(row.extra)
            row_reason = (row.extra.get(col) or "").strip() if col else ""
            for cell in phones.split_cell(row.phone or "") or [""]:
                res = phones.normalise(cell, convert_old_prefixes=True)
                if res.ok and res.e164:
                    good.append(res.e164)
                    if row_reason:
                        reasons.setdefault(res.e164, row_reason)
                else:
                    bad += 1
                    err_console.print(_("{file}:{line}: skipped ({reason})").format(
                        file=row.file, line=row.line, reason=reason_labels.label(res.reason)),
                        soft_wrap=True)
        with c.db.engine.begin() as conn:
            added = suppression.add(conn, good, reason=reason, source=source or f,
                                    operator=c.operator, action="optout-import", reasons=reasons)
        unique = len(set(good))
        console.print(_("{file}: {rows}; {numbers}: {added} added to the suppression list, {old} "
                        "already on it; {bad} unreadable").format(
                            file=f, rows=ngettext("{n} row read", "{n} rows read", rows).format(
                                n=number(rows)),
                            numbers=ngettext("{n} number", "{n} numbers", unique).format(
                                n=number(unique)),
                            added=number(added), old=number(unique - added), bad=number(bad)),
                      soft_wrap=True)
        for key, value in (("rows", rows), ("numbers", unique), ("added", added), ("bad", bad)):
            sums[key] += value
    if len(files) > 1:
        console.print(_("total: {rows}; {numbers}: {added} added; {bad} unreadable").format(
            rows=ngettext("{n} row read", "{n} rows read", sums["rows"]).format(
                n=number(sums["rows"])),
            numbers=ngettext("{n} number", "{n} numbers", sums["numbers"]).format(
                n=number(sums["numbers"])),
            added=number(sums["added"]), bad=number(sums["bad"])))


@optout.command("remove")
@click.argument("numbers", nargs=-1, required=True)
@pass_ctx
def remove(c: Ctx, numbers: tuple[str, ...]) -> None:
    """Remove numbers from the suppression list (the citizen asked to receive messages again)."""
    with c.db.engine.begin() as conn:
        n = suppression.remove(conn, _normalise_all(c, numbers), operator=c.operator)
    console.print(ngettext("{n} number removed", "{n} numbers removed", n).format(n=number(n)))


@optout.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def list_(c: Ctx, fmt: str) -> None:
    """The suppression list with reason, source, channels, evidence and time. A source
    ``reply:<gateway>`` is a citizen's own reply (keyword, Zalo unfollow), its evidence the
    reply; channels ``all`` or the one channel it stops."""
    with c.db.engine.connect() as conn:
        rows = suppression.all_entries(conn)
    from outreach.cli.inbox import label, mask_sender

    data = [{"e164": mask_sender(c, r.e164),
             "reason": r.reason, "source": r.source, "channels": r.channel or "all",
             "evidence": _masked(c, r.evidence), "inbound_id": r.inbound_id,
             "created_at": r.created_at.isoformat()} for r in rows]
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    t = Table(title=_("Suppression list ({n})").format(n=number(len(data))))
    for col in (_("number"), _("reason"), _("source"), _("channels"), _("evidence"), _("since")):
        t.add_column(col)
    for d, r in zip(data, rows):
        channels = d["channels"] if r.channel else label(N_("channels|all"))
        t.add_row(d["e164"], suppression.reason_label(d["reason"]),
                  suppression.source_label(d["source"]), channels, _evidence(d["evidence"]) or "",
                  i18n.when(r.created_at))
    console.print(t)


#: The evidence :func:`outreach.receipts.inbound.record_inbound` stores for a reply opt-out.
_EVIDENCE = re.compile(r"(?P<channel>\S+) (?P<what>reply|event) (?P<text>.*) at (?P<at>\S+) "
                       r"\(inbound #(?P<id>\d+)\)", re.S)


def _evidence(text: str | None) -> str | None:
    """The stored evidence of a reply opt-out as a person reads it (Vietnamese: the reply and
    its time in Vietnamese; English and any other evidence: as stored)."""
    if text is None or i18n.current() == "en":
        return text
    m = _EVIDENCE.fullmatch(text)
    if m is None:
        return text
    try:
        at = i18n.when(dt.datetime.fromisoformat(m["at"]))
    except ValueError:
        return text
    msg = (_("{channel} reply {text} at {when} (inbound #{id})") if m["what"] == "reply" else
           _("{channel} event {text} at {when} (inbound #{id})"))
    return msg.format(channel=m["channel"], text=m["text"], when=at, id=m["id"])


def _masked(c: Ctx, text: str | None) -> str | None:
    if text is None or c.show_numbers:
        return text
    from outreach.logmask import mask_text

    return mask_text(text)

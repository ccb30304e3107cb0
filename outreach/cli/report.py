"""``outreach report CAMPAIGN_ID``: the delivery report, and the official results report."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table

from outreach import i18n, safeio
from outreach.reporting import reports
from outreach.cli import OUT_FILE, Ctx, console, pass_ctx
from outreach.cli.campaign import require_campaign
from outreach.i18n import N_, _, number, percent

#: Breakdowns the table shows unless --by says otherwise (wards are long: ask for them).
DEFAULT_TABLES = ("status", "district", "carrier", "channel", "gateway", "day", "reasons")


#: A date as Vietnamese documents write it: ``30/07/2024`` or ``30/7/2024``, optionally
#: followed by a time ``08:00`` or ``08:00:00``.
_VN_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")


def _parse(value: str) -> tuple[dt.datetime, bool]:
    """(datetime, whether a time was given) of ``YYYY-MM-DD[T ]HH:MM[:SS][offset]`` or
    ``DD/MM/YYYY[ HH:MM[:SS]]``. Raises ValueError."""
    text = value.strip()
    found = _VN_DATE.fullmatch(text)
    if found:
        day, month, year, hour, minute, second = found.groups()
        return (dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                            int(second or 0)), hour is not None)
    return dt.datetime.fromisoformat(text), len(text) > 10


def parse_when(value: str | None, *, end: bool = False) -> dt.datetime | None:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD[T ]HH:MM[:SS]``, or as Vietnamese documents write it,
    ``DD/MM/YYYY[ HH:MM]`` (Asia/Ho_Chi_Minh unless an offset is given) -> aware datetime. With
    ``end`` a bare date means the end of that day (the next midnight), so ``--until
    2024-08-02`` (or ``02/08/2024``) includes 2 August. Raises click.BadParameter."""
    if not value:
        return None
    from outreach.clock import VN_TZ

    try:
        d, timed = _parse(value)
    except ValueError:
        raise click.BadParameter(_("{value!r} is not a date or date-time (DD/MM/YYYY [HH:MM] "
                                   "or YYYY-MM-DD[THH:MM])").format(value=value)) from None
    if end and not timed:
        d += dt.timedelta(days=1)
    return d if d.tzinfo else d.replace(tzinfo=VN_TZ)


def parse_day(value: str, param_hint: str) -> str:
    """A calendar day, ``DD/MM/YYYY`` or ``YYYY-MM-DD``, as ISO ``YYYY-MM-DD``. Raises
    click.BadParameter naming ``param_hint``."""
    try:
        d, timed = _parse(value)
    except ValueError:
        d, timed = None, True
    if d is None or timed:
        raise click.BadParameter(_("{value!r} is not a date (DD/MM/YYYY or YYYY-MM-DD)").format(
            value=value), param_hint=param_hint)
    return d.date().isoformat()


@click.command()
@click.argument("campaign_id")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "xlsx"]),
              default="table", show_default=True)
@click.option("--out", "out", type=OUT_FILE,
              help="Write to this file (required for xlsx and --official; .html or .pdf there).")
@click.option("--since", help="Deliveries sent (or, never sent, queued) from this date/time "
              "(Asia/Ho_Chi_Minh).")
@click.option("--until", help="...before this date/time; a bare date includes that whole day.")
@click.option("--by", "by", multiple=True,
              type=click.Choice([*reports.DIMENSIONS, "reasons", "all"]),
              help="Breakdowns to show (repeatable). Table: default all but ward. CSV: default "
                   "district (one flat table); several, or all, give one long table.")
@click.option("--official", is_flag=True,
              help="The results report for the city (BÁO CÁO, Decree 30/2020/NĐ-CP layout, in "
                   "Vietnamese): --out FILE.docx|FILE.pdf|FILE.html. Its fixed parts come from "
                   "the campaign file's [report] table; the options below override them.")
@click.option("--org", envvar="OUTREACH_ORG",
              help="Official report: the reporting body's name (e.g. 'Sở Thông tin và Truyền "
                   "thông'); left as a blank to fill in when not given.")
@click.option("--place", envvar="OUTREACH_PLACE", help="Official report: place on the date line.")
@click.option("--number", help="Official report: Số (e.g. '45/BC-STTTT'); default "
              "report.number, a blank for the clerk.")
@click.option("--date", "doc_date", help="Official report: its date (YYYY-MM-DD); default "
              "report.date, else today.")
@click.option("--to", "to", help="Official report: Kính gửi (default report.to).")
@click.option("--signer-title", help="Official report: the signer's title (e.g. 'GIÁM ĐỐC').")
@click.option("--signer-authority", help="Official report: 'KT. GIÁM ĐỐC', 'TL. GIÁM ĐỐC'… "
              "('' for none).")
@click.option("--signer-name", help="Official report: the signer's full name.")
@pass_ctx
def report(c: Ctx, campaign_id: str, fmt: str, out: str | None, since: str | None,
           until: str | None, by: tuple[str, ...], official: bool, org: str | None,
           place: str | None, number: str | None, doc_date: str | None, to: str | None,
           signer_title: str | None, signer_authority: str | None,
           signer_name: str | None) -> None:
    """Who got the message and who did not: totals by status; breakdowns by district and ward,
    carrier, channel, gateway and day; delivery rate; failure reasons with provider codes;
    segments and cost (VND).

    Every delivery is counted once in every breakdown. Days are Vietnamese calendar days of the
    send attempt (of the queueing for a message never sent). Recipients are people; deliveries
    are messages (a resend or a fallback channel adds messages, not people); reached = people
    with at least one delivered message.
    """
    since_at, until_at = parse_when(since), parse_when(until, end=True)
    if official:
        if doc_date:
            doc_date = parse_day(doc_date, "--date")
        _official(c, campaign_id, out, since_at, until_at,
                  dict(org=org, place=place, number=number, date=doc_date, to=to,
                       signer_title=signer_title, signer_authority=signer_authority,
                       signer_name=signer_name))
        return
    if fmt == "xlsx" and not out:
        raise click.UsageError(_("--format xlsx needs --out FILE.xlsx"))
    if fmt == "table" and out:  # never a file silently not written
        raise click.UsageError(_("the table is shown on the screen: to write {out}, choose "
                                 "--format csv, json or xlsx (or --official for the signed "
                                 "report)").format(out=out))
    if out:
        check_suffix(fmt, out)
    with reports.report_connection(c.db.engine) as conn:
        require_campaign(conn, campaign_id)
        data = reports.campaign_report(conn, campaign_id, since=since_at, until=until_at)
    if fmt == "xlsx":
        assert out is not None
        reports.write_xlsx(data, out)
        console.print(_("report of {id} written to {out}").format(id=campaign_id, out=out))
    elif fmt in ("json", "csv"):
        if fmt == "json":
            body = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        else:
            dims = ([*reports.DIMENSIONS, "reasons"] if "all" in by
                    else list(dict.fromkeys(by)) or ["district"])
            body = reports.to_csv(data, dims)
        if out:
            # utf-8-sig: Excel opens a CSV with a BOM as UTF-8 (Vietnamese diacritics intact)
            safeio.write_private(out, body, encoding="utf-8-sig" if fmt == "csv" else "utf-8")
            console.print(_("report of {id} written to {out}").format(id=campaign_id, out=out))
        else:
            click.echo(body, nl=False)
    else:
        wanted = set(by) or set(DEFAULT_TABLES)
        if "all" in wanted:
            wanted = set(reports.DIMENSIONS) | {"reasons"}
        _table(data, wanted)


#: The file suffixes of each --format; an --out with another format's suffix is refused.
SUFFIXES = {"csv": (".csv",), "json": (".json",), "xlsx": (".xlsx",)}
KNOWN_SUFFIXES = (".csv", ".json", ".xlsx", ".xls", ".ods", ".html", ".htm", ".pdf", ".docx",
                  ".txt", ".tsv")


def check_suffix(fmt: str, out: str) -> None:
    """Refuse (UsageError) an --out whose suffix says another format than --format, e.g.
    ``--format xlsx --out report.csv`` (a workbook that Excel would refuse to open as CSV);
    an unknown suffix, or none, is accepted (xlsx needs .xlsx)."""
    if fmt not in SUFFIXES:
        return
    suffix = Path(out).suffix.lower()
    if suffix in SUFFIXES[fmt] or (suffix not in KNOWN_SUFFIXES and fmt != "xlsx"):
        return
    raise click.UsageError(_("--format {fmt} writes a {want} file, but --out {out} says {got}: "
                             "give --out with {want} (or the --format that matches "
                             "{got})").format(fmt=fmt, want=SUFFIXES[fmt][0], out=out,
                                              got=suffix or _("no suffix")))


def _official(c: Ctx, campaign_id: str, out: str | None, since: dt.datetime | None,
              until: dt.datetime | None, overrides: dict[str, Any]) -> None:
    from outreach.reporting import official

    if not out:
        raise click.UsageError(_("--official needs --out FILE.docx (or FILE.pdf, FILE.html)"))
    if Path(out).suffix.lower() not in official.SUFFIXES:
        raise click.UsageError(_("--official writes .docx, .pdf or .html: give --out "
                                 "FILE.docx"))
    with reports.report_connection(c.db.engine) as conn:
        require_campaign(conn, campaign_id)
        data = reports.campaign_report(conn, campaign_id, since=since, until=until)
    info = official.document_info(data, **overrides)
    try:
        path = official.write_report(data, out, info=info)
    except official.OfficialReportError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(_("official report of {id} written to {path} ({deliveries} deliveries, "
                    "{recipients} recipients)").format(
                        id=campaign_id, path=path, deliveries=number(data["deliveries"]),
                        recipients=number(data["recipients"])))


_SHORT = {"deliveries": N_("total"), "attempted": N_("tried"), "delivered": N_("deliv"),
          "failures": N_("fail"), "awaiting": N_("wait"), "not_sent": N_("unsent"),
          "rate": N_("rate"), "segments": N_("segs"), "cost_vnd": N_("VND")}
_CAPTION = N_("tried = handed to a gateway; fail = failed or undelivered; wait = sending, sent "
              "or unknown; unsent = queued, skipped or opted out; rate = deliv / tried")
_DIMENSION = {"district": N_("district"), "ward": N_("ward"), "carrier": N_("carrier"),
              "channel": N_("channel"), "gateway": N_("gateway"), "day": N_("day"),
              "province": N_("province"), "commune": N_("commune"), "status": N_("status")}
_BY = {"district": N_("Deliveries by district"), "ward": N_("Deliveries by ward"),
       "carrier": N_("Deliveries by carrier"), "channel": N_("Deliveries by channel"),
       "gateway": N_("Deliveries by gateway"), "day": N_("Deliveries by day"),
       "province": N_("Deliveries by province"), "commune": N_("Deliveries by commune")}


def _fmt_rate(rate: float | None) -> str:
    return percent(rate)


def _when(iso: str | None) -> str:
    """An ISO time of the report as the operator reads it (``08:00 ngày 30/07/2024``)."""
    from outreach.i18n import when

    return when(dt.datetime.fromisoformat(iso)) if iso else "–"


def _key(key: str) -> str:
    return _("TOTAL") if key == "TOTAL" else key


def _reply_line(replies: dict[str, Any]) -> None:
    """Citizens' replies to the campaign: total, by kind and by keyword (`outreach inbox`)."""
    if not replies.get("total"):
        return
    from outreach.cli.inbox import code_label

    kinds = ", ".join(f"{code_label(k)} {number(n)}" for k, n in replies["by_kind"].items() if n)
    words = ", ".join(f"{k} {number(n)}" for k, n in replies["by_keyword"].items())
    line = _("replies from citizens {n} ({kinds})").format(n=number(replies["total"]),
                                                            kinds=kinds)
    if words:
        line += _("; keywords: {words}").format(words=words)
    console.print(line + " — `outreach inbox list`")


def _table(data: dict[str, Any], wanted: set[str]) -> None:
    from outreach.sending.reasons import label as reasons_label

    n = number
    console.print(f"[bold]{data['name']}[/bold] ({data['campaign']})")
    console.print(_("source: {source}").format(source=data["source"]))
    if data["since"] or data["until"]:
        console.print(_("period: {since} – {until}").format(
            since=_when(data["since"]) if data["since"] else "…",
            until=_when(data["until"]) if data["until"] else "…"))
    console.print(_(
        "recipients {recipients} (reached {reached}, {reach_rate}; not reached {not_reached}); "
        "deliveries {deliveries}: attempted {attempted}, delivered {delivered} ({delivery_rate} "
        "of attempted), failures {failures}, awaiting {awaiting}, not sent {not_sent}").format(
            recipients=n(data["recipients"]), reached=n(data["reached"]),
            reach_rate=_fmt_rate(data["reach_rate"]), not_reached=n(data["not_reached"]),
            deliveries=n(data["deliveries"]), attempted=n(data["attempted"]),
            delivered=n(data["delivered"]), delivery_rate=_fmt_rate(data["delivery_rate"]),
            failures=n(data["failures"]), awaiting=n(data["awaiting"]),
            not_sent=n(data["not_sent"])))
    console.print(_("segments {segments}, cost {cost} VND; first send {first}, last send "
                    "{last}").format(segments=n(data["segments"]), cost=n(data["cost_vnd"]),
                                     first=_when(data["first_send"]),
                                     last=_when(data["last_send"])))
    for g in data.get("local_gateways") or []:
        count = sum((data["by_gateway"].get(g) or {}).values())
        console.print(_("[yellow]note: {n} deliveries went to the {gateway} gateway (a local "
                        "file): none reached a phone and none is billed[/yellow]").format(
                            n=n(count), gateway=g))
    for ch, count in (data.get("unknown_no_fallback") or {}).items():
        console.print(_("[yellow]note: {n} deliveries by {channel} have an unknown outcome, so "
                        "the next channel was not sent (the provider may have delivered them); "
                        "`outreach deliveries list {id} --status unknown`, then `outreach "
                        "deliveries resolve … --fallback` to send by the next channel "
                        "anyway[/yellow]").format(n=n(count), channel=ch, id=data["campaign"]))
    for dim in reports.DIMENSIONS:
        if dim not in wanted:
            continue
        rows = reports.breakdown_rows(data, dim)
        if dim == "status":
            t = Table(title=_("Deliveries by status"))
            t.add_column(_("status"))
            t.add_column(_("deliveries"), justify="right")
            for r in rows:
                count = r["deliveries"]
                if count or r["key"] == "TOTAL":
                    t.add_row(_key(r["key"]) if r["key"] == "TOTAL" else _(r["key"]), n(count))
            console.print(t)
            continue
        t = Table(title=_(_BY[dim]) if dim in _BY else _("Deliveries by {dim}").format(dim=dim),
                  caption=_(_CAPTION) if dim == "district" else None,
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        first = "district" if dim == "ward" else dim
        t.add_column(_(_DIMENSION.get(first, first)), no_wrap=True)
        if dim == "ward":
            t.add_column(_("ward"), no_wrap=True)
        cols = ["deliveries", "attempted", "delivered", "failures", "awaiting", "not_sent"]
        for col in (_(_SHORT[c]) for c in cols + ["rate"] + (["segments", "cost_vnd"]
                                                             if dim in data["cost"] else [])):
            t.add_column(col, justify="right", no_wrap=True)
        for r in rows:
            key = _key(r["key"])
            if dim == "day" and r["key"] != "TOTAL":
                key = i18n.day(dt.date.fromisoformat(r["key"]))
            cells = [key] + ([r["subkey"]] if dim == "ward" else [])
            cells += [n(r[c]) for c in cols] + [_fmt_rate(r["delivery_rate"])]
            if dim in data["cost"]:
                cells += [n(r["segments"]), n(r["cost_vnd"])]
            if r["key"] == "TOTAL":
                cells = [f"[bold]{x}[/bold]" for x in cells]
            t.add_row(*cells)
        console.print(t)
    if "reasons" in wanted:
        t = Table(title=_("Failure reasons (failed, undelivered, unknown, skipped, opted out)"))
        for col in (_("status"), _("gateway"), _("code"), _("reason")):
            t.add_column(col)
        t.add_column(_("deliveries"), justify="right")
        for r in data["failure_reasons"]:
            t.add_row(_(r["status"]), r["gateway"] or "", r["error_code"] or "",
                      reasons_label(r["error_reason"]), n(r["count"]))
        if not data["failure_reasons"]:
            t.add_row("–", "", "", _("none"), "0")
        console.print(t)
    _carrier_tables(data.get("carrier_broadcasts") or {})
    _reply_line(data.get("replies") or {})
    if not data["deliveries"]:
        console.print(_("no delivery yet"))


def _carrier_tables(cb: dict[str, Any]) -> None:
    """The operators' own broadcasts, apart from the per-person figures above."""
    carriers = cb.get("carriers") or {}
    if not carriers:
        return
    from outreach.carriers.ledger import status_label
    from outreach.cli.inbox import label as ctx_label

    def day(value: str | None) -> str:
        return i18n.day(dt.date.fromisoformat(value)) if value else "–"

    t = Table(title=_("Carrier broadcasts (subscribers messaged as each operator reported: "
                      "counts, not people; not in recipients or reached)"))
    for col in (N_("broadcasts|carrier"), N_("broadcasts|status"), N_("broadcasts|letter"),
                N_("broadcasts|requested"), N_("broadcasts|results"),
                N_("broadcasts|subscribers")):
        t.add_column(ctx_label(col), justify="right" if col.endswith("subscribers") else "left")
    for name, v in carriers.items():
        t.add_row(name, status_label(v["status"]), (v["letter_number"] or "").strip(),
                  day(v["requested_on"]), day(v["results_on"]),
                  number(v["sent"]) if v["results_on"] else "–")
    t.add_row(f"[bold]{_key('TOTAL')}[/bold]", "", "", "", "",
              f"[bold]{number(cb['sent'])}[/bold]")
    console.print(t)
    names = sorted({c for d in cb["by_day"].values() for c in d})
    if not names:
        return
    for title, key, label in ((N_("Carrier broadcasts by day"), "by_day", N_("broadcasts|day")),
                              (N_("Carrier broadcasts by area"), "by_area",
                               N_("broadcasts|area"))):
        t = Table(title=_(title), box=box.SIMPLE_HEAD)
        t.add_column(ctx_label(label))
        for n in names:
            t.add_column(n, justify="right")
        t.add_column(ctx_label(N_("broadcasts|total")), justify="right")
        for k, v in cb[key].items():
            shown = day(k) if key == "by_day" else k
            t.add_row(shown, *(number(v.get(n, 0)) for n in names), number(sum(v.values())))
        console.print(t)

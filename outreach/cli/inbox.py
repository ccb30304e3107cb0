"""``outreach inbox list|export``: citizens' replies (issue #20), each with the campaign it most
likely answers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table

from outreach import safeio
from outreach import i18n
from outreach.cli import OUT_FILE, Ctx, console, pass_ctx
from outreach.i18n import N_, _, label, ngettext, number
from outreach.receipts import inbound

COLUMNS = ("id", "received_at", "channel", "gateway", "sender", "kind", "keyword", "text",
           "campaign_id", "confirmation")
#: The table's headings (the export and JSON keep the column names above).
HEADINGS = {"id": N_("inbox|id"), "received_at": N_("inbox|received_at"),
            "channel": N_("inbox|channel"), "gateway": N_("inbox|gateway"),
            "sender": N_("inbox|sender"), "kind": N_("inbox|kind"),
            "keyword": N_("inbox|keyword"), "text": N_("inbox|text"),
            "campaign_id": N_("inbox|campaign_id"), "confirmation": N_("inbox|confirmation")}
#: What a stored code (kind, confirmation state) reads as in a table.
LABELS = {"optout": N_("reply|optout"), "optin": N_("reply|optin"),
          "unfollow": N_("reply|unfollow"), "message": N_("reply|message"),
          "pending": N_("confirmation|pending"), "sending": N_("confirmation|sending"),
          "sent": N_("confirmation|sent"), "failed": N_("confirmation|failed"),
          "unknown": N_("confirmation|unknown")}




def code_label(code: str | None) -> str:
    """A stored code as the table shows it (translated when it is a known kind or state)."""
    if code is None:
        return ""
    return label(LABELS[code]) if code in LABELS else code


def _rows(c: Ctx, campaign: str | None, since: str | None, every: bool, whole: bool
          ) -> list[dict[str, Any]]:
    from outreach.cli.report import parse_when

    since_at = parse_when(since)
    if campaign is not None:
        from outreach.cli.campaign import require_campaign

        with c.db.engine.connect() as conn:  # a mistyped id is an error, not an empty inbox
            require_campaign(conn, campaign)
    with c.db.engine.begin() as conn:
        # SMPP replies stored while no hook recorded them (an older sender, a crash)
        inbound.ingest_smpp(conn, settings=inbound.current_settings())
    with c.db.engine.connect() as conn:
        msgs = inbound.inbox(conn, campaign_id=campaign, since=since_at,
                             kinds=None if every else [inbound.MESSAGE])
    out = []
    for m in msgs:
        sender = m.sender
        if not whole:
            sender = mask_sender(c, sender)
        text = m.text
        if not whole and text and not c.show_numbers:
            from outreach.logmask import mask_text

            text = mask_text(text)  # a reply may carry a phone number
        out.append({"id": m.id, "received_at": m.received_at.isoformat(), "channel": m.channel,
                    "gateway": m.gateway, "sender": sender, "kind": m.kind,
                    "keyword": m.keyword, "text": text, "campaign_id": m.campaign_id,
                    "confirmation": m.confirmation})
    return out


def mask_sender(c: Ctx, sender: str) -> str:
    """A sender as console output shows it: a phone number masked (whole with
    --show-numbers), a Zalo user id cut to its last 4 characters (whole with --show-numbers)."""
    if sender.startswith("+"):
        return c.phone(sender)
    return sender if c.show_numbers else f"zalo …{sender[-4:]}"


def _cell(col: str, value: Any) -> str:
    if value is None:
        return ""
    if col == "received_at":
        return i18n.when(dt.datetime.fromisoformat(value))
    if col in ("kind", "confirmation"):
        return code_label(value)
    return str(value)


@click.group()
def inbox() -> None:
    """Citizens' replies that are not a keyword (and, with --all, every reply and opt-out)."""


_campaign = click.option("--campaign", help="Only replies that most likely answer this campaign "
                                            "(the latest delivery to that number).")
_since = click.option("--since", help="Received from this date/time (YYYY-MM-DD[ HH:MM], "
                                      "Vietnamese time).")
_all = click.option("--all", "every", is_flag=True,
                    help="Also keyword replies (opt-outs, opt-ins) and Zalo unfollows.")


@inbox.command("list")
@_campaign
@_since
@_all
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def list_(c: Ctx, campaign: str | None, since: str | None, every: bool, fmt: str) -> None:
    """The inbox, oldest first; numbers masked unless --show-numbers."""
    rows = _rows(c, campaign, since, every, whole=False)
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    t = Table(title=_("Inbox ({n})").format(n=number(len(rows))), box=box.SIMPLE_HEAD)
    for col in COLUMNS:
        t.add_column(label(HEADINGS[col]))
    for r in rows:
        t.add_row(*(_cell(col, r[col]) for col in COLUMNS))
    console.print(t)


@inbox.command("export")
@click.argument("out", type=OUT_FILE)
@_campaign
@_since
@_all
@pass_ctx
def export(c: Ctx, out: str, campaign: str | None, since: str | None, every: bool) -> None:
    """Write the inbox to OUT (CSV, UTF-8 with BOM, formula-safe, private file) with whole
    numbers, to answer citizens; recorded in the audit log. Delete the file after use."""
    from outreach.reporting import audit

    rows = _rows(c, campaign, since, every, whole=True)
    path = Path(out)
    with safeio.open_private(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = safeio.csv_writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(["" if r[col] is None else r[col] for col in COLUMNS])
    with c.db.engine.begin() as conn:
        audit.record(conn, "export", operator=c.operator, campaign_id=campaign,
                     details={"what": "inbox", "rows": len(rows), "all": every,
                              "file": str(path.resolve())})
    console.print(ngettext("{n} reply written to {path} (whole phone numbers: keep the file "
                           "safe and delete it after use)",
                           "{n} replies written to {path} (whole phone numbers: keep the file "
                           "safe and delete it after use)", len(rows)).format(
                               n=len(rows) if i18n.current() == "en" else number(len(rows)),
                               path=path), soft_wrap=True)


@inbox.command("counts")
@_since
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def counts(c: Ctx, since: str | None, fmt: str) -> None:
    """Replies counted by kind, keyword, campaign (the one each most likely answers) and day
    (Vietnamese calendar day of receipt), over every campaign; one campaign's are in
    `outreach report ID`."""
    from outreach.cli.report import parse_when

    with c.db.engine.connect() as conn:
        data = inbound.reply_counts(conn, since=parse_when(since))
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    console.print(_("replies {total}; opt-outs {optouts} ({kinds})").format(
        total=number(data["total"]), optouts=number(data["optouts"]),
        kinds=", ".join(f"{code_label(k)} {number(n)}" for k, n in data["by_kind"].items())))
    for title, heading, key in ((N_("Replies by keyword"), N_("counts|keyword"), "by_keyword"),
                                (N_("Replies by campaign"), N_("counts|campaign"), "by_campaign"),
                                (N_("Replies by channel"), N_("counts|channel"), "by_channel")):
        t = Table(title=_(title), box=box.SIMPLE_HEAD)
        t.add_column(label(heading))
        t.add_column(label(N_("counts|replies")), justify="right")
        for k, n in data[key].items():
            t.add_row(k, number(n))
        console.print(t)
    t = Table(title=_("Replies by day"), box=box.SIMPLE_HEAD)
    t.add_column(label(N_("counts|day")))
    for k in inbound.KINDS:
        t.add_column(code_label(k), justify="right")
    for day, row in data["by_day"].items():
        t.add_row(i18n.day(dt.date.fromisoformat(day)), *(number(row[k]) for k in inbound.KINDS))
    console.print(t)

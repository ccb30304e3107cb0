"""``outreach privacy purge``: personal-data retention (numbers of finished campaigns hashed)."""

from __future__ import annotations

import datetime as dt
import json

import click

from outreach import i18n

from outreach.cli import Ctx, console, pass_ctx
from outreach.i18n import N_, _, ngettext, number


@click.group()
def privacy() -> None:
    """Personal data: how long phone numbers are kept (PDP Law 91/2025/QH15)."""


@privacy.command("purge")
@click.option("--older-than", "days", type=click.IntRange(min=0), required=True, metavar="DAYS",
              help="Purge campaigns whose last activity is older than this many days.")
@click.option("--key-env", default="OUTREACH_PURGE_KEY", show_default=True, metavar="VAR",
              help="Environment variable holding the secret key of the hashes (>= 16 bytes; "
                   "use the same key every time).")
@click.option("--dry-run", is_flag=True, help="Say what would be purged; change nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def purge(c: Ctx, days: int, key_env: str, dry_run: bool, fmt: str) -> None:
    """Replace the phone numbers of finished campaigns with keyed hashes and clear names.

    A campaign is finished when no run is active, no delivery is queued, sending or unknown,
    no schedule can still fire, and nothing happened for DAYS days. Recipients still in
    another campaign keep their number. Counts and reports do not change; the opt-out list is
    kept as it is (it must go on matching the number). Recorded in the audit log.
    """
    from outreach.reporting import privacy as privmod

    key = None
    try:
        key = privmod.key_from_env(key_env)
    except privmod.PrivacyError:
        if not dry_run:
            raise
    res = privmod.purge(c.db, older_than_days=days, key=key, dry_run=dry_run,
                        operator=c.operator)
    if fmt == "json":
        click.echo(json.dumps(res.to_dict(), ensure_ascii=False, indent=2))
        return
    if not res.campaigns:
        console.print(ngettext("nothing to purge: no campaign finished more than {n} day ago",
                               "nothing to purge: no campaign finished more than {n} days ago",
                               days).format(n=days))
    else:
        n = len(res.campaigns)
        line = (ngettext("would purge {n} campaign: {ids}", "would purge {n} campaigns: {ids}", n)
                if dry_run else
                ngettext("purged {n} campaign: {ids}", "purged {n} campaigns: {ids}", n))
        console.print(line.format(n=n, ids=", ".join(res.campaigns)))
        console.print(_("  deliveries: {n} numbers replaced by keyed hashes").format(
            n=number(res.deliveries)))
        console.print(_("  recipients: {n} numbers and names replaced; {kept} kept (still in "
                        "another campaign or list)").format(n=number(res.recipients),
                                                            kept=number(res.recipients_kept)))
        console.print(_("  list memberships removed: {n}").format(n=number(res.list_memberships)))
        if not dry_run:
            console.print(_("  raw payloads scrubbed: {events} events, {receipts} pending "
                            "receipts; key id {key}").format(events=number(res.events_scrubbed),
                                                             receipts=number(res.receipts_scrubbed),
                                                             key=res.key_id))
    if res.inbound_messages:
        console.print((_("  citizens' replies: {n} would be purged (sender hashed, text cleared)")
                       if dry_run else
                       _("  citizens' replies: {n} purged (sender hashed, text cleared; {raw} raw "
                         "SMPP parts)")).format(n=number(res.inbound_messages),
                                                raw=number(res.smpp_inbound)))
    for cid, why in res.not_eligible.items():
        console.print(_("  kept {id}: {why}").format(id=cid, why=why))
    if dry_run and key is None:
        console.print(_("note: a real purge needs the key in ${name}").format(name=key_env))


@privacy.command("check")
@click.option("--older-than", "days", type=click.IntRange(min=0), default=90, show_default=True,
              metavar="DAYS", help="Say what `privacy purge --older-than DAYS` would remove.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def check(c: Ctx, days: int, fmt: str) -> None:
    """What personal data this installation holds and where: database tables and counts, the
    database and outbox files, exports and reject files still on disk, recipient lists named by
    imports, each with its permissions; and what a purge would remove. Changes nothing."""
    from outreach.reporting import privacy as privmod

    res = privmod.check(c.db, older_than_days=days)
    if fmt == "json":
        click.echo(json.dumps(res, ensure_ascii=False, indent=2, default=str))
        return

    def say(line: str) -> None:
        console.print(line, soft_wrap=True)

    def fact(f: dict) -> str:
        kind = privmod.kind_label(f["kind"])
        if not f["exists"]:
            return _("  {kind} {path}  (deleted)").format(kind=f"{kind:<15}", path=f["path"])
        size = "" if f["size"] is None else "  " + ngettext(
            "{n} byte", "{n} bytes", f["size"]).format(n=number(f["size"]))
        flag = _("  READABLE BY OTHERS") if f["too_open"] else ""
        when = ""
        if f.get("written_at"):
            at = f["written_at"]
            if i18n.current() != "en":
                at = i18n.when(dt.datetime.fromisoformat(at))
            when = (_("  imported {when}") if f["kind"] == "recipient-list" else
                    _("  written {when}")).format(when=at)
        return _("  {kind} {path}  mode {mode}{size}{when}{flag}").format(
            kind=f"{kind:<15}", path=f["path"], mode=f["mode"], size=size, when=when, flag=flag)

    say(_("database {url}").format(url=res["database"]["url"]))
    for f in res["database"]["files"]:
        say(fact(f))
    say(_("tables (rows; rows still holding personal data):"))
    for t in res["tables"]:
        note = f"; {t['note']}" if t["note"] else ""
        say(_("  {table} {rows}, {personal} with personal data{note}  [{holds}]").format(
            table=(f"{t['table']:<17}" if i18n.current() == "en"  # vi: a table name, as code
                   else f"{'`' + t['table'] + '`':<19}"),
            rows=ngettext("{n} row", "{n} rows", t["rows"]).format(n=f"{number(t['rows']):>9}"),
            personal=number(t["with_personal_data"]), note=note, holds=_(t["holds"])))
    say(_("folders:"))
    for f in res["folders"]:
        say(fact(f))
    say(_("outbox files: {n}").format(n=number(len(res["outbox"]))))
    for f in res["outbox"]:
        say(fact(f))
    files = res["files"]
    say(_("files written or read with personal data (from the audit log and imports): "
          "{n}").format(n=number(len(files))))
    for f in files:
        say(fact(f))
    p = res["purge"]
    if p["campaigns"]:
        say(_("purge --older-than {days} would remove: {n} campaign(s) ({ids}): {deliveries} "
              "delivery numbers, {recipients} recipients' numbers and names, {members} list "
              "memberships (numbers become keyed hashes; counts and reports stay)").format(
                  days=days, n=number(len(p["campaigns"])), ids=", ".join(p["campaigns"]),
                  deliveries=number(p["deliveries"]), recipients=number(p["recipients"]),
                  members=number(p["list_memberships"])))
    else:
        say(_("purge --older-than {days} would remove nothing").format(days=days))
    for cid, why in p["not_eligible"].items():
        say(_("  kept {id}: {why}").format(id=cid, why=why))
    say(_("not removed by the purge: opt-outs (suppressions), the audit log, files on disk "
          "(delete them by hand)"))
    for w in res["warnings"]:
        say("[yellow]" + _("warning: {message}").format(message=w) + "[/yellow]")

"""``outreach privacy purge``: personal-data retention (numbers of finished campaigns hashed)."""

from __future__ import annotations

import json

import click

from outreach.cli import Ctx, console, pass_ctx


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
    from outreach import privacy as privmod

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
    verb = "would purge" if dry_run else "purged"
    if not res.campaigns:
        console.print(f"nothing to purge: no campaign finished more than {days} days ago")
    else:
        console.print(f"{verb} {len(res.campaigns)} campaign(s): {', '.join(res.campaigns)}")
        console.print(f"  deliveries: {res.deliveries} numbers replaced by keyed hashes")
        console.print(f"  recipients: {res.recipients} numbers and names replaced; "
                      f"{res.recipients_kept} kept (still in another campaign or list)")
        console.print(f"  list memberships removed: {res.list_memberships}")
        if not dry_run:
            console.print(f"  raw payloads scrubbed: {res.events_scrubbed} events, "
                          f"{res.receipts_scrubbed} pending receipts; key id {res.key_id}")
    for cid, why in res.not_eligible.items():
        console.print(f"  kept {cid}: {why}")
    if dry_run and key is None:
        console.print(f"note: a real purge needs the key in ${key_env}")

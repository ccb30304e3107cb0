"""``outreach report CAMPAIGN_ID``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import click
from rich.table import Table

from outreach import reports, states
from outreach.cli import Ctx, console, pass_ctx


def _parse_when(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    from outreach.clock import VN_TZ

    try:
        d = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date or date-time (YYYY-MM-DD[THH:MM])")
    return d if d.tzinfo else d.replace(tzinfo=VN_TZ)


@click.command()
@click.argument("campaign_id")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--since", help="Only deliveries queued from this date/time (Asia/Ho_Chi_Minh).")
@click.option("--until", help="Only deliveries queued before this date/time.")
@pass_ctx
def report(c: Ctx, campaign_id: str, fmt: str, since: str | None, until: str | None) -> None:
    """Counts by status and by district for a campaign."""
    with c.db.engine.connect() as conn:
        data = reports.campaign_report(conn, campaign_id, since=_parse_when(since),
                                       until=_parse_when(until))
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        click.echo(_csv(data), nl=False)
    else:
        _table(data)


def _csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["district", *states.ALL_STATES, "total"])
    for district, counts in data["by_district"].items():
        w.writerow([district, *(counts.get(s, 0) for s in states.ALL_STATES), sum(counts.values())])
    w.writerow(["TOTAL", *(data["by_status"][s] for s in states.ALL_STATES), data["deliveries"]])
    return buf.getvalue()


def _table(data: dict[str, Any]) -> None:
    console.print(f"[bold]{data['name']}[/bold] ({data['campaign']})")
    console.print(f"source: {data['source']}")
    shown = [s for s in states.ALL_STATES if data["by_status"][s]] or ["queued"]
    t = Table(title="Deliveries by district")
    t.add_column("district")
    for s in shown:
        t.add_column(s, justify="right")
    t.add_column("total", justify="right")
    for district, counts in data["by_district"].items():
        t.add_row(district, *(str(counts.get(s, 0)) for s in shown), str(sum(counts.values())))
    t.add_row("[bold]total[/bold]", *(f"[bold]{data['by_status'][s]}[/bold]" for s in shown),
              f"[bold]{data['deliveries']}[/bold]")
    console.print(t)
    rate = data["delivery_rate"]
    console.print(f"recipients {data['recipients']}, sent {data['sent']}, delivered "
                  f"{data['delivered']}" + (f" ({rate:.1%} of sent)" if rate is not None else "")
                  + f", segments {data['segments']}, cost {data['cost_vnd']:,.0f} VND")

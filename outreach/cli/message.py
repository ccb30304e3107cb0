"""`outreach message` commands: inspect how an SMS text is encoded, split and billed."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from outreach.i18n import _, number
from outreach.input.text import GSM7, MessageAnalysis, analyse, gsm7_septets, utf16_units


@click.group()
def message() -> None:
    """Work with message texts."""


def _read_text(text: str) -> str:
    """Return TEXT, or stdin read as UTF-8 when TEXT is "-" (BOM and one final newline removed)."""
    if text == "-":
        try:
            buffer = getattr(sys.stdin, "buffer", None)
            data = buffer.read().decode("utf-8-sig") if buffer is not None else sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise click.ClickException(_("standard input is not valid UTF-8: {error}").format(
                error=exc)) from exc
        if data.endswith("\r\n"):
            data = data[:-2]
        elif data.endswith("\n"):
            data = data[:-1]
        text = data
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise click.ClickException(_("TEXT is not valid UTF-8"))
    if not text:
        raise click.ClickException(_("the message is empty"))
    return text


def _codepoint(ch: str) -> str:
    return f"{ch} (U+{ord(ch):04X})"


def _table(a: MessageAnalysis) -> Table:
    unit_name = _("septets") if a.encoding == GSM7 else _("UTF-16 units")
    table = Table(title=_("SMS message"), show_header=True, header_style="bold")
    table.add_column("", style="bold")
    table.add_column(_("value"), overflow="fold")
    table.add_row(_("encoding"), a.encoding)
    table.add_row(_("characters"), number(a.characters))
    table.add_row(_("units"), f"{number(a.units)} {unit_name}")
    table.add_row(_("segments"), number(a.segments))
    table.add_row(_("per segment"), f"{number(a.per_segment)} {unit_name}")
    forcing = ", ".join(_codepoint(ch) for ch in a.ucs2_characters) or "-"
    table.add_row(_("characters forcing UCS-2"), Text(forcing))
    for i, part in enumerate(a.parts, start=1):
        size = gsm7_septets(part) if a.encoding == GSM7 else utf16_units(part)
        table.add_row(_("part {i} ({size})").format(i=i, size=size), Text(part))
    return table


@message.command("inspect")
@click.argument("text")
@click.option("--unaccented", is_flag=True, help="Remove Vietnamese diacritics (đ→d) first.")
@click.option(
    "--gsm-safe",
    "gsm_safe",
    is_flag=True,
    help="Replace typographic quotes, dashes and spaces by GSM-7 ones (keeps diacritics).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
def inspect(text: str, unaccented: bool, gsm_safe: bool, fmt: str) -> None:
    """Show encoding, length, segments and parts of TEXT ("-" reads standard input).

    The text is counted in NFC, as it is sent.
    """
    a = analyse(_read_text(text), unaccented=unaccented, gsm_safe=gsm_safe)
    if fmt == "json":
        click.echo(json.dumps(a.to_dict(), ensure_ascii=False, indent=2))
    else:
        Console().print(_table(a))

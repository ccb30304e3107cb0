"""Optional dependencies as pip extras, and the message an operator sees when one is missing.

The default install (``pip install outreach``) sends through the outbox, Zalo and the eSMS
aggregator on SQLite, and writes the official report as DOCX and HTML. Four parts need more,
each an extra of ``pyproject.toml``:

- ``postgres``: psycopg 3 (``postgresql+psycopg://`` database URLs, workers);
- ``twilio``: the Twilio SDK (the ``twilio`` gateway and its status callbacks);
- ``smpp``: smpplib (the ``smpp`` gateway and ``outreach smpp listen``);
- ``pdf``: WeasyPrint (PDF of the official report and the carrier letters; LibreOffice, where
  installed, also makes the report's PDF).

``pip install -e '.[test]'`` (the README's command) brings all four.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Top-level module -> (extra, what needs it).
MODULES: dict[str, tuple[str, str]] = {
    "psycopg": ("postgres", "a PostgreSQL database URL (postgresql+psycopg://…)"),
    "psycopg_binary": ("postgres", "a PostgreSQL database URL (postgresql+psycopg://…)"),
    "twilio": ("twilio", "the twilio gateway and Twilio's delivery receipts"),
    "smpplib": ("smpp", "the smpp gateway and `outreach smpp listen`"),
    "weasyprint": ("pdf", "PDF output"),
}


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra to install:
    ``… needs the 'twilio' extra, which is not installed: pip install 'outreach[twilio]'``."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.extra = extra
        super().__init__(f"{purpose} needs the '{extra}' extra, which is not installed here "
                         f"(no module {module!r}): pip install 'outreach[{extra}]' "
                         f"(in a checkout: pip install -e '.[{extra}]')", name=module)


def for_module(name: str | None, purpose: str | None = None) -> MissingExtra | None:
    """The :class:`MissingExtra` for a module that failed to import (``exc.name`` of a
    ModuleNotFoundError, dotted or not), or None when no extra provides it. ``purpose`` (what
    needs it, e.g. "the twilio gateway") replaces the table's wording."""
    if not name:
        return None
    top = name.split(".", 1)[0]
    if top not in MODULES:
        return None
    extra, default = MODULES[top]
    return MissingExtra(top, extra, purpose or default)


def require(module: str) -> ModuleType:
    """Import ``module`` (``twilio.rest``…) or raise :class:`MissingExtra` when the extra that
    provides it is not installed (ModuleNotFoundError for a module no extra provides)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = for_module(exc.name or module)
        if missing is None:
            raise
        raise missing from None

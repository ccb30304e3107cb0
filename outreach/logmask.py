"""A logging filter that masks phone numbers in every log line unless the operator asks."""

from __future__ import annotations

import logging
import os
import re

_PHONE = re.compile(r"(?<!\d)(\+?84|0)(\d{2})\d{4,5}(\d{3})(?!\d)")


def mask_text(text: str) -> str:
    """Replace anything that looks like a Vietnamese number with ``091****678``-style masks."""
    return _PHONE.sub(lambda m: ("0" if m.group(1) != "0" else "0") + m.group(2) + "****" + m.group(3),
                      text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if os.environ.get("OUTREACH_LOG_SHOW_NUMBERS"):
            return True
        try:
            msg = record.getMessage()
        except Exception:
            return True
        masked = mask_text(msg)
        if masked != msg:
            record.msg, record.args = masked, None
        return True


def install() -> None:
    """Attach the filter to every root handler (idempotent)."""
    root = logging.getLogger()
    for h in root.handlers:
        if not any(isinstance(f, MaskingFilter) for f in h.filters):
            h.addFilter(MaskingFilter())

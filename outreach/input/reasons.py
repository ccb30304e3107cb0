"""What the console shows for a reject reason code.

Reason codes (``invalid-number``, ``too-short``, ``duplicate``, …: :data:`outreach.input.phones.REASONS`
plus ``duplicate``) are stored in the database and written as they are to JSON and CSV exports;
a person reading the console sees :func:`label` of the code instead, in the interface language.
"""

from __future__ import annotations

from typing import Final

from outreach.i18n import N_, _, current

#: code → English label (a msgid, translated by :func:`label` when it is shown).
LABELS: Final[dict[str, str]] = {
    "empty": N_("blank cell or placeholder"),
    "scientific-notation": N_("spreadsheet scientific notation: digits lost"),
    "not-a-number": N_("text, not a phone number"),
    "too-short": N_("too few digits"),
    "too-long": N_("too many digits"),
    "old-prefix": N_("pre-2018 11-digit mobile number"),
    "landline": N_("fixed-line number: cannot receive SMS"),
    "premium-rate": N_("premium-rate (1900) number"),
    "toll-free": N_("toll-free (1800) number"),
    "voip": N_("VoIP number"),
    "not-mobile": N_("not a mobile number"),
    "foreign": N_("number of another country"),
    "invalid": N_("not a valid Vietnamese number"),
    "invalid-number": N_("not a valid Vietnamese number"),
    "duplicate": N_("duplicate (already in this import)"),
}


def label(code: str | None) -> str:
    """What the console shows for a reason code: its label in the current interface language
    (``_()`` at call time, e.g. ``too-short`` → ``thiếu chữ số``). The English interface shows
    the code itself, as it always has (the codes are English and documented in
    :mod:`outreach.input.phones`); a code without a label is returned unchanged, ``""`` for
    None."""
    if not code:
        return ""
    found = LABELS.get(code)
    if found is None or current() == "en":
        return code
    return _(found)

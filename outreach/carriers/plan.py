"""The campaign file's ``[carriers]`` section: which operators are asked, the area, dates, hours, text and letter."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from outreach.input import text as textmod
from outreach.i18n import _, day

#: Carriers' usual limit for a broadcast: one unaccented GSM-7 SMS (Quảng Nam 2534/QĐ-UBND
#: 2019, form 01: "không dấu, tối đa 160 ký tự"; domain-facts "How bulk SMS really reaches
#: Vietnamese phones").
CARRIER_LIMIT_CHARS = 160

_KEYS = {"operators", "area", "start_date", "end_date", "daily_start", "daily_end", "reply_by",
         "results_by", "report_deadline", "warn_days", "letter", "contact", "short_text",
         "contacts"}
_LETTER_KEYS = {"number", "date", "superior", "org", "place", "subject", "signer_authority",
                "signer_title", "signer_name", "cc"}
_CONTACT_KEYS = {"name", "unit", "phone", "email"}
_SHORT_KEYS = {"text", "sha256", "approved_by", "approved_on", "approval_ref"}
_CARRIER_CONTACT_KEYS = {"unit", "email", "phone", "address", "person", "verified"}


@dataclass(frozen=True)
class ShortText:
    """A shorter text for carriers that broadcast one SMS only: NFC, unaccented GSM-7 of at
    most 160 characters, with its own SHA-256 and who approved it, when, and by which
    document (it is not the prescribed text, so it needs its own approval)."""

    text: str
    sha256: str
    approved_by: str
    approved_on: dt.date
    approval_ref: str = ""


@dataclass(frozen=True)
class Letter:
    """The request letter's fixed parts (Decree 30/2020/NĐ-CP layout): number, date, issuing
    body and its superior, place, subject line (trích yếu), signer, recipients for copies."""

    number: str = "      /STTTT-TTBCXB"
    date: dt.date | None = None
    superior: str = ""
    org: str = "SỞ THÔNG TIN VÀ TRUYỀN THÔNG"
    place: str = ""
    subject: str = ""
    signer_authority: str = "KT. GIÁM ĐỐC"
    signer_title: str = "PHÓ GIÁM ĐỐC"
    signer_name: str = ""
    cc: tuple[str, ...] = ("Như trên;", "Lưu: VT.")


@dataclass(frozen=True)
class DepartmentContact:
    """The Department's person the operators answer to."""

    name: str = ""
    unit: str = ""
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class CarrierPlan:
    """What the Department asks the operators: ``operators`` (carrier keys), ``area`` (official
    administrative codes), broadcast ``start_date``–``end_date`` and daily hours (Asia/Ho_Chi_Minh),
    the carriers' confirmation (``reply_by``) and results (``results_by``) deadlines, before the
    city's ``report_deadline``; ``warn_days``: how many days before the report deadline
    ``carriers status`` flags missing results."""

    operators: tuple[str, ...]
    area: tuple[str, ...]
    start_date: dt.date
    end_date: dt.date
    daily_start: dt.time
    daily_end: dt.time
    reply_by: dt.date
    results_by: dt.date
    report_deadline: dt.date
    warn_days: int = 5
    letter: Letter = field(default_factory=Letter)
    contact: DepartmentContact = field(default_factory=DepartmentContact)
    short_text: ShortText | None = None
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse(r: Any, raw: dict[str, Any], window: Any) -> CarrierPlan:
    """Validate ``[carriers]`` with the campaign reader ``r`` (its errors name file and field).

    Rules: every operator known (outreach/carriers/data/carriers.json, aliases accepted, each
    once); every area code an administrative unit in force on ``start_date``; the broadcast
    dates inside the campaign's ``[window]``; hours inside the daily send window;
    ``reply_by`` ≤ ``start_date``, ``end_date`` ≤ ``results_by`` < ``report_deadline``; a
    ``short_text`` must be unaccented GSM-7 of at most 160 characters, match its ``sha256`` and
    name its approval."""
    from outreach.carriers import areas, registry

    p = "carriers"
    for key in raw:
        if key not in _KEYS:
            r.fail(f"{p}.{key}", _("unknown field (known: {known})").format(known=", ".join(sorted(_KEYS))))
    ops = raw.get("operators")
    if not isinstance(ops, list) or not ops or not all(isinstance(x, str) for x in ops):
        r.fail(f"{p}.operators", _("must list the operators asked, e.g. [\"Viettel\", \"VinaPhone\"]"))
    keys: list[str] = []
    for name in ops:
        c = registry.find_carrier(name)
        if c is None:
            r.fail(f"{p}.operators", _("unknown operator {name} (known: {known})").format(
                name=repr(name), known=", ".join(registry.known_names())))
        if c.key in keys:
            r.fail(f"{p}.operators", _("{name} is listed twice").format(name=repr(name)))
        keys.append(c.key)
    start = r.date("start_date", raw, p)
    end = r.date("end_date", raw, p)
    if end < start:
        r.fail(f"{p}.end_date", _("is before carriers.start_date"))
    if not (window.start_date <= start and end <= window.end_date):
        r.fail(f"{p}.start_date", _("the broadcast ({start}–{end}) must lie inside the campaign's "
               "[window] ({window_start}–{window_end})").format(
                   start=day(start), end=day(end), window_start=day(window.start_date),
                   window_end=day(window.end_date)))
    area = raw.get("area")
    if not isinstance(area, list) or not area or not all(isinstance(x, str) for x in area):
        r.fail(f"{p}.area", _("must list official administrative codes as text, e.g. [\"92\"] "
               "(a province), [\"916\", \"917\"] (districts) or communes (5 digits)"))
    for code in area:
        try:
            areas.lookup(code, start)
        except areas.AreaError as exc:
            r.fail(f"{p}.area", str(exc))
    if len(set(area)) != len(area):
        r.fail(f"{p}.area", _("a code is listed twice"))
    daily_start = r.time("daily_start", raw, p, default=window.daily_start)
    daily_end = r.time("daily_end", raw, p, default=window.daily_end)
    if not (window.daily_start <= daily_start < daily_end <= window.daily_end):
        r.fail(f"{p}.daily_end", _("the broadcast hours {start}–{end} must lie inside the daily send "
               "window {opens}–{closes}").format(
                   start=f"{daily_start:%H:%M}", end=f"{daily_end:%H:%M}",
                   opens=f"{window.daily_start:%H:%M}", closes=f"{window.daily_end:%H:%M}"))
    reply_by = r.date("reply_by", raw, p)
    results_by = r.date("results_by", raw, p)
    deadline = r.date("report_deadline", raw, p)
    if reply_by > start:
        r.fail(f"{p}.reply_by", _("the operators must confirm before the broadcast starts"))
    if results_by < end:
        r.fail(f"{p}.results_by", _("is before the broadcast ends"))
    if results_by >= deadline:
        r.fail(f"{p}.results_by", _("must be before carriers.report_deadline (the city's report "
               "needs the figures)"))
    warn = r.int("warn_days", raw, p, default=5, minimum=0)

    letter_raw = _subtable(r, raw, "letter", _LETTER_KEYS)
    cc = letter_raw.get("cc", list(Letter.cc))
    if not isinstance(cc, list) or not all(isinstance(x, str) for x in cc):
        r.fail(f"{p}.letter.cc", _("must be a list of text lines (Nơi nhận)"))
    ld = letter_raw.get("date")
    letter = Letter(
        number=textmod.nfc(r.str("number", letter_raw, f"{p}.letter", default=Letter.number)),
        date=r.date("date", letter_raw, f"{p}.letter") if ld is not None else None,
        **{k: textmod.nfc(r.str(k, letter_raw, f"{p}.letter", default=getattr(Letter, k))
                          ).strip()
           for k in ("superior", "org", "place", "subject", "signer_authority", "signer_title",
                     "signer_name")},
        cc=tuple(textmod.nfc(x) for x in cc))
    contact_raw = _subtable(r, raw, "contact", _CONTACT_KEYS)
    contact = DepartmentContact(**{k: textmod.nfc(r.str(k, contact_raw, f"{p}.contact",
                                                        default="")).strip()
                                   for k in _CONTACT_KEYS})
    short = None
    short_raw = raw.get("short_text")
    if short_raw is not None:
        short = _short_text(r, _subtable(r, raw, "short_text", _SHORT_KEYS))
    contacts_raw = raw.get("contacts", {})
    if not isinstance(contacts_raw, dict):
        r.fail(f"{p}.contacts", _("must be a table of [carriers.contacts.NAME] tables"))
    contacts: dict[str, dict[str, Any]] = {}
    for name, table in contacts_raw.items():
        where = f"{p}.contacts.{name}"
        c = registry.find_carrier(name)
        if c is None:
            r.fail(where, _("unknown operator (known: {known})").format(
                known=", ".join(registry.known_names())))
        if not isinstance(table, dict):
            r.fail(where, _("must be a table"))
        for k, v in table.items():
            if k not in _CARRIER_CONTACT_KEYS:
                r.fail(f"{where}.{k}", _("unknown field (known: {known})").format(
                    known=", ".join(sorted(_CARRIER_CONTACT_KEYS))))
            if k == "verified":
                if not isinstance(v, bool):
                    r.fail(f"{where}.{k}", _("must be true or false"))
            elif not isinstance(v, str):
                r.fail(f"{where}.{k}", _("must be text"))
        contacts[c.key] = {k: textmod.nfc(v) if isinstance(v, str) else v for k, v in table.items()}
    return CarrierPlan(operators=tuple(keys), area=tuple(area), start_date=start, end_date=end,
                       daily_start=daily_start, daily_end=daily_end, reply_by=reply_by,
                       results_by=results_by, report_deadline=deadline, warn_days=warn,
                       letter=letter, contact=contact, short_text=short, contacts=contacts)


def _subtable(r: Any, raw: dict[str, Any], key: str, keys: set[str]) -> dict[str, Any]:
    table = raw.get(key, {})
    if not isinstance(table, dict):
        r.fail(f"carriers.{key}", _("must be a table"))
    for k in table:
        if k not in keys:
            r.fail(f"carriers.{key}.{k}", _("unknown field (known: {known})").format(known=", ".join(sorted(keys))))
    return table


def _short_text(r: Any, raw: dict[str, Any]) -> ShortText:
    p = "carriers.short_text"
    text = textmod.nfc(r.str("text", raw, p))
    if text != text.strip():
        r.fail(f"{p}.text", _("has leading or trailing whitespace"))
    a = textmod.analyse(text)
    if a.encoding != textmod.GSM7 or textmod.unaccent(text) != text:
        r.fail(f"{p}.text", _("must be written without diacritics (carriers broadcast unaccented "
               "GSM-7 text)"))
    if a.characters > CARRIER_LIMIT_CHARS or a.segments > 1:
        r.fail(f"{p}.text", _("is {characters} characters ({units} septets): at most "
               "{limit} for one SMS").format(characters=a.characters, units=a.units,
                                             limit=CARRIER_LIMIT_CHARS))
    actual = textmod.text_sha256(text)
    recorded = r.str("sha256", raw, p, default="")
    if not recorded:
        r.fail(f"{p}.sha256", _("missing: record the hash of the approved short text ({hash})").format(
            hash=actual))
    if recorded.lower() != actual:
        r.fail(f"{p}.sha256", _("does not match the short text (recorded {recorded}…, text "
               "hashes to {actual}…): the text was edited after approval").format(
                   recorded=recorded[:12], actual=actual[:12]))
    return ShortText(text=text, sha256=actual,
                     approved_by=textmod.nfc(r.str("approved_by", raw, p)),
                     approved_on=r.date("approved_on", raw, p),
                     approval_ref=textmod.nfc(r.str("approval_ref", raw, p, default="")).strip())

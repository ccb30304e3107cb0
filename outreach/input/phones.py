"""Vietnamese phone numbers from recipient lists to E.164 mobile numbers, or a reason they cannot be.

Reason codes (``PhoneResult.reason``; stable strings, safe to store, count and show):

=====================  ================================================================
code                   meaning
=====================  ================================================================
empty                  blank cell, or a placeholder such as "-", "nan", "#N/A"
scientific-notation    ``9.12345E+08``: a spreadsheet rounded the number, digits are lost
not-a-number           letters or other text where a number should be
too-short              fewer digits than any Vietnamese number of that kind
too-long               more digits than any Vietnamese number of that kind
old-prefix             pre-2018 11-digit mobile number (``01688123456``); ``hint`` holds
                       the new E.164 number from the 2018 conversion table
landline               valid fixed-line number (``0292 3820 123``): cannot receive SMS
premium-rate           1900 number
toll-free              1800 number
voip                   VoIP/VSAT number (672…)
not-mobile             any other valid non-mobile type (UAN, shared cost, pager…)
foreign                valid number of another country (``hint`` names it)
invalid                none of the above: no Vietnamese number has this shape
=====================  ================================================================
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Final, NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, carrier as pn_carrier

from outreach.i18n import _

__all__ = ["REASONS", "PhoneResult", "mask", "normalise", "split_cell"]

REASONS: Final[dict[str, str]] = {
    "empty": "blank cell or placeholder",
    "scientific-notation": "spreadsheet scientific notation: digits lost",
    "not-a-number": "text, not a phone number",
    "too-short": "too few digits",
    "too-long": "too many digits",
    "old-prefix": "pre-2018 11-digit mobile number",
    "landline": "fixed-line number: cannot receive SMS",
    "premium-rate": "premium-rate (1900) number",
    "toll-free": "toll-free (1800) number",
    "voip": "VoIP number",
    "not-mobile": "not a mobile number",
    "foreign": "number of another country",
    "invalid": "not a valid Vietnamese number",
}

_CC: Final = 84
_REGION: Final = "VN"
_META = phonenumbers.PhoneMetadata.metadata_for_region(_REGION)
_GENERAL = _META.general_desc if _META is not None else None
if _GENERAL is None or not _GENERAL.national_number_pattern or not _GENERAL.possible_length:
    raise RuntimeError("phonenumbers has no metadata for VN")
# Used only to mirror phonenumbers' own "does this start with the country code?" decision
# (_maybe_extract_country_code) on the fast path; the pattern comes from its metadata.
_GENERAL_DESC: Final = re.compile(_GENERAL.national_number_pattern)
_POSSIBLE_LENGTHS: Final = tuple(sorted(_GENERAL.possible_length))  # (7, 8, 9, 10)

_TYPE_REASONS: Final[dict[int, str]] = {
    PhoneNumberType.FIXED_LINE: "landline",
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.VOIP: "voip",
}

# phonenumbers' English carrier names → the names used in this project.
_CARRIER_NAMES: Final[dict[str, str]] = {
    "Viettel": "Viettel",
    "MobiFone": "MobiFone",
    "Vinaphone": "VinaPhone",
    "VinaPhone": "VinaPhone",
    "Vietnamobile": "Vietnamobile",
    "G-Mobile": "Gmobile",
    "Gmobile": "Gmobile",
    "Indochina Telecom": "iTel",  # Indochina Telecom (Itelecom) markets its service as iTel
    "iTel": "iTel",
    "Wintel": "Wintel",
    "Reddi": "Reddi",
}
# Our prefix knowledge where phonenumbers' carrier data is behind, keyed by national number
# prefix (no leading 0). 087 was assigned to the MVNO Itelecom (iTel), which rides on
# VinaPhone's network, so phonenumbers 9.0.43 reports it as "Vinaphone".
_CARRIER_OVERRIDES: Final[dict[str, str]] = {"87": "iTel"}


class _OldPrefix(NamedTuple):
    new: str  # new national prefix without the leading 0, e.g. "38"
    carrier: str


def _load_old_prefixes() -> dict[str, _OldPrefix]:
    data = json.loads(resources.files("outreach").joinpath("data/old_prefixes.json").read_text("utf-8"))
    return {old[1:]: _OldPrefix(v["new"][1:], v["carrier"]) for old, v in data["prefixes"].items()}


# "168" → ("38", "Viettel"): national prefixes without the trunk 0. See data/old_prefixes.json.
_OLD_PREFIXES: Final = _load_old_prefixes()
_OLD_NATIONAL_LENGTH: Final = 10  # 0 + 3-digit old network code + 7 subscriber digits


@dataclass(frozen=True, slots=True)
class PhoneResult:
    """Outcome of :func:`normalise` for one raw value.

    ``e164`` is set (``"+84912345678"``) exactly when the number can receive SMS; otherwise
    ``reason`` is one of the codes in :data:`REASONS`. ``carrier`` is the original network
    from the numbering plan (portability is not visible here). ``hint`` is for the operator:
    the new E.164 number for an old prefix (the only hint starting with "+"), the conversion
    made under ``convert_old_prefixes``, the country of a foreign number.
    """

    raw: str
    e164: str | None
    carrier: str | None = None
    reason: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.e164 is not None


class _Class(NamedTuple):
    reason: str | None  # None: a mobile number
    carrier: str | None


# --- cleaning -------------------------------------------------------------------------------

_TRANSLATION: Final = str.maketrans(
    {
        **{chr(0xFF10 + i): str(i) for i in range(10)},  # full-width digits
        "\uff0b": "+", "\uff08": "(", "\uff09": ")", "\uff0e": ".", "\uff0d": "-",
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                        "\u2008\u2009\u200a\u202f\u205f\u3000\t\r\n", " "),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad"),  # invisible: dropped
    }
)
_QUOTES: Final = "'\u2018\u2019`"
# What people and tools put in a cell that has no number: pandas' nan, Excel's #N/A, a dash.
_BLANK_MARKERS: Final = frozenset({"-", "--", "—", ".", "nan", "none", "null", "n/a", "#n/a"})
_EXCEL_TEXT_FORMULA: Final = re.compile(r'=\s*"(.*)"')  # ="0912345678", a CSV trick to keep the 0
_SCIENTIFIC: Final = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")
# A numeric cell written with a decimal part: "912345004.0". Eight or more digits before the
# point and one or two zeros after keep dotted groupings such as "091.234.5670" out.
_NUMERIC_CELL: Final = re.compile(r"(\d{8,13})[.,]0{1,2}")
# The shapes the fast path understands: digits and . - ( ) space, '+' only at the start.
_FAST_SHAPE: Final = re.compile(r"(?:\(?\+)?[0-9 .\-()]+")
_DROP_SEPARATORS: Final = str.maketrans("", "", " .-()+")


def _clean(raw: str) -> str:
    """Undo the damage phonenumbers does not know about: look-alike characters, Excel's text
    markers, the ".0" of numeric cells."""
    text = raw.strip() if raw.isascii() else raw.translate(_TRANSLATION).strip()
    if not text:
        return text
    if text[0] in _QUOTES:
        text = text[1:].strip()
    elif text[0] == "=" and (m := _EXCEL_TEXT_FORMULA.fullmatch(text)):
        text = m.group(1).strip()
    if ("." in text or "," in text) and (m := _NUMERIC_CELL.fullmatch(text)):
        text = m.group(1)
    return text


def _fast_national(text: str) -> str | None:
    """National significant number for the common shapes, exactly as phonenumbers.parse(text, "VN")
    would find it; None to let phonenumbers decide (another country, odd zeros, odd lengths)."""
    if text.isascii() and text.isdigit():
        digits = text
    elif _FAST_SHAPE.fullmatch(text) is not None:
        digits = text.translate(_DROP_SEPARATORS)
    else:
        return None
    if "+" in text:
        if not digits.startswith("84"):
            return None
        national = digits[2:]
        if national[:1] == "0":
            national = national[1:]
    elif digits.startswith("00"):  # VN international prefix
        if digits[2:4] != "84":
            return None
        national = digits[4:]
        if national[:1] == "0":
            national = national[1:]
    elif digits[:1] == "0":
        national = digits[1:]
    elif digits.startswith("84"):
        # Same rule as phonenumbers: drop the country code when the whole number is too long
        # for a VN number, or when it is not a VN number shape and the rest is.
        national = digits[2:]
        if national[:1] == "0":
            national = national[1:]
        if not (len(digits) > _POSSIBLE_LENGTHS[-1]
                or (_GENERAL_DESC.fullmatch(digits) is None
                    and _GENERAL_DESC.fullmatch(national) is not None)):
            national = digits
    else:
        national = digits
    if national[:1] == "0" or not 7 <= len(national) <= 12:
        return None
    return national


# --- classification -------------------------------------------------------------------------


def _number(national: str) -> phonenumbers.PhoneNumber:
    return phonenumbers.PhoneNumber(country_code=_CC, national_number=int(national))


def _classify(national: str) -> _Class:
    """Classify a VN national significant number with phonenumbers (no cache)."""
    num = _number(national)
    ntype = phonenumbers.number_type(num)
    if ntype == PhoneNumberType.MOBILE:
        name = pn_carrier.name_for_number(num, "en")
        carrier = _CARRIER_OVERRIDES.get(national[:2]) or _CARRIER_NAMES.get(name)
        return _Class(None, carrier)
    if ntype != PhoneNumberType.UNKNOWN:
        return _Class(_TYPE_REASONS.get(ntype, "not-mobile"), None)
    old = _OLD_PREFIXES.get(national[:3]) if len(national) == _OLD_NATIONAL_LENGTH else None
    if old is not None:
        return _Class("old-prefix", old.carrier)
    return _Class(_invalid_reason(national), None)


def _invalid_reason(national: str) -> str:
    # A number is "too short" when padding it would make a valid VN number, "too long" when
    # cutting it would: the lengths come from phonenumbers' metadata, not from us.
    lengths, size = _POSSIBLE_LENGTHS, len(national)
    if any(phonenumbers.is_valid_number(_number(national.ljust(n, "0"))) for n in lengths if n > size):
        return "too-short"
    if any(phonenumbers.is_valid_number(_number(national[:n])) for n in lengths if n < size):
        return "too-long"
    if size < lengths[0]:
        return "too-short"
    if size > lengths[-1]:
        return "too-long"
    return "invalid"


# Why a cache keyed by (first 4 digits, length) is exact for VN (phonenumbers 9.0.43 metadata,
# phonenumbers.PhoneMetadata.metadata_for_region("VN")): every number-type pattern is a literal
# prefix of at most 4 digits followed by "\d{n}" — mobile is
#   121[0-3]\d{5} | (?:1[46]0|(?:3\d|7[06-9])\d|5(?:[1689]\d|2[238]|59)|8(?:[1-8]\d|9[6-9])|9(?:[0-8]\d|9[013-9]))\d{6}
# (9 digits), fixed line 2(?:…)\d{7}, toll free 1800\d{4,6}|12(?:0[13]|28)\d{4}, premium
# 1900\d{4,6}, VoIP 672\d{6}, UAN [17]99\d{4}|69\d{5,6}. So number type and validity depend
# only on the first 4 digits and the length; the carrier table's longest VN prefix is 3
# national digits (84121, 84993…); the old-prefix table is keyed by 3 digits at length 10.
# tests/test_phones.py checks the patterns for this and compares the cached path with plain
# phonenumbers on random input, so a metadata update that breaks the assumption fails a test.
_CLASS_CACHE: dict[tuple[str, int], _Class] = {}


def _classify_cached(national: str) -> _Class:
    try:
        return _CLASS_CACHE[national[:4], len(national)]
    except KeyError:
        found = _CLASS_CACHE[national[:4], len(national)] = _classify(national)
        return found


def _result(raw: str, national: str, convert: bool, cached: bool) -> PhoneResult:
    if national[:1] == "0":  # only reachable through phonenumbers' "Italian leading zero"
        return PhoneResult(raw, None, reason="invalid")
    classify = _classify_cached if cached else _classify
    cls = classify(national)
    if cls.reason is None:
        return PhoneResult(raw, f"+84{national}", cls.carrier)
    if cls.reason == "old-prefix":
        new_national = _OLD_PREFIXES[national[:3]].new + national[3:]
        new = classify(new_national)
        if new.reason is None:
            if convert:
                return PhoneResult(raw, f"+84{new_national}", new.carrier,
                                   hint=_("converted from old number 0{national}").format(
                                       national=national))
            return PhoneResult(raw, None, cls.carrier, "old-prefix", f"+84{new_national}")
        return PhoneResult(raw, None, None, "invalid")
    return PhoneResult(raw, None, None, cls.reason)


_PARSE_ERRORS: Final[dict[int, str]] = {
    NumberParseException.NOT_A_NUMBER: "not-a-number",
    NumberParseException.TOO_SHORT_NSN: "too-short",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too-short",
    NumberParseException.TOO_LONG: "too-long",
    NumberParseException.INVALID_COUNTRY_CODE: "invalid",
}


def _normalise(raw: str, convert: bool, fast: bool) -> PhoneResult:
    text = _clean(raw)
    if not text or (len(text) <= 4 and text.lower() in _BLANK_MARKERS):
        return PhoneResult(raw, None, reason="empty")
    if ("E" in text or "e" in text) and _SCIENTIFIC.fullmatch(text):
        return PhoneResult(raw, None, reason="scientific-notation")
    if fast and (national := _fast_national(text)) is not None:
        return _result(raw, national, convert, cached=True)
    if any(ch.isalpha() for ch in text):
        return PhoneResult(raw, None, reason="not-a-number")
    try:
        num = phonenumbers.parse(text, _REGION)
    except NumberParseException as exc:
        return PhoneResult(raw, None, reason=_PARSE_ERRORS.get(exc.error_type, "invalid"))
    if num.country_code != _CC:
        if phonenumbers.is_valid_number(num):
            region = phonenumbers.region_code_for_number(num)
            return PhoneResult(raw, None, reason="foreign", hint=_(
                "country code {code} ({region})").format(code=num.country_code, region=region))
        return PhoneResult(raw, None, reason="invalid")
    return _result(raw, phonenumbers.national_significant_number(num), convert, cached=fast)


def normalise(raw: str, *, convert_old_prefixes: bool = False) -> PhoneResult:
    """Turn one recipient-list value into an E.164 Vietnamese mobile number or a reason code.

    Repairs spreadsheet damage: lost leading 0 or '+', trailing ``.0`` of numeric cells,
    spaces/dots/dashes/brackets, ``+84 (0) …``, ``0084…``, full-width digits, non-breaking
    spaces, Excel's leading apostrophe and ``="…"``. Whether a leading 84 is the country code
    is decided the way phonenumbers decides it (by length and validity), so 0844000123,
    844000123 and 84844000123 all give +84844000123. Only ``PhoneNumberType.MOBILE`` is
    accepted; everything else gets a code from :data:`REASONS`.

    Old 11-digit numbers (01688123456) are rejected as ``old-prefix`` with the new E.164 in
    ``hint``; with ``convert_old_prefixes=True`` they are converted instead (``hint`` notes
    it). Conversion table: Ministry of Information and Communications, Decision
    798/QĐ-BTTTT of 25 May 2018 (11→10 digit conversion, 15 Sep 2018 to 30 Jun 2019).
    """
    return _normalise(raw, convert_old_prefixes, fast=True)


# --- cells holding several numbers ----------------------------------------------------------

_HARD_SEPARATORS: Final = re.compile(r"[/;,|\n\r\uff0f\uff1b\uff0c\uff5c]+")
_ANY_SEPARATOR: Final = re.compile(r"[/;,|\s\uff0f\uff1b\uff0c\uff5c]")
_WHITESPACE: Final = re.compile(r"\s+")
_NON_DIGITS: Final = re.compile(r"\D+")
# Two complete numbers need at least twice the shortest possible length (2 x 7 digits), so a
# piece with fewer digits is one number however it is spaced, and costs no normalise() call.
_MIN_DIGITS_FOR_TWO: Final = 2 * _POSSIBLE_LENGTHS[0]
_NOT_A_FULL_NUMBER: Final = frozenset({"empty", "not-a-number", "scientific-notation",
                                       "too-short", "too-long", "invalid"})


def _plausible(text: str) -> bool:
    return normalise(text).reason not in _NOT_A_FULL_NUMBER


def _split_on_whitespace(part: str) -> list[str]:
    tokens = _WHITESPACE.split(_DIGIT_DASH.sub(" ", part) if "-" in part else part)
    if (len(tokens) == 1 or len(_NON_DIGITS.sub("", part)) < _MIN_DIGITS_FOR_TWO
            or _plausible(part)):
        return [part]
    # Fewest groups of consecutive tokens such that every group is a complete number of its
    # own; "+84 91 234 5678" never gets here (it is plausible whole), "0912345678 0987654321"
    # splits, "0912345678 - 0987654321" splits with the dash kept on one side.
    n = len(tokens)
    best: list[list[str] | None] = [None] * (n + 1)
    best[0] = []
    for end in range(1, n + 1):
        for start in range(end):
            prefix = best[start]
            if prefix is None:
                continue
            group = " ".join(tokens[start:end]).strip(" -.")
            current = best[end]
            if (current is None or len(prefix) + 1 < len(current)) and _plausible(group):
                best[end] = [*prefix, group]
    found = best[n]
    return [g for g in found if g] if found else [part]


# A cell written by a person: a label or note in it ("ĐT:", "SĐT", "DĐ", "Tel", "(Zalo)",
# "(chồng)"), i.e. two letters in a row; one letter alone is "9.1E+08" or "#N/A".
_WORDS: Final = re.compile(r"[^\W\d_]{2}")
_WORD_SEPARATORS: Final = re.compile(r"\b(?:hoặc|hoac|or|và|va)\b", re.IGNORECASE)
_DIGIT_DASH: Final = re.compile(r"(?<=\d)-(?=\d)")
# A number a spreadsheet showed with thousands separators (en-US "912,345,670.00", vi-VN
# "912.345.678,00"): digit groups of three joined by one separator, then at most a decimal part
# of zeros after the other separator. One number, never three.
_GROUPED_NUMBER: Final = re.compile(r"(\+?\d{1,4})((?:([.,])\d{3})(?:\3\d{3})+)(?:(?!\3)[.,]0{1,2})?")


def _matched_numbers(text: str) -> list[str]:
    """Every phone-number-like part of a cell with words in it, found by phonenumbers'
    ``PhoneNumberMatcher`` (leniency POSSIBLE: landlines and short numbers are found too, so
    that each gets its own reason)."""
    return [m.raw_string.strip() for m in phonenumbers.PhoneNumberMatcher(
        text, _REGION, leniency=phonenumbers.Leniency.POSSIBLE)]


def split_cell(raw: str) -> list[str]:
    """Split a cell that may hold several numbers into one string per number.

    Splits on ``/ ; , |``, newlines and the words "hoặc"/"và"/"or"; splits on spaces or on a
    dash between digits only where every piece is a complete number by itself, so
    ``"+84 91 234 5678"`` and ``"091-234-5678"`` stay whole while ``"0912345678 0987654321"``
    and ``"0912345678-0987654321"`` give two. A cell with words in it (``"ĐT: 0912 345 678
    (Zalo)"``, ``"0912345678 (chồng) / 0987654321 (vợ)"``) gives the numbers phonenumbers'
    ``PhoneNumberMatcher`` finds in it, or the cell itself when it finds none (``"không có"``
    is then rejected as text). Full-width digits, non-breaking and zero-width spaces are
    undone first. Pieces are stripped; empty ones are dropped.
    """
    text = raw.strip()
    words = _WORDS.search(text) is not None
    if not words and _ANY_SEPARATOR.search(text) is None and "-" not in text:
        return [text] if text else []  # the usual cell: one number, nothing to split
    if "," in text and _NUMERIC_CELL.fullmatch(text):  # "912345004,0": a decimal comma
        return [text]
    grouped = _GROUPED_NUMBER.fullmatch(text.translate(_TRANSLATION).strip())
    if grouped:  # "912,345,670.00", "0912.345.678,00": one number shown with a number format
        return [grouped.group(1) + grouped.group(2).replace(grouped.group(3), "")]
    if words:
        found = _matched_numbers(text.translate(_TRANSLATION))
        if found:
            return found
        return [text]
    pieces: list[str] = []
    for part in _HARD_SEPARATORS.split(_WORD_SEPARATORS.sub("/", raw)):
        part = part.translate(_TRANSLATION).strip()
        if part:
            pieces.extend(_split_on_whitespace(part))
    return pieces


def mask(e164: str) -> str:
    """``+84912345678`` → ``091****678``: the national form with all but the first 3 and last 3
    digits hidden, for logs and reports. Keyed-hash values (``h:…``) are returned unchanged."""
    if e164.startswith("h:"):
        return e164
    shown = "0" + e164[3:] if e164.startswith("+84") else e164
    if len(shown) <= 6:
        return "*" * len(shown)
    return shown[:3] + "*" * (len(shown) - 6) + shown[-3:]

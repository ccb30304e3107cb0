"""Message text: normalisation, GSM-7/UCS-2 encoding, SMS segment counting and personalisation."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from outreach.i18n import N_, _

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7",
    "UCS2",
    "GSM7_SINGLE",
    "GSM7_MULTI",
    "UCS2_SINGLE",
    "UCS2_MULTI",
    "Encoding",
    "MessageAnalysis",
    "MissingFieldError",
    "TemplateError",
    "analyse",
    "estimate_cost",
    "gsm7_septets",
    "gsm_safe",
    "is_gsm7",
    "nfc",
    "placeholders",
    "render",
    "text_sha256",
    "unaccent",
    "utf16_units",
]

Encoding = Literal["GSM-7", "UCS-2"]
GSM7: Final = "GSM-7"
UCS2: Final = "UCS-2"

# --- GSM 03.38 / 3GPP TS 23.038 §6.2.1 ------------------------------------------------------

#: The GSM-7 default alphabet (3GPP TS 23.038 §6.2.1, table "GSM 7 bit default alphabet"),
#: in code order 0x00..0x7F with 0x1B (ESC, the escape to the extension table) left out:
#: 127 characters, each one septet. The backtick ` is NOT in it; 0x24 is ¤, not a second $.
GSM7_BASIC: Final[str] = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00-0x0F
    "Δ_ΦΓΛΩΠΨΣΘΞ" "ÆæßÉ"  # 0x10-0x1F (0x1B = ESC omitted)
    " !\"#¤%&'()*+,-./"  # 0x20-0x2F
    "0123456789:;<=>?"  # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50-0x5F
    "¿abcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzäöñüà"  # 0x70-0x7F
)

#: The GSM-7 default extension table (3GPP TS 23.038 §6.2.1.1): each is sent as ESC (0x1B)
#: plus one code, i.e. 2 septets, and the pair is never split across parts.
#: Form feed (0x1B0A), ^ { } \ [ ~ ] | and € (0x1B65).
GSM7_EXTENSION: Final[str] = "\f^{}\\[~]|€"

_GSM7_BASIC_SET: Final = frozenset(GSM7_BASIC)
_GSM7_EXTENSION_SET: Final = frozenset(GSM7_EXTENSION)
_GSM7_SET: Final = _GSM7_BASIC_SET | _GSM7_EXTENSION_SET

# Sizes in units (septets for GSM-7, UTF-16 code units for UCS-2). A single SMS carries 140
# octets = 160 septets = 70 UCS-2 units; a part of a concatenated SMS loses 6 octets to the
# user-data header (3GPP TS 23.040 §9.2.3.24.1): 153 septets or 67 units.
GSM7_SINGLE: Final = 160
GSM7_MULTI: Final = 153
UCS2_SINGLE: Final = 70
UCS2_MULTI: Final = 67

assert len(GSM7_BASIC) == 127 and len(_GSM7_BASIC_SET) == 127
assert len(GSM7_EXTENSION) == 10 and not (_GSM7_BASIC_SET & _GSM7_EXTENSION_SET)


# --- normalisation ---------------------------------------------------------------------------


def nfc(s: str) -> str:
    """Return ``s`` in Unicode Normalization Form C (``unicodedata.normalize("NFC", s)``).

    Vietnamese typed on macOS or pasted from some PDFs arrives decomposed (NFD: "ờ" as
    o + U+031B + U+0300); the NFC form is what is sent and billed.
    """
    return unicodedata.normalize("NFC", s)


def text_sha256(text: str) -> str:
    """Return the SHA-256 of ``nfc(text)`` encoded UTF-8, as 64 lowercase hex characters.

    NFC and NFD spellings of one message give the same digest.
    """
    return hashlib.sha256(nfc(text).encode("utf-8")).hexdigest()


# đ/Đ are letters of their own, not a base letter plus a combining mark, so NFD keeps them.
# Ð (U+00D0, Icelandic eth) is a common mis-conversion of Đ from legacy Vietnamese encodings.
_UNACCENT_LETTERS: Final = str.maketrans({"đ": "d", "Đ": "D", "Ð": "D"})


def unaccent(s: str) -> str:
    """Remove Vietnamese diacritics: "Đi khám sớm" → "Di kham som"; result in NFC.

    Rule (the usual "bỏ dấu" of Vietnamese SMS senders, domain-facts "SMS encoding"):
    decompose (NFD), drop every combining mark of category Mn, map đ→d, Đ→D (and the
    look-alike Ð U+00D0 → D), recompose (NFC). Other characters are unchanged. Note that
    this also removes accents that GSM-7 could carry (à è é ì ò ù É).
    """
    decomposed = unicodedata.normalize("NFD", s)
    kept = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return nfc(kept.translate(_UNACCENT_LETTERS))


# Typographic characters → GSM-7 equivalents (modelled on Twilio's "Smart Encoding" list).
# Letters, and so diacritics, are never touched.
_SPACES: Final = (
    "\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u3000"
)
_GSM_SAFE_MAP: Final[dict[str, str]] = {
    **{ch: " " for ch in _SPACES},
    # soft hyphen, zero-width space, word joiner, BOM (ZWJ/ZWNJ kept: they belong to emoji)
    **{ch: "" for ch in "\u00ad\u200b\u2060\ufeff"},
    **{ch: "\n" for ch in "\u2028\u2029\u0085"},  # line/paragraph separators, NEL
    **{ch: "'" for ch in "\u2018\u2019\u201a\u201b\u2032\u2035\u02b9\u02bc\u02c8"},
    **{ch: "'" for ch in "\u00b4`\u275b\u275c\uff07"},
    **{ch: '"' for ch in "\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb\u02ba"},
    **{ch: '"' for ch in "\u275d\u275e\u301d\u301e\uff02"},
    **{ch: "-" for ch in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe63\uff0d"},
    **{ch: "-" for ch in "\u2022\u00b7\u2219"},  # bullets
    "\u2026": "...",
    "\u2039": "<",
    "\u203a": ">",
    "\u2044": "/",
    "\u2215": "/",
    "\uff0f": "/",
    "\u00d7": "x",
    "\u2122": "TM",
    "\u00a9": "(C)",
    "\u00ae": "(R)",
    "\uff0c": ",",
    "\uff1a": ":",
    "\uff1b": ";",
    "\uff01": "!",
    "\uff1f": "?",
}
_GSM_SAFE_TABLE: Final = str.maketrans(_GSM_SAFE_MAP)


def gsm_safe(s: str) -> str:
    """Replace typographic characters by GSM-7 equivalents, keeping every letter and diacritic.

    ’ ‘ ‚ ‛ ′ ´ ` → ' ; “ ” „ ‟ « » ″ → " ; ‐ ‑ ‒ – — ― − • · → - ; … → ... ;
    ‹ › → < > ; tab, NBSP and the other Unicode spaces → space; zero-width spaces, word
    joiners, BOMs and soft hyphens are dropped; U+2028/U+2029 → newline; × → x;
    ™ © ® → TM (C) (R);
    full-width punctuation → ASCII. The list follows Twilio's "Smart Encoding"
    (https://www.twilio.com/docs/messaging/services#smart-encoding). The result is NFC.
    Vietnamese letters are kept: "Đi khám sớm – “ngay”" → "Đi khám sớm - \"ngay\"" (still UCS-2).
    """
    return nfc(nfc(s).translate(_GSM_SAFE_TABLE))


# --- encoding and units ----------------------------------------------------------------------


def is_gsm7(s: str) -> bool:
    """True if every character of ``s`` is in the GSM-7 basic or extension table."""
    return _GSM7_SET.issuperset(s)


def gsm7_septets(s: str) -> int:
    """Return the length of ``s`` in GSM-7 septets (extension characters count 2).

    Raises ValueError if ``s`` has a character outside GSM-7 (3GPP TS 23.038).
    """
    if not is_gsm7(s):
        raise ValueError(_("text has characters outside the GSM-7 alphabet"))
    return len(s) + sum(1 for ch in s if ch in _GSM7_EXTENSION_SET)


def utf16_units(s: str) -> int:
    """Return the length of ``s`` in UTF-16 code units (UCS-2 SMS units; astral characters = 2)."""
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


@dataclass(frozen=True)
class MessageAnalysis:
    """How one SMS text is encoded and split; all counts computed on the NFC text.

    Attributes:
        text: the text that will be sent (after ``gsm_safe``/``unaccent`` if asked, and NFC).
        encoding: ``"GSM-7"`` if every character is in the GSM-7 tables, else ``"UCS-2"``.
        characters: length of ``text`` in Unicode code points.
        units: length in septets (GSM-7; extension characters count 2) or UTF-16 code units
            (UCS-2; characters outside the BMP count 2).
        segments: number of SMS parts billed (0 for an empty text).
        per_segment: capacity of each part in units: 160/70 for a single SMS, 153/67 for a
            concatenated one.
        ucs2_characters: the distinct characters that forced UCS-2, in order of first
            appearance (empty for GSM-7).
        parts: ``text`` split greedily into the parts as they would be sent; an escape pair
            or a surrogate pair is never split, so ``"".join(parts) == text``.
    """

    text: str
    encoding: Encoding
    characters: int
    units: int
    segments: int
    per_segment: int
    ucs2_characters: list[str]
    parts: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of all fields."""
        return asdict(self)


def _split(text: str, costs: list[int], single: int, multi: int) -> list[str]:
    """Split ``text`` greedily into parts of at most ``multi`` units, never splitting a character.

    ``costs[i]`` is the size of ``text[i]`` in units (1 or 2). Text of at most ``single`` units
    is one part; otherwise a character that does not fit in the current part starts the next
    one (Twilio message-segment-calculator behaviour).
    """
    total = sum(costs)
    if not text:
        return []
    if total <= single:
        return [text]
    parts: list[str] = []
    start = 0
    used = 0
    for i, cost in enumerate(costs):
        if used + cost > multi:
            parts.append(text[start:i])
            start, used = i, 0
        used += cost
    parts.append(text[start:])
    return parts


@functools.lru_cache(maxsize=8192)
def _analyse_cached(
    text: str, unaccented: bool, safe: bool
) -> tuple[str, Encoding, int, int, int, tuple[str, ...], tuple[str, ...]]:
    final = nfc(text)
    if safe:
        final = gsm_safe(final)
    if unaccented:
        final = unaccent(final)
    if is_gsm7(final):
        encoding: Encoding = GSM7
        costs = [2 if ch in _GSM7_EXTENSION_SET else 1 for ch in final]
        single, multi = GSM7_SINGLE, GSM7_MULTI
        forcing: tuple[str, ...] = ()
    else:
        encoding = UCS2
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in final]
        single, multi = UCS2_SINGLE, UCS2_MULTI
        forcing = tuple(dict.fromkeys(ch for ch in final if ch not in _GSM7_SET))
    units = sum(costs)
    parts = tuple(_split(final, costs, single, multi))
    per_segment = multi if len(parts) > 1 else single
    return final, encoding, units, len(parts), per_segment, forcing, parts


def analyse(text: str, *, unaccented: bool = False, gsm_safe: bool = False) -> MessageAnalysis:
    """Analyse an SMS text: encoding, length in units, segments and the parts as sent.

    Steps: NFC (NFD input is billed as its NFC form), then ``gsm_safe()`` if ``gsm_safe``,
    then ``unaccent()`` if ``unaccented``. The encoding is GSM-7 when every character is in
    the 3GPP TS 23.038 tables, else UCS-2. Segments come from actually splitting the text
    (see ``MessageAnalysis.parts``): 1 part up to 160 septets / 70 units, otherwise parts of
    at most 153 / 67, where an escape pair or surrogate pair that would straddle a boundary
    moves to the next part, so "1"*152 + "€" + "1"*153 is 3 segments, not 2 (Twilio
    message-segment-calculator). Results are cached on (text, options).

    Examples: "Xin chào" → GSM-7, 1 segment; "Đi khám sớm" → UCS-2, 1 segment, forced by
    Đ á ớ.
    """
    final, encoding, units, segments, per_segment, forcing, parts = _analyse_cached(
        text, unaccented, gsm_safe
    )
    return MessageAnalysis(
        text=final,
        encoding=encoding,
        characters=len(final),
        units=units,
        segments=segments,
        per_segment=per_segment,
        ucs2_characters=list(forcing),
        parts=list(parts),
    )


def estimate_cost(segments: int, price_per_segment_vnd: float) -> float:
    """Return the cost in VND of sending ``segments`` SMS parts at ``price_per_segment_vnd`` each.

    Providers bill every part of a concatenated SMS as one message, so cost is
    segments × price. Raises ValueError on a negative argument.
    """
    if segments < 0:
        raise ValueError(f"segments must be >= 0, got {segments}")
    if price_per_segment_vnd < 0:
        raise ValueError(f"price per segment must be >= 0 VND, got {price_per_segment_vnd}")
    return float(segments * price_per_segment_vnd)


# --- personalisation -------------------------------------------------------------------------


class TemplateError(ValueError):
    """A template has a ``{{...}}`` that is not a valid placeholder."""


class MissingFieldError(ValueError):
    """A placeholder's field is missing, None or blank for this recipient.

    Attributes:
        field: the placeholder name, e.g. ``"ho_ten"``.
    """

    def __init__(self, field: str, reason: str = "missing") -> None:
        # ``reason`` is a code ("missing", "empty (None)", "blank"); the message is translated
        shown = _({"missing": N_("missing"), "empty (None)": N_("empty (None)"),
                   "blank": N_("blank")}.get(reason, reason))
        super().__init__(_("field {field!r} is {reason}: the message would be sent with a "
                           "blank").format(field=field, reason=shown))
        self.field = field
        self.reason = reason


_NAME_RE: Final = re.compile(r"[a-z_][a-z0-9_]*")
# A placeholder attempt: {{ ... }} on one line with no braces inside.
_PLACEHOLDER_RE: Final = re.compile(r"\{\{([^{}\n]*)\}\}")
# "{{" followed by something name-like but never closed, e.g. "{{ten}" or "{{ten".
_UNCLOSED_RE: Final = re.compile(r"\{\{\s*[A-Za-z_][\w-]*")


def _tokens(template: str) -> list[str | tuple[str]]:
    """Split a template into literal strings and ``(name,)`` placeholders; raise TemplateError."""
    out: list[str | tuple[str]] = []
    pos = 0
    for m in _PLACEHOLDER_RE.finditer(template):
        name = m.group(1).strip()
        if not _NAME_RE.fullmatch(name):
            raise TemplateError(_(
                "invalid placeholder {placeholder!r} at position {position}: write {{{{field}}}} "
                "where field is lowercase letters, digits and _, not starting with a digit").format(
                    placeholder=m.group(0), position=m.start()))
        literal = template[pos : m.start()]
        _check_unclosed(literal, pos)
        out.append(literal)
        out.append((name,))
        pos = m.end()
    _check_unclosed(template[pos:], pos)
    out.append(template[pos:])
    return out


def _check_unclosed(literal: str, offset: int) -> None:
    m = _UNCLOSED_RE.search(literal)
    if m:
        raise TemplateError(_(
            "unclosed placeholder {placeholder!r} at position {position}: write {{{{field}}}}"
        ).format(placeholder=m.group(0), position=offset + m.start()))


def placeholders(template: str) -> list[str]:
    """Return the distinct field names of the ``{{field}}`` placeholders, in order of first use.

    Syntax: ``{{field}}`` (spaces inside the braces allowed) with field matching
    ``[a-z_][a-z0-9_]*``. A ``{`` or ``}`` that is not part of ``{{...}}`` is literal text
    (a GSM-7 extension character). ``{{...}}`` holding anything but a valid name, or a
    name-like ``{{field`` never closed, raises TemplateError.
    """
    return list(dict.fromkeys(t[0] for t in _tokens(template) if isinstance(t, tuple)))


def render(template: str, fields: Mapping[str, str | None]) -> str:
    """Fill the ``{{field}}`` placeholders of ``template`` from ``fields``; return NFC text.

    Values are NFC-normalised and stripped. Strict: a field that is absent, None or blank
    after strip raises ``MissingFieldError(field)`` so a message is never sent with a gap.
    Substitution is single-pass (a value containing ``{{x}}`` is not expanded). Raises
    TemplateError on bad placeholder syntax (see ``placeholders``).
    """
    pieces: list[str] = []
    for token in _tokens(template):
        if isinstance(token, str):
            pieces.append(token)
            continue
        name = token[0]
        if name not in fields:
            raise MissingFieldError(name, "missing")
        value = fields[name]
        if value is None:
            raise MissingFieldError(name, "empty (None)")
        cleaned = nfc(str(value)).strip()
        if not cleaned:
            raise MissingFieldError(name, "blank")
        pieces.append(cleaned)
    return nfc("".join(pieces))


# -- brandname customer-care templates ------------------------------------------------------

#: A variable part of a carrier-registered customer-care template: ``{P1,20}`` = at most 20
#: characters (eSMS GetTemplate docs: "{P1,20} la ma xac minh ..."). Source:
#: https://developers.esms.vn/en/esms-api/retrive-and-register-functions/get-list-customer-care-templates
_BRAND_VAR_RE: Final = re.compile(r"\{P(\d+),(\d+)\}")


def brandname_template_mismatch(template: str, text: str) -> str | None:
    """None when ``text`` (NFC) matches the registered customer-care ``template``, else the
    reason in one line (where the text first departs from the template).

    The template is literal text (compared in NFC, exactly) with ``{Pn,L}`` variable parts of
    0 to L characters. A personalisation placeholder ``{{field}}`` in ``text`` must fall inside
    a variable part (it is checked as one character; a value longer than the part is refused
    by the provider at send time: eSMS 146, which pauses the run).
    """
    tpl = nfc(template)
    pattern = _brand_pattern(tpl)
    sample = _PLACEHOLDER_RE.sub("\x00", nfc(text))
    if re.fullmatch(pattern, sample, flags=re.DOTALL):
        return None
    # the longest prefix of the text the template still admits: where it departs
    literal = _BRAND_VAR_RE.split(tpl)[0]
    i = 0
    while i < min(len(literal), len(sample)) and literal[i] == sample[i]:
        i += 1
    shown = sample[i:i + 20].replace("\x00", "{{…}}")
    return (_("the message does not match the registered template (from character {n}: "
              "{text!r})").format(n=i + 1, text=shown) if i < len(literal) else
            _("the message does not match the registered template (after its fixed beginning)"))


def _brand_pattern(template: str) -> str:
    out, pos = [], 0
    for m in _BRAND_VAR_RE.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(f".{{0,{int(m.group(2))}}}")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return "".join(out)

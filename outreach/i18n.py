"""The interface language: gettext catalogs (Babel), Vietnamese or English.

``_(msgid) -> str`` and ``ngettext(singular, plural, n) -> str`` translate console messages,
table headings, help texts and export headers; ``N_(msgid)`` only marks a string for
extraction. The source strings are English; the Vietnamese catalog is
``outreach/locale/vi/LC_MESSAGES/outreach.po``, compiled in memory with Babel when first
needed (so a catalog can never be older than its ``.po``). The terms follow the Department's
usage: *tin nhắn thương hiệu* (brandname SMS), *người nhận* (recipient), *danh sách* (list),
*đợt gửi* (run), *từ chối nhận tin* (opt-out).

Which language (:func:`resolve`): the ``--lang vi|en`` option of the top-level command, else
``OUTREACH_LANG``, else the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``, the first one set, as
POSIX orders them): Vietnamese when it is ``vi_*`` or unset, ``C`` or ``POSIX`` (a server set up
for Vietnam usually has no locale at all), English for any other language.

Formats (:func:`number`, :func:`when`): numbers with the locale's separators from Babel's CLDR
data (vi ``1.234.567``, en ``1,234,567``); times in Asia/Ho_Chi_Minh as
``08:00 ngày 30/07/2024`` (vi) or ``08:00 30/07/2024`` (en).

Order (:func:`vi_sort_key`): place names (districts, communes, areas) are listed in Vietnamese
alphabetical order, not by code point ("Ô Môn" before "Phong Điền", "Đ" after "D").
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import unicodedata
from gettext import GNUTranslations, NullTranslations
from pathlib import Path
from typing import Any

#: The languages of the interface; the first is the default of a Vietnamese or unset locale.
LANGUAGES = ("vi", "en")
DOMAIN = "outreach"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

_current = "vi"
_catalogs: dict[str, NullTranslations] = {}


class LanguageError(ValueError):
    """An unknown language code (``OUTREACH_LANG`` or ``--lang``)."""


def po_path(lang: str) -> Path:
    """The catalog file of ``lang`` (``outreach/locale/<lang>/LC_MESSAGES/outreach.po``)."""
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def language_from_locale(env: dict[str, str] | os._Environ[str] | None = None) -> str:
    """``vi`` or ``en`` from the POSIX locale variables (the first of LC_ALL, LC_MESSAGES, LANG
    that is set): ``vi`` for ``vi_*``, unset, ``C`` and ``POSIX``; ``en`` for any other."""
    env = os.environ if env is None else env
    value = ""
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(var):
            value = env[var]
            break
    base = value.split(".", 1)[0].split("@", 1)[0].strip()
    if base in ("", "C", "POSIX") or base.lower().startswith("vi"):
        return "vi"
    return "en"


def resolve(option: str | None = None, env: dict[str, str] | os._Environ[str] | None = None) -> str:
    """The language to use: ``option`` (``--lang``), else ``OUTREACH_LANG``, else the locale.

    Raises LanguageError for a code other than ``vi`` or ``en`` (case-insensitive, ``vi_VN``
    accepted)."""
    env = os.environ if env is None else env
    for source, value in (("--lang", option), ("OUTREACH_LANG", env.get("OUTREACH_LANG"))):
        if value:
            code = value.strip().lower().replace("-", "_").split("_", 1)[0].split(".", 1)[0]
            if code not in LANGUAGES:
                raise LanguageError(f"{source}={value!r}: the interface speaks vi or en")
            return code
    return language_from_locale(env)


def _load(lang: str) -> NullTranslations:
    if lang not in _catalogs:
        path = po_path(lang)
        if lang == "en" or not path.exists():
            _catalogs[lang] = NullTranslations()
        else:
            from babel.messages.mofile import write_mo
            from babel.messages.pofile import read_po

            with path.open("rb") as fh:
                catalog = read_po(fh, locale=lang, domain=DOMAIN)
            buf = io.BytesIO()
            write_mo(buf, catalog)
            buf.seek(0)
            _catalogs[lang] = GNUTranslations(buf)
    return _catalogs[lang]


def set_language(lang: str) -> None:
    """Make ``lang`` (``vi`` or ``en``) the language of every later ``_()``."""
    global _current
    if lang not in LANGUAGES:
        raise LanguageError(f"{lang!r}: the interface speaks vi or en")
    _current = lang


def current() -> str:
    """The language in use (``vi`` or ``en``)."""
    return _current


def _(message: str) -> str:
    """``message`` in the current language (itself when it has no translation)."""
    return _load(_current).gettext(message)


def gettext(message: str) -> str:
    """The same as :func:`_`."""
    return _(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form that agrees with ``n`` (English: 1 → singular; Vietnamese has one form)."""
    return _load(_current).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks ``message`` for extraction without translating it (translated where shown)."""
    return message


def N_plural(singular: str, plural: str) -> tuple[str, str]:
    """Marks a singular/plural pair for extraction (translated with :func:`ngettext`)."""
    return singular, plural


def number(n: int | float, decimals: int = 0) -> str:
    """``n`` with the current language's separators (CLDR through Babel): vi ``1.234.567``
    and ``12,5``; en ``1,234,567`` and ``12.5``."""
    from babel.numbers import format_decimal

    fmt = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(n, format=fmt, locale="vi" if _current == "vi" else "en")


def percent(rate: float | None) -> str:
    """A rate 0..1 as a percentage with one decimal (vi ``97,3%``, en ``97.3%``); ``–`` for
    None."""
    if rate is None:
        return "–"
    return number(rate * 100, 1) + "%"


def _vietnam(moment: dt.datetime) -> dt.datetime:
    """``moment`` in Asia/Ho_Chi_Minh; a naive datetime is taken as UTC (the database stores
    UTC)."""
    from outreach.clock import VN_TZ

    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(VN_TZ)


def when(moment: dt.datetime | None) -> str:
    """A time in Asia/Ho_Chi_Minh: vi ``08:00 ngày 30/07/2024``, en ``08:00 30/07/2024``;
    ``–`` for None. A naive datetime is taken as UTC (the database stores UTC)."""
    if moment is None:
        return "–"
    local = _vietnam(moment)
    if _current == "vi":
        return f"{local:%H:%M} ngày {local:%d/%m/%Y}"
    return f"{local:%H:%M %d/%m/%Y}"


def stamp(moment: dt.datetime | None = None) -> str:
    """A log line's time, to the second, in Asia/Ho_Chi_Minh (now by default): vi
    ``06:24:19 ngày 08/12/2026``, en ``2026-12-08 06:24:19 +07``. A naive datetime is UTC."""
    local = _vietnam(moment or dt.datetime.now(dt.timezone.utc))
    if _current == "vi":
        return f"{local:%H:%M:%S} ngày {local:%d/%m/%Y}"
    return f"{local:%Y-%m-%d %H:%M:%S} +07"


def day(d: dt.date | None) -> str:
    """A calendar day: vi ``30/07/2024``, en ``2024-07-30``; ``–`` for None."""
    if d is None:
        return "–"
    return f"{d:%d/%m/%Y}" if _current == "vi" else d.isoformat()


def init_from_environment() -> str:
    """Set the language from ``OUTREACH_LANG`` or the locale (no ``--lang``); an unknown
    ``OUTREACH_LANG`` falls back to the locale here (``--lang`` parsing reports it)."""
    try:
        lang = resolve(None)
    except LanguageError:
        lang = language_from_locale()
    set_language(lang)
    return lang


#: click's own messages that an operator sees (usage, errors, prompts), translated in the
#: catalog like ours; :func:`install_click` makes click look them up here.
CLICK_MESSAGES = (
    N_("Usage:"), N_("Options"), N_("Commands"), N_("Show this message and exit."),
    N_("Show the version and exit."), N_("Error: {message}"), N_("Aborted!"),
    N_("Missing argument"), N_("Missing option"), N_("Missing parameter"),
    N_("Missing argument '{param_name}'"), N_("No such command {name!r}."),
    N_("No such option {name!r}."), N_("Try '{command} {option}' for help."),
    N_("Invalid value for {param_hint}: {message}"), N_("Invalid value: {message}"),
    N_("default: {default}"), N_("env var: {var}"), N_("Do you want to continue?"),
    N_("Error: invalid input"), N_("Option {name!r} requires an argument."),
    N_("Got unexpected extra argument ({args})"), N_("Missing command."),
    N_("{name} {filename!r} does not exist."), N_("Path"), N_("File"),
    N_("{value!r} is not a valid {number_type}."), N_("required"), N_("deprecated"),
    N_("Positional arguments"), N_("(dynamic)"), N_("{value} is not in the range {range}."),
    N_("{name} {filename!r} is a file."), N_("{name} {filename!r} is a directory."),
    N_("{name} {filename!r} is not readable."), N_("{name} {filename!r} is not writable."),
    N_("{name} {filename!r} is not executable."),
)
#: click's type names in its errors ("'x' is not a valid integer.", "File '…' does not exist."),
#: marked ``type|name``.
CLICK_TYPES = (
    N_("type|integer"), N_("type|integer range"), N_("type|float"), N_("type|float range"),
    N_("type|boolean"), N_("type|uuid"), N_("type|text"), N_("type|file"),
    N_("type|directory"), N_("type|path"), N_("type|filename"), N_("type|datetime"),
)
CLICK_PLURALS = (
    N_plural("{value!r} is not {choice}.", "{value!r} is not one of {choices}."),
    N_plural("Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})"),
    N_plural("Option {name!r} requires an argument.", "Option {name!r} requires {nargs} arguments."),
    N_plural("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)"),
)


#: The placeholders of the help (click's metavars: ``[OPTIONS]``, ``COMMAND [ARGS]...``, type
#: names such as ``TEXT`` and ``INTEGER``, argument names such as ``CAMPAIGN_ID`` and the
#: ``metavar=`` of options), marked ``metavar|WORD``: :func:`metavar` reads them in the current
#: language when the help is drawn.
METAVARS = (
    N_("metavar|OPTIONS"), N_("metavar|COMMAND"), N_("metavar|ARGS"), N_("metavar|COMMAND1"),
    N_("metavar|COMMAND2"), N_("metavar|TEXT"), N_("metavar|INTEGER"),
    N_("metavar|INTEGER RANGE"), N_("metavar|FLOAT"), N_("metavar|FLOAT RANGE"),
    N_("metavar|BOOLEAN"), N_("metavar|PATH"), N_("metavar|FILE"), N_("metavar|FILES"),
    N_("metavar|DIRECTORY"), N_("metavar|FILENAME"), N_("metavar|CAMPAIGN"),
    N_("metavar|CAMPAIGN_ID"), N_("metavar|FILE_OR_ID"), N_("metavar|CAMPAIGN_FILE_OR_ID"),
    N_("metavar|DAYS"), N_("metavar|SECONDS"), N_("metavar|BYTES"), N_("metavar|DELIVERY_IDS"),
    N_("metavar|HEADER"), N_("metavar|ADDRESS"), N_("metavar|ID"), N_("metavar|KEY"),
    N_("metavar|VALUE"), N_("metavar|NAME"), N_("metavar|NUMBERS"), N_("metavar|PHONE"),
    N_("metavar|OUT"), N_("metavar|USERNAME"), N_("metavar|VAR"),
)

_METAVAR_WORD = re.compile(r"\b[A-Z][A-Z0-9_]*(?: RANGE)?\b")


def metavar(text: str) -> str:
    """A click placeholder in the current language, word by word (``[OPTIONS]`` →
    ``[TÙY_CHỌN]``, ``COMMAND [ARGS]...`` → ``LỆNH [THAM_SỐ]...``, ``FILE_OR_ID`` →
    ``TỆP_HOẶC_MÃ``); lowercase choices (``[table|json]``) and words without a translation
    (``URL``) stay as they are."""
    if _current == "en" or not text:
        return text
    return _METAVAR_WORD.sub(lambda m: label(f"metavar|{m.group(0)}"), text)


def _install_click_metavars() -> None:
    """Make click draw its placeholders through :func:`metavar`, at the time the help (or an
    error naming an argument) is drawn, so ``--lang`` chosen on the same command line applies."""
    import click

    if getattr(click.Command, "_i18n_metavars", False):
        return
    for cls in (click.Parameter, click.Option, click.Argument):
        if "make_metavar" in vars(cls):
            def make_metavar(self: Any, ctx: Any, _orig: Any = vars(cls)["make_metavar"]) -> str:
                return metavar(_orig(self, ctx))

            setattr(cls, "make_metavar", make_metavar)
    for cls in (click.Command, click.Group):
        if "collect_usage_pieces" in vars(cls):
            def collect(self: Any, ctx: Any, _orig: Any = vars(cls)["collect_usage_pieces"]
                        ) -> list[str]:
                fixed = (self.options_metavar, getattr(self, "subcommand_metavar", None))
                return [metavar(p) if p in fixed else p for p in _orig(self, ctx)]

            setattr(cls, "collect_usage_pieces", collect)
    click.Command._i18n_metavars = True  # type: ignore[attr-defined]


class _ClickTypeMessage(str):
    """A message of ``click.types`` whose ``format`` reads the type's name (``number_type``,
    the ``name`` of a path) in the current language; "File" stays capitalised."""

    def format(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        for key in ("number_type", "name"):
            value = kwargs.get(key)
            if isinstance(value, str) and value:
                word = label(f"type|{value.lower()}")
                kwargs[key] = word[:1].upper() + word[1:] if value[:1].isupper() else word
        return str.format(self, *args, **kwargs)


def _click_types_gettext(message: str) -> str:
    return _ClickTypeMessage(_(message))


def install_click() -> None:
    """Make click's own messages ("Usage:", "Error: …", "Missing argument", …) use these
    catalogs: click calls the module-level ``_`` and ``ngettext`` it imported from the standard
    ``gettext``, which are replaced here by this module's; and its placeholders
    (:func:`metavar`)."""
    import importlib

    _install_click_metavars()

    for name in ("core", "exceptions", "formatting", "termui", "types", "parser",
                 "decorators", "_termui_impl"):
        try:
            mod = importlib.import_module(f"click.{name}")
        except ImportError:  # pragma: no cover - a click without that module
            continue
        if hasattr(mod, "_"):
            mod._ = _click_types_gettext if name == "types" else _
        if hasattr(mod, "ngettext"):
            mod.ngettext = ngettext


def carrier_label(name: str) -> str:
    """A carrier's name as shown: the key ``unknown`` (a number whose carrier its prefix does not
    tell, :mod:`outreach.input.phones`) in the interface's language; JSON keeps the key."""
    return label(N_("carrier|unknown")) if name == "unknown" else name


def label(key: str) -> str:
    """A word marked with its context, ``"context|word"`` (``N_("reply|optout")``), so that
    one English word can read differently in two places: translated in Vietnamese; untranslated
    (English), the word after ``|``."""
    text = _(key)
    return text.split("|", 1)[1] if text == key else text


#: Words shown from data (delivery and run states, run kinds, stop reasons, unit kinds): the
#: console shows ``_(status)``; the JSON and CSV values stay these codes.
TERMS = (
    N_("queued"), N_("sending"), N_("sent"), N_("delivered"), N_("undelivered"), N_("failed"),
    N_("skipped"), N_("opted_out"), N_("unknown"), N_("created"), N_("running"), N_("paused"),
    N_("completed"), N_("cancelled"), N_("missed"), N_("launch"), N_("daily"), N_("resend"),
    N_("gateway"), N_("error-rate"), N_("window"), N_("late"), N_("gone"), N_("active"),
    N_("pending"), N_("approved"), N_("rejected"), N_("void"), N_("requeued"),
    N_("district"), N_("ward"), N_("orphaned"), N_("looked_up"), N_("deferred"),
    N_("missing"), N_("expired"), N_("interrupted"), N_("ready"), N_("refreshing"),
    N_("waiting"),
)


# --- Vietnamese alphabetical order ------------------------------------------------------------

#: The Vietnamese alphabet (29 letters: a ă â b c d đ e ê g h i k l m n o ô ơ p q r s t u ư v x
#: y, as taught and as dictionaries order it), with the Latin letters it lacks (f j w z, in
#: foreign names) at their Latin places, as the CLDR collation for ``vi`` does.
VI_ALPHABET = ("a", "ă", "â", "b", "c", "d", "đ", "e", "ê", "f", "g", "h", "i", "j", "k", "l",
               "m", "n", "o", "ô", "ơ", "p", "q", "r", "s", "t", "u", "ư", "v", "w", "x", "y",
               "z")
_VI_LETTER_RANK = {ch: i for i, ch in enumerate(VI_ALPHABET)}
#: Marks that make a letter of its own (ă â ê ô ơ ư): breve, circumflex, horn.
_VI_SHAPE_MARKS = frozenset("\u0306\u0302\u031b")
#: The tones, second in the order (CLDR ``vi``): none, huyền, hỏi, ngã, sắc, nặng.
_VI_TONE_RANK = {"\u0300": 1, "\u0309": 2, "\u0303": 3, "\u0301": 4, "\u0323": 5}
_VI_LETTERS_BASE = 100


def vi_sort_key(text: str | None) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str]:
    """A sort key that puts text in Vietnamese alphabetical order: letters by
    :data:`VI_ALPHABET` (``đ`` after ``d`` as its own letter, ``ă â`` after ``a``, ``ô ơ`` after
    ``o``, ``ư`` after ``u``, which code point order and plain DUCET both get wrong); then the
    tones (none, huyền, hỏi, ngã, sắc, nặng) as the second level; then case; then the text
    itself. Spaces and punctuation sort before digits, digits before letters ("Ô Môn" before
    "Ômon"); other characters after the letters, by code point. ``None`` sorts as ``""``.
    Used wherever place names are sorted for display (reports, tables, the web view)."""
    decomposed = unicodedata.normalize("NFD", text or "")
    primary: list[int] = []
    tones: list[int] = []
    cases: list[int] = []
    i, n = 0, len(decomposed)
    while i < n:
        ch = decomposed[i]
        i += 1
        shape, tone = "", 0
        while i < n and unicodedata.combining(decomposed[i]):
            mark = decomposed[i]
            if mark in _VI_SHAPE_MARKS:
                shape += mark
            else:
                tone = _VI_TONE_RANK.get(mark, 6)
            i += 1
        low = ch.lower()
        letter = unicodedata.normalize("NFC", low + shape)
        if letter in _VI_LETTER_RANK:
            primary.append(_VI_LETTERS_BASE + _VI_LETTER_RANK[letter])
        elif low in _VI_LETTER_RANK:  # a mark Vietnamese has not (ç): the base letter
            primary.append(_VI_LETTERS_BASE + _VI_LETTER_RANK[low])
        elif ch.isdigit():
            primary.append(10 + (unicodedata.digit(ch, 0)))
        elif ch.isspace() or not ch.isalnum():
            primary.append(0 if ch.isspace() else 1)
        else:
            primary.append(1000 + ord(low))
        tones.append(tone)
        cases.append(0 if ch == low else 1)
    return tuple(primary), tuple(tones), tuple(cases), text or ""


def vi_sorted_items(mapping: Any, *, last: str | None = None) -> list[tuple[Any, Any]]:
    """The items of ``mapping`` by their keys in Vietnamese order (:func:`vi_sort_key`); the key
    ``last`` (e.g. "(không rõ)", an unknown place) after all the others."""
    return sorted(mapping.items(), key=lambda kv: (kv[0] == last, vi_sort_key(kv[0])))

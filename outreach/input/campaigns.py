"""Campaign files (TOML): the prescribed text and its source, window, schedule, channels, lists."""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
import tomllib
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from outreach.i18n import N_, _
from outreach.input import text as textmod

ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
SENDER_RE = re.compile(r"^[A-Za-z0-9 .\-_&]{1,11}$")
CHANNELS = ("sms", "zalo")
CARRIERS = ("Viettel", "MobiFone", "VinaPhone", "Vietnamobile", "Gmobile", "iTel", "Wintel", "Reddi")


class CampaignError(ValueError):
    """A campaign file that cannot be used: names the file, the field and the reason."""

    def __init__(self, file: str | Path, field_name: str | None, reason: str) -> None:
        self.file = str(file)
        self.field = field_name
        self.reason = reason
        where = (_("{file}: field '{field}'").format(file=self.file, field=field_name)
                 if field_name else self.file)
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Source:
    """Where the message is prescribed: document number, issuer, date and section."""

    document: str
    issuer: str
    date: dt.date
    section: str
    title: str = ""

    def reference(self) -> str:
        ref = f"{self.document} ngày {self.date:%d/%m/%Y} của {self.issuer}"
        return f"{ref}, mục {self.section}" if self.section else ref


@dataclass(frozen=True)
class Channel:
    """One channel in fallback order. Rate in messages or segments per second (0 = unlimited)."""

    channel: str
    sender: str | None = None
    gateway: str | None = None
    unaccented: bool = False
    gsm_safe: bool = False
    rate_per_second: float | None = None
    rate_unit: str | None = None
    concurrency: int | None = None
    template_id: str | None = None
    template_fields: dict[str, str] = field(default_factory=dict)
    fallback_after_minutes: int = 60
    #: the customer-care template registered with the carriers for the brandname (NFC; ``{Pn,L}``
    #: marks a variable part of at most L characters): the message must match it
    brandname_template: str | None = None


@dataclass(frozen=True)
class Window:
    """Campaign dates and the daily send window, in ``timezone`` (Asia/Ho_Chi_Minh)."""

    start_date: dt.date
    end_date: dt.date
    daily_start: dt.time = dt.time(7, 0)
    daily_end: dt.time = dt.time(22, 0)
    timezone: str = "Asia/Ho_Chi_Minh"
    key_dates: tuple[dt.date, ...] = ()
    lateness_limit_minutes: int = 120

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, now: dt.datetime) -> bool:
        """True if ``now`` (aware) falls inside the dates and the daily window."""
        local = now.astimezone(self.tz)
        return (self.start_date <= local.date() <= self.end_date
                and self.daily_start <= local.time() < self.daily_end)

    def closed_reason(self, now: dt.datetime) -> str | None:
        """Why the window is closed at ``now`` (Vietnamese operator wording in English), or None."""
        from outreach.i18n import day

        local = now.astimezone(self.tz)
        if local.date() < self.start_date:
            return _("the campaign starts on {date}").format(date=day(self.start_date))
        if local.date() > self.end_date:
            return _("the campaign ended on {date}").format(date=day(self.end_date))
        if not (self.daily_start <= local.time() < self.daily_end):
            return _("outside the daily send window {opens}–{closes} {tz} (now {now})").format(
                opens=f"{self.daily_start:%H:%M}", closes=f"{self.daily_end:%H:%M}",
                tz=self.timezone, now=f"{local:%H:%M}")
        return None

    def next_open(self, now: dt.datetime) -> dt.datetime | None:
        """The next instant the window opens at or after ``now``, or None after the end date."""
        local = now.astimezone(self.tz)
        day = max(local.date(), self.start_date)
        while day <= self.end_date:
            opens = dt.datetime.combine(day, self.daily_start, tzinfo=self.tz)
            closes = dt.datetime.combine(day, self.daily_end, tzinfo=self.tz)
            if now < closes:
                return max(opens, now)
            day += dt.timedelta(days=1)
        return None


@dataclass(frozen=True)
class ScheduleSpec:
    """Daily sends: at ``send_time`` local; ``mode`` ``once`` (each recipient once per campaign,
    up to ``daily_cap`` a day) or ``repeat`` (every ``repeat_every_days`` days per recipient)."""

    send_time: dt.time = dt.time(8, 0)
    mode: str = "once"
    repeat_every_days: int = 0
    daily_cap: int = 0


@dataclass(frozen=True)
class CampaignSpec:
    """A validated campaign file. ``text`` is NFC; ``text_sha256`` is its recorded hash."""

    id: str
    name: str
    theme: str
    source: Source
    text: str
    text_sha256: str
    unaccented: bool
    gsm_safe: bool
    window: Window
    schedule: ScheduleSpec
    channels: tuple[Channel, ...]
    lists: tuple[str, ...]
    list_name: str
    pricing: dict[str, dict[str, float]]
    district_by_file: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    #: the ``[carriers]`` section (outreach.carriers.plan.CarrierPlan), None when absent
    carriers: Any = None
    #: the ``[report]`` section: the official results report's fixed parts (Decree 30/2020/NĐ-CP:
    #: number, date, agency and its superior, place, addressee, signer, Nơi nhận), NFC text,
    #: ``date`` as ISO; only the keys the file gives (:data:`REPORT_KEYS`)
    report: dict[str, Any] = field(default_factory=dict)

    def list_files(self) -> list[Path]:
        """The recipient files the campaign targets, globs expanded relative to its file."""
        base = Path(self.file).parent if self.file else Path.cwd()
        out: list[Path] = []
        for pattern in self.lists:
            p = Path(pattern)
            full = p if p.is_absolute() else base / p
            # normpath: "campaigns/../recipients/x.csv" is named "recipients/x.csv" in messages
            matches = sorted(Path(os.path.normpath(m)) for m in nfc_glob(str(full)))
            if not matches:
                raise CampaignError(self.file or "<campaign>", "recipients.lists",
                                    _("no file matches {pattern!r}").format(pattern=pattern))
            out.extend(m for m in matches if m not in out)
        # file names compared in NFC: a list made on macOS is named in NFD on disk, its
        # district_by_file key is typed in NFC (issue #24)
        names = {nfc_name(p) for p in out}
        for key in self.district_by_file:
            if key not in names:
                raise CampaignError(self.file or "<campaign>", f'recipients.district_by_file."{key}"',
                                    _("no list file is named {key!r} (files: {files})").format(
                                        key=key, files=", ".join(sorted(names))))
        return out

    def price_per_segment(self, channel: str, carrier: str | None) -> float:
        """VND per segment for ``channel`` and ``carrier`` (falls back to the channel default)."""
        table = self.pricing.get(channel, {})
        if carrier and carrier in table:
            return float(table[carrier])
        return float(table.get("default", 0.0))

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def channel(self, name: str) -> Channel:
        for ch in self.channels:
            if ch.channel == name:
                return ch
        raise KeyError(name)


def nfc_name(path: str | Path) -> str:
    """A file's name (last part of ``path``) in NFC: how file names are compared and shown
    (a file made on macOS has an NFD name on disk)."""
    return unicodedata.normalize("NFC", Path(path).name)


def nfc_glob(pattern: str) -> list[str]:
    """``glob.glob(pattern)``, with names compared in NFC: also the files whose NFC path
    matches the NFC pattern, whatever form their names have on disk (a list made on macOS is
    named in NFD). Returned as on disk, so they can be opened. ``**`` is not walked."""
    import fnmatch

    found = {os.path.normpath(m) for m in glob.glob(pattern)}
    if pattern.isascii() and found:
        return sorted(found)
    want = Path(unicodedata.normalize("NFC", pattern))
    parts = want.parts[1:] if want.anchor else want.parts
    roots = [want.anchor or "."]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt: list[str] = []
        for root in roots:
            if part in (".", ".."):
                nxt.append(os.path.join(root, part))
                continue
            try:
                entries = os.listdir(root)
            except OSError:
                continue
            for entry in entries:
                if entry.startswith(".") and not part.startswith("."):
                    continue
                if fnmatch.fnmatchcase(unicodedata.normalize("NFC", entry), part):
                    full = os.path.join(root, entry)
                    if last or os.path.isdir(full):
                        nxt.append(full)
        roots = nxt
    found.update(os.path.normpath(r) for r in roots if os.path.isfile(r))
    return sorted(found)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (dt.date, dt.time)):
        return obj.isoformat()
    return obj


def resolve(ref: str, campaigns_dir: str | Path = "campaigns") -> Path:
    """A campaign file from a path or an id (``campaigns/<id>.toml``)."""
    p = Path(ref)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise CampaignError(p, None, _("file not found"))
        return p
    candidate = Path(campaigns_dir) / f"{ref}.toml"
    if candidate.exists():
        return candidate
    raise CampaignError(ref, None, _("no campaign file {path} (give a path or an id)").format(
        path=candidate))


def load(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign file. Raises :class:`CampaignError` naming file and field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CampaignError(path, None, _("file not found")) from None
    except UnicodeDecodeError as exc:
        raise CampaignError(path, None, _("not UTF-8 ({error} at byte {byte})").format(
            error=_(_DECODE_REASONS.get(exc.reason, exc.reason)), byte=exc.start)) from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(path, None, _("not valid TOML: {error}").format(
            error=_toml_message(str(exc)))) from None
    return parse(raw, file=str(path))


#: Python's UTF-8 decoding reasons, translated where shown.
_DECODE_REASONS: dict[str, str] = {
    "invalid continuation byte": N_("invalid continuation byte"),
    "invalid start byte": N_("invalid start byte"),
    "unexpected end of data": N_("unexpected end of data"),
}
#: tomllib's messages (Python 3.11–3.13: "reason (at line N, column M)"), translated where shown.
_TOML_MESSAGES: dict[str, str] = {
    "Cannot overwrite a value": N_("Cannot overwrite a value"),
    "Expected '=' after a key in a key/value pair": N_("Expected '=' after a key in a key/value pair"),
    "Expected ']' at the end of a table declaration": N_("Expected ']' at the end of a table declaration"),
    "Expected ']]' at the end of an array declaration": N_("Expected ']]' at the end of an array declaration"),
    "Invalid date or datetime": N_("Invalid date or datetime"),
    "Invalid initial character for a key part": N_("Invalid initial character for a key part"),
    "Invalid statement": N_("Invalid statement"),
    "Invalid value": N_("Invalid value"),
    "Unclosed array": N_("Unclosed array"),
    "Unclosed inline table": N_("Unclosed inline table"),
    "Unterminated string": N_("Unterminated string"),
}
_TOML_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Cannot declare (?P<x>.+) twice"), N_("Cannot declare {x} twice")),
    (re.compile(r"Expected (?P<x>'.*')"), N_("Expected {x}")),
    (re.compile(r"Found invalid character (?P<x>'.*')"), N_("Found invalid character {x}")),
    (re.compile(r"Illegal character (?P<x>'.*')"), N_("Illegal character {x}")),
    (re.compile(r"Duplicate inline table key (?P<x>'.*')"), N_("Duplicate inline table key {x}")),
)
_TOML_WHERE = re.compile(r"^(?P<msg>.*?) \((?:at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$")


def _toml_message(text: str) -> str:
    """A tomllib error in the interface language: ``Invalid value (at line 3, column 8)`` →
    ``Giá trị không hợp lệ (tại dòng 3, cột 8)``; a message not known here is kept as it is."""
    m = _TOML_WHERE.match(text)
    msg = m.group("msg") if m else text
    found = _TOML_MESSAGES.get(msg)
    if found is not None:
        msg = _(found)
    else:
        for pat, msgid in _TOML_PATTERNS:
            if pm := pat.fullmatch(msg):
                msg = _(msgid).format(x=pm.group("x"))
                break
    if m is None:
        return msg
    if m.group("line"):
        return msg + " " + _("(at line {line}, column {column})").format(
            line=m.group("line"), column=m.group("col"))
    return msg + " " + _("(at end of document)")


def parse(raw: dict[str, Any], *, file: str = "<campaign>") -> CampaignSpec:
    r = _Reader(raw, file)
    cid = r.str("id")
    if not ID_RE.match(cid):
        r.fail("id", _("must be lowercase letters, digits and dashes (2–63 characters)"))
    src = r.table("source")
    source = Source(document=r.str("document", src, "source"), issuer=r.str("issuer", src, "source"),
                    date=r.date("date", src, "source"), section=r.str("section", src, "source"),
                    title=r.str("title", src, "source", default=""))
    msg = r.table("message")
    text = r.str("text", msg, "message")
    if text != text.strip():
        r.fail("message.text", _("has leading or trailing whitespace"))
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    recorded = r.str("sha256", msg, "message", default="")
    actual = textmod.text_sha256(text)
    if not recorded:
        r.fail("message.sha256", _("missing: record the hash of the approved text ({hash})").format(
            hash=actual))
    if recorded.lower() != actual:
        r.fail("message.sha256", _(
            "does not match the message text: the text was edited after approval (recorded "
            "{recorded}…, text hashes to {actual}…); review the text and record the new hash to "
            "approve it").format(recorded=recorded[:12], actual=actual[:12]))
    try:
        textmod.placeholders(text)
    except ValueError as exc:
        r.fail("message.text", str(exc))

    win = r.table("window")
    tzname = r.str("timezone", win, "window", default="Asia/Ho_Chi_Minh")
    try:
        ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        r.fail("window.timezone", _("unknown time zone {name!r}").format(name=tzname))
    window = Window(
        start_date=r.date("start_date", win, "window"), end_date=r.date("end_date", win, "window"),
        daily_start=r.time("daily_start", win, "window", default=dt.time(7, 0)),
        daily_end=r.time("daily_end", win, "window", default=dt.time(22, 0)), timezone=tzname,
        key_dates=tuple(r.dates("key_dates", win, "window")),
        lateness_limit_minutes=r.int("lateness_limit_minutes", win, "window", default=120, minimum=0))
    if window.end_date < window.start_date:
        r.fail("window.end_date", _("is before window.start_date"))
    if window.daily_end <= window.daily_start:
        r.fail("window.daily_end", _("must be after window.daily_start"))
    for d in window.key_dates:
        if not window.start_date <= d <= window.end_date:
            r.fail("window.key_dates", _("{date} is outside the campaign dates").format(
                date=d.isoformat()))

    sch = r.table("schedule", required=False)
    schedule = ScheduleSpec(
        send_time=r.time("send_time", sch, "schedule", default=dt.time(8, 0)),
        mode=r.choice("mode", sch, "schedule", ("once", "repeat"), default="once"),
        repeat_every_days=r.int("repeat_every_days", sch, "schedule", default=0, minimum=0),
        daily_cap=r.int("daily_cap", sch, "schedule", default=0, minimum=0))
    if schedule.mode == "repeat" and schedule.repeat_every_days < 1:
        r.fail("schedule.repeat_every_days", _("must be at least 1 when mode is 'repeat'"))
    if not window.daily_start <= schedule.send_time < window.daily_end:
        r.fail("schedule.send_time", _("is outside the daily send window"))

    chans_raw = raw.get("channels")
    if not isinstance(chans_raw, list) or not chans_raw:
        r.fail("channels", _("must list at least one [[channels]] table"))
    channels = []
    for i, ch in enumerate(chans_raw):
        where = f"channels[{i}]"
        if not isinstance(ch, dict):
            r.fail(where, _("must be a table"))
        name = r.choice("channel", ch, where, CHANNELS)
        sender = r.str("sender", ch, where, default="") or None
        if sender and name == "sms" and not SENDER_RE.match(sender):
            r.fail(f"{where}.sender", _("an SMS sender ID (brandname) is at most 11 characters, "
                   "letters without diacritics, digits, space . - _ &"))
        unit = r.str("rate_unit", ch, where, default="") or None
        if unit not in (None, "messages", "segments"):
            r.fail(f"{where}.rate_unit", _("must be 'messages' or 'segments'"))
        tfields = ch.get("template_fields", {})
        if not isinstance(tfields, dict) or not all(isinstance(v, str) for v in tfields.values()):
            r.fail(f"{where}.template_fields", _("must be a table of strings"))
        channels.append(Channel(
            channel=name, sender=sender, gateway=r.str("gateway", ch, where, default="") or None,
            unaccented=r.bool("unaccented", ch, where, default=False),
            gsm_safe=r.bool("gsm_safe", ch, where, default=False),
            rate_per_second=_positive(r, r.float("rate_per_second", ch, where, default=None),
                                      f"{where}.rate_per_second"),
            rate_unit=unit, concurrency=r.int("concurrency", ch, where, default=None, minimum=1),
            template_id=r.str("template_id", ch, where, default="") or None,
            template_fields={k: textmod.nfc(v) for k, v in tfields.items()},
            fallback_after_minutes=r.int("fallback_after_minutes", ch, where, default=60, minimum=1),
            brandname_template=textmod.nfc(r.str("brandname_template", ch, where, default=""))
            or None))
        tpl = channels[-1].brandname_template
        if tpl:
            # what this channel sends (its unaccented / GSM-safe variant) must match the
            # registered template, or the aggregator refuses every message (eSMS 146)
            sent = textmod.analyse(text, unaccented=r.bool("unaccented", msg, "message",
                                                           default=False) or channels[-1].unaccented,
                                   gsm_safe=r.bool("gsm_safe", msg, "message", default=False)
                                   or channels[-1].gsm_safe).text
            why = textmod.brandname_template_mismatch(tpl, sent)
            if why:
                r.fail(f"{where}.brandname_template", why)
        if name == "zalo" and not channels[-1].template_id:
            r.fail(f"{where}.template_id", _("a Zalo (ZNS) channel needs an approved template id"))
    if len({c.channel for c in channels}) != len(channels):
        r.fail("channels", _("a channel is listed twice"))

    rec = r.table("recipients")
    lists = rec.get("lists")
    if not isinstance(lists, list) or not lists or not all(isinstance(x, str) for x in lists):
        r.fail("recipients.lists", _("must be a non-empty list of file paths or globs"))
    dmap = rec.get("district_by_file", {})
    if not isinstance(dmap, dict) or not all(isinstance(v, str) for v in dmap.values()):
        r.fail("recipients.district_by_file", _("must be a table of file name = district name"))
    pricing_raw = raw.get("pricing", {})
    pricing: dict[str, dict[str, float]] = {}
    if not isinstance(pricing_raw, dict):
        r.fail("pricing", _("must be a table"))
    for chan, table in pricing_raw.items():
        if chan not in CHANNELS or not isinstance(table, dict):
            r.fail(f"pricing.{chan}", _("must be a table under one of {names}").format(
                names=", ".join(CHANNELS)))
        for carrier, price in table.items():
            if carrier != "default" and carrier not in CARRIERS:
                r.fail(f"pricing.{chan}.{carrier}", _("unknown carrier; known: {names}").format(
                    names=", ".join(CARRIERS)))
            if not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0:
                r.fail(f"pricing.{chan}.{carrier}", _("must be a price in VND per segment (≥ 0)"))
        pricing[chan] = {k: float(v) for k, v in table.items()}

    carriers = None
    if "carriers" in raw:
        from outreach.carriers import plan as carrier_plan

        carriers = carrier_plan.parse(r, r.table("carriers"), window)
    report = _report_section(r, raw)
    known = {"id", "name", "theme", "source", "message", "window", "schedule", "channels",
             "recipients", "pricing", "carriers", "report"}
    for key in raw:
        if key not in known:
            r.fail(key, _("unknown field (known: {names})").format(
                names=", ".join(repr(k) for k in sorted(known))))
    # a mistyped key inside a table (unacented = true) must not be ignored silently
    for table, keys in _TABLE_KEYS.items():
        _known(r, raw.get(table, {}), table, keys)
    for i, ch in enumerate(chans_raw):
        _known(r, ch, f"channels[{i}]", _CHANNEL_KEYS)
    return CampaignSpec(
        id=cid, name=textmod.nfc(r.str("name")), theme=textmod.nfc(r.str("theme", default="")),
        source=source, text=text, text_sha256=actual,
        unaccented=r.bool("unaccented", msg, "message", default=False),
        gsm_safe=r.bool("gsm_safe", msg, "message", default=False), window=window,
        schedule=schedule, channels=tuple(channels), lists=tuple(lists),
        list_name=r.str("list_name", rec, "recipients", default=cid), pricing=pricing,
        district_by_file={textmod.nfc(k): textmod.nfc(v) for k, v in dmap.items()}, file=file,
        carriers=carriers, report=report)


#: Keys of the ``[report]`` table (outreach.reporting.official.DocumentInfo): text fields, ``cc``
#: a list of lines (Nơi nhận), ``date`` a date.
REPORT_KEYS = ("number", "date", "superior", "org", "place", "to", "subject", "signer_authority",
               "signer_title", "signer_name", "cc")


def _report_section(r: "_Reader", raw: dict[str, Any]) -> dict[str, Any]:
    """The ``[report]`` table, checked: every key of :data:`REPORT_KEYS` optional, text in NFC,
    ``cc`` a list of text lines, ``date`` a date (kept as ISO text)."""
    if "report" not in raw:
        return {}
    table = r.table("report")
    _known(r, table, "report", set(REPORT_KEYS))
    out: dict[str, Any] = {}
    for key in REPORT_KEYS:
        if key not in table:
            continue
        if key == "date":
            out[key] = r.date("date", table, "report").isoformat()
        elif key == "cc":
            cc = table["cc"]
            if not isinstance(cc, list) or not all(isinstance(x, str) for x in cc):
                r.fail("report.cc", _("must be a list of text lines (Nơi nhận)"))
            out[key] = [textmod.nfc(x) for x in cc]
        else:
            out[key] = textmod.nfc(r.str(key, table, "report", default=""))
    return out


_TABLE_KEYS = {
    "source": {"document", "issuer", "date", "section", "title"},
    "message": {"text", "sha256", "unaccented", "gsm_safe"},
    "window": {"timezone", "start_date", "end_date", "key_dates", "daily_start", "daily_end",
               "lateness_limit_minutes"},
    "schedule": {"send_time", "mode", "repeat_every_days", "daily_cap"},
    "recipients": {"lists", "list_name", "district_by_file"},
}
_CHANNEL_KEYS = {"channel", "sender", "gateway", "unaccented", "gsm_safe", "rate_per_second",
                 "rate_unit", "concurrency", "template_id", "template_fields",
                 "fallback_after_minutes", "brandname_template"}


def _known(r: "_Reader", table: Any, prefix: str, keys: set[str]) -> None:
    if not isinstance(table, dict):
        return
    for key in table:
        if key not in keys:
            r.fail(f"{prefix}.{key}", _("unknown field (known: {names})").format(
                names=", ".join(repr(k) for k in sorted(keys))))


class _Reader:
    """Typed field access that raises CampaignError with the dotted field name."""

    def __init__(self, raw: dict[str, Any], file: str) -> None:
        self.raw, self.file = raw, file

    def fail(self, name: str, reason: str) -> None:
        raise CampaignError(self.file, name, reason)

    def _get(self, key: str, table: dict[str, Any] | None, prefix: str | None, default: Any) -> Any:
        table = self.raw if table is None else table
        name = f"{prefix}.{key}" if prefix else key
        if key not in table:
            if default is _MISSING:
                self.fail(name, _("is required"))
            return name, default, True
        return name, table[key], False

    def table(self, key: str, required: bool = True) -> dict[str, Any]:
        if key not in self.raw:
            if required:
                self.fail(key, _("is required"))
            return {}
        if not isinstance(self.raw[key], dict):
            self.fail(key, _("must be a table"))
        return self.raw[key]

    def str(self, key: str, table: dict[str, Any] | None = None, prefix: str | None = None,
            default: Any = None) -> Any:
        default = _MISSING if default is None else default
        name, v, missing = self._get(key, table, prefix, default)
        if missing:
            return v
        if not isinstance(v, str):
            self.fail(name, _("must be text, got {type}").format(type=type(v).__name__))
        if default is _MISSING and not v.strip():
            self.fail(name, _("must not be empty"))
        return v

    def bool(self, key: str, table: dict[str, Any], prefix: str, default: bool) -> bool:
        name, v, missing = self._get(key, table, prefix, default)
        if not missing and not isinstance(v, bool):
            self.fail(name, _("must be true or false"))
        return v

    def int(self, key: str, table: dict[str, Any], prefix: str, default: Any,
            minimum: int | None = None) -> Any:
        name, v, missing = self._get(key, table, prefix, default)
        if missing:
            return v
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(name, _("must be a whole number"))
        if minimum is not None and v < minimum:
            self.fail(name, _("must be at least {minimum}").format(minimum=minimum))
        return v

    def float(self, key: str, table: dict[str, Any], prefix: str, default: Any) -> Any:
        name, v, missing = self._get(key, table, prefix, default)
        if missing:
            return v
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            self.fail(name, _("must be a number ≥ 0"))
        return float(v)

    def choice(self, key: str, table: dict[str, Any], prefix: str, options: tuple[str, ...],
               default: Any = None) -> Any:
        v = self.str(key, table, prefix, default=default)
        if v not in options:
            self.fail(f"{prefix}.{key}", _("must be one of {options}, got {value!r}").format(
                options=", ".join(options), value=v))
        return v

    def date(self, key: str, table: dict[str, Any], prefix: str) -> dt.date:
        name, v, _missing = self._get(key, table, prefix, _MISSING)
        return self._as_date(name, v)

    def _as_date(self, name: str, v: Any) -> dt.date:
        if isinstance(v, dt.datetime):
            self.fail(name, _("must be a date (YYYY-MM-DD), not a date-time"))
        if isinstance(v, dt.date):
            return v
        if isinstance(v, str):
            try:
                return dt.date.fromisoformat(v)
            except ValueError:
                pass
        self.fail(name, _("must be a date written YYYY-MM-DD, got {value!r}").format(value=v))
        raise AssertionError

    def dates(self, key: str, table: dict[str, Any], prefix: str) -> list[dt.date]:
        name, v, missing = self._get(key, table, prefix, [])
        if not isinstance(v, list):
            self.fail(name, _("must be a list of dates"))
        return [self._as_date(name, x) for x in v]

    def time(self, key: str, table: dict[str, Any], prefix: str, default: dt.time) -> dt.time:
        name, v, missing = self._get(key, table, prefix, default)
        if missing or isinstance(v, dt.time):
            return v
        if isinstance(v, str) and re.fullmatch(r"\d{1,2}:\d{2}", v):
            h, m = map(int, v.split(":"))
            if 0 <= h < 24 and 0 <= m < 60:
                return dt.time(h, m)
        self.fail(name, _("must be a time of day HH:MM, got {value!r}").format(value=v))
        raise AssertionError


_MISSING = object()


def _positive(r: _Reader, value: float | None, name: str) -> float | None:
    if value is not None and value <= 0:
        r.fail(name, _("must be more than 0 messages (or segments) per second; leave it out to "
                       "use the gateway's own limit"))
    return value

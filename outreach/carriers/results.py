"""Reading the figures an operator reports (CSV/TSV/XLSX in the shapes operators send): day, area, subscribers messaged."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from outreach.carriers import areas
from outreach.i18n import _
from outreach.input.listfiles import ListFileError, _header_key, read_cells

#: Column -> headers it is read from (compared without case, accents or punctuation).
HEADERS: Final[dict[str, tuple[str, ...]]] = {
    "day": ("ngày", "ngày gửi", "ngày nhắn tin", "ngày nhắn", "ngày thực hiện", "thời gian",
            "date", "send date", "day"),
    "sent": ("số thuê bao", "số thuê bao đã nhắn", "số thuê bao được nhắn", "số thuê bao nhận tin",
             "số thuê bao nhận được tin", "tổng số thuê bao", "số lượng", "số lượng tin",
             "số lượng tin nhắn", "số tin", "số tin nhắn", "số tin đã gửi", "số tin nhắn đã gửi",
             "sản lượng", "sản lượng tin nhắn", "sl", "sent", "subscribers", "messaged",
             "subscribers messaged", "count", "total"),
    "delivered": ("thành công", "số tin thành công", "gửi thành công", "số thuê bao nhận thành công",
                  "delivered"),
    "area_code": ("mã", "mã địa bàn", "mã đơn vị", "mã đvhc", "mã đơn vị hành chính", "mã quận huyện",
                  "mã huyện", "mã xã", "mã phường xã", "area code", "code"),
    "area": ("địa bàn", "quận/huyện", "quận huyện", "huyện", "quận", "xã/phường", "phường/xã", "xã",
             "phường", "khu vực", "đơn vị hành chính", "area", "district", "commune", "ward"),
}
_FIELDS: Final = {_header_key(a): name for name, aliases in HEADERS.items() for a in aliases}
#: Without an exact header, a count column whose header starts with one of these words
#: ("Số thuê bao đã nhắn tin thành công trong ngày" is still a count of subscribers).
_SENT_PREFIXES: Final = ("so thue bao", "so luong", "so tin", "san luong", "tong so")
_TOTAL_WORDS: Final = ("tong", "tong cong", "cong", "total", "sum")
_DATE_FORMATS: Final = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y/%m/%d")
_SEARCH_ROWS: Final = 10


@dataclass(frozen=True)
class Figure:
    """One reported figure: ``day`` (Vietnam date), ``area`` (None: the operator gave none),
    ``sent`` subscribers messaged, ``delivered`` when given; ``source`` is ``file:line``."""

    day: dt.date
    area: areas.Area | None
    sent: int
    delivered: int | None
    source: str


@dataclass(frozen=True)
class Issue:
    """A row that cannot be used: file, line and reason (``str()`` as ``file:line: reason``)."""

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line else f"{self.file}: {self.reason}"


def _d(d: dt.date) -> str:
    from outreach.i18n import day

    return day(d)


def parse_day(value: str) -> dt.date | None:
    """``2024-07-30``, ``30/07/2024``, ``30/7/2024``, ``30-07-2024``, ``30.07.2024`` or an Excel
    date cell (``2024-07-30T00:00:00``) -> date; anything else None."""
    v = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T00:00(:00)?", v):
        v = v[:10]
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(v, fmt).date()
        except ValueError:
            continue
    return None


def parse_count(value: str) -> int | None:
    """``1234567``, ``1.234.567``, ``1,234,567``, ``1 234 567`` or an XLSX number -> int;
    negative, fractional or other text -> None."""
    v = value.strip().replace("\u00a0", " ")
    if re.fullmatch(r"\d+", v):
        return int(v)
    if re.fullmatch(r"\d{1,3}([.,  ]\d{3})+", v) and len(set(re.sub(r"\d", "", v))) == 1:
        return int(re.sub(r"\D", "", v))
    return None


def open_error(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be opened for reading, in the interface language (``file not
    found``, ``no permission to read it``, ``it is a folder, not a file``; another OS error:
    its own text), or None when it opens."""
    try:
        open(path, "rb").close()
    except FileNotFoundError:
        return _("file not found")
    except PermissionError:
        return _("no permission to read it")
    except IsADirectoryError:
        return _("it is a folder, not a file")
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def read(path: str | os.PathLike[str], *, scopes: list[areas.Area], start: dt.date, end: dt.date,
         sheet: str | None = None, encoding: str | None = None) -> tuple[list[Figure], list[Issue]]:
    """Read one operator's report: the header row (within the first 10 non-empty rows; title
    rows above it are skipped) needs a day and a count column (:data:`HEADERS`); an area code
    or name column is optional. Rows whose first cell says Tổng/Tổng cộng/Total are totals:
    checked against the sum of the rows, not imported.

    Every row is checked: a day between ``start`` and ``end`` (the broadcast dates, both
    included), a whole count ≥ 0, delivered ≤ sent, an area inside ``scopes`` (the areas
    requested), and no (day, area) twice. Returns (figures, issues); a file that cannot be read
    at all gives one issue and no figure."""
    file = os.fspath(path)
    figures: list[Figure] = []
    issues: list[Issue] = []
    why = open_error(path)
    if why is not None:
        return figures, [Issue(file, None, _("cannot open: {error}").format(error=why))]
    try:
        _read(file, read_cells(path, encoding=encoding, sheet=sheet), scopes, start, end,
              figures, issues)
    except ListFileError as exc:
        issues.append(Issue(exc.file, exc.line, exc.reason))
    return figures, issues


def _read(file: str, rows: Iterable[tuple[int, list[str]]], scopes: list[areas.Area],
          start: dt.date, end: dt.date, figures: list[Figure], issues: list[Issue]) -> None:
    cols: dict[str, int] | None = None
    first: tuple[int, list[str]] | None = None
    searched = 0
    seen: dict[tuple[dt.date, str], int] = {}
    totals: list[tuple[int, int]] = []
    for line, cells in rows:
        if cols is None:
            first = first or (line, cells)
            found: dict[str, int] = {}
            for i, c in enumerate(cells):
                name = _FIELDS.get(_header_key(c))
                if name and name not in found:
                    found[name] = i
            if "sent" not in found:
                for i, c in enumerate(cells):
                    if i not in found.values() and _header_key(c).startswith(_SENT_PREFIXES):
                        found["sent"] = i
                        break
            if "day" in found and "sent" in found:
                cols = found
                continue
            searched += 1
            if searched >= _SEARCH_ROWS:
                break
            continue

        def cell(name: str) -> str:
            i = cols.get(name, -1)  # type: ignore[union-attr]
            return cells[i] if 0 <= i < len(cells) else ""

        day_text = cell("day")
        lead = _header_key(cells[0]) if cells else ""
        if lead in _TOTAL_WORDS or _header_key(day_text) in _TOTAL_WORDS:
            n = parse_count(cell("sent"))
            if n is None:
                issues.append(Issue(file, line, _("total row: {value} is not a whole number").format(
                                    value=repr(cell("sent")))))
            else:
                totals.append((line, n))
            continue
        day = parse_day(day_text)
        if day is None:
            issues.append(Issue(file, line, _("day {value} is not a date (write 30/07/2024 "
                                "or 2024-07-30)").format(value=repr(day_text)) if day_text
                                else _("no day")))
            continue
        if not start <= day <= end:
            issues.append(Issue(file, line, _("day {day} is outside the broadcast dates "
                                "{start} – {end}").format(day=_d(day), start=_d(start),
                                                          end=_d(end))))
            continue
        sent_text = cell("sent")
        sent = parse_count(sent_text)
        if sent is None:
            issues.append(Issue(file, line, _("count {value} is not a whole number ≥ 0").format(
                                value=repr(sent_text))
                                if sent_text else _("no count of subscribers messaged")))
            continue
        delivered = None
        if cell("delivered"):
            delivered = parse_count(cell("delivered"))
            if delivered is None:
                issues.append(Issue(file, line, _("delivered {value} is not a whole number ≥ 0").format(
                                    value=repr(cell("delivered")))))
                continue
            if delivered > sent:
                issues.append(Issue(file, line, _("delivered ({delivered}) is more than sent "
                                    "({sent})").format(delivered=delivered, sent=sent)))
                continue
        area = None
        code, name = cell("area_code"), cell("area")
        if code or name:
            area = areas.find(code, scopes, day) if code else None
            if area is None and name:
                area = areas.find(name, scopes, day)
            if area is None:
                what = " / ".join(repr(x) for x in (code, name) if x)
                inside = ", ".join(f"{s.name} ({s.code})" for s in scopes)
                issues.append(Issue(file, line, _("area {area} is not an administrative unit of "
                                    "the requested area ({inside})").format(area=what,
                                                                           inside=inside)))
                continue
        key = (day, area.code if area else "")
        if key in seen:
            issues.append(Issue(file, line, _("{day} {area} already given on line {line}").format(
                                day=_d(day), area=area.name if area else "",
                                line=seen[key]).replace("  ", " ")))
            continue
        seen[key] = line
        figures.append(Figure(day, area, sent, delivered, f"{os.path.basename(file)}:{line}"))
    if cols is None:
        if first is None:
            issues.append(Issue(file, None, _("empty file: no header row")))
        else:
            heads = ", ".join(repr(c) for c in first[1] if c) or _("none")
            issues.append(Issue(file, first[0], _("no header with a day and a count column "
                                "(expected e.g. 'Ngày' and 'Số thuê bao'); headers seen: "
                                "{headers}").format(headers=heads)))
        return
    if not figures and not issues:
        issues.append(Issue(file, None, _("no figure under the header")))
    total = sum(f.sent for f in figures)
    for line, n in totals:
        if not issues and n != total:
            issues.append(Issue(file, line, _("total {total} does not equal the sum of the rows "
                                "({sum})").format(total=n, sum=total)))

"""Recipient list files as ward offices make them (report-style CSV/XLSX/XLS/ODS/HTML sheets), streamed as raw rows."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import html.parser
import itertools
import os
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

from outreach.i18n import N_, _

__all__ = ["HEADER_ALIASES", "ListFileError", "ListInfo", "RawRow", "SheetInfo", "read_list"]


@dataclass(slots=True)
class RawRow:
    """One recipient row, before phone normalisation.

    ``line`` is the 1-based physical line of the row's first line in a CSV/TSV file (a quoted
    field spanning lines does not shift later rows), or the row number in a workbook sheet
    (the row number Excel shows); the header is line 1 unless title rows precede it. Strings
    are NFC and stripped; an empty optional cell is None; ``phone`` is ``""`` when the cell is
    empty or missing. ``extra`` maps every other column's header to its value (cells past the
    header: ``"column N"``). ``sheet`` names the worksheet (None for text files).
    """

    file: str
    line: int
    phone: str
    name: str | None = None
    district: str | None = None
    ward: str | None = None
    zalo_user_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    sheet: str | None = None
    province: str | None = None


class ListFileError(Exception):
    """A list file that cannot be read: ``str()`` is ``"recipients/x.csv:12: reason"``
    (``"x.xlsx [sheet 'Phường 1']:12: reason"`` when a sheet is named).

    ``reason`` is in the interface language (translated where it is raised); ``kind`` says
    what a caller may act on: ``"fatal"`` (a damaged sheet or malformed file: never skipped
    for another sheet), ``"empty"`` (no row at all) or None."""

    def __init__(self, file: str, line: int | None, reason: str, sheet: str | None = None,
                 kind: str | None = None) -> None:
        super().__init__(file, line, reason, sheet, kind)  # all: rebuilt intact from a child process
        self.file = file
        self.line = line
        self.reason = reason
        self.sheet = sheet
        self.kind = kind

    def __str__(self) -> str:
        file = unicodedata.normalize("NFC", str(self.file))  # shown in NFC (macOS names: NFD)
        where = file if self.sheet is None else _("{file} [sheet {sheet!r}]").format(
            file=file, sheet=self.sheet)
        where = where if self.line is None else f"{where}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class SheetInfo:
    """What was found on one sheet (or in one text file, ``name`` None).

    ``header_line``: row of the header (its last row for a two-row header); ``columns``: RawRow
    field → header label it was read from; ``phone_columns_unused``: other phone-like columns
    (a fixed-line "Cố định" column beside "Di động"); ``rows``: data rows yielded; ``skipped``:
    rows recognised as not data (section, totals, signature, column numbering, repeated
    header) with the first few as (line, why) in ``skipped_examples``; ``note``: why a sheet was
    not read (no phone column, hidden)."""

    name: str | None
    header_line: int | None = None
    columns: dict[str, str] = field(default_factory=dict)
    phone_columns_unused: list[str] = field(default_factory=list)
    rows: int = 0
    skipped: int = 0
    skipped_examples: list[tuple[int, str]] = field(default_factory=list)
    note: str | None = None

    @property
    def read(self) -> bool:
        return self.header_line is not None


@dataclass
class ListInfo:
    """What :func:`read_list` found in one file: its format (``csv``, ``xlsx``, ``xls``,
    ``ods``, ``html``) and one :class:`SheetInfo` per sheet (one for a text file)."""

    file: str
    format: str = "csv"
    sheets: list[SheetInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"file": unicodedata.normalize("NFC", str(self.file)), "format": self.format,
                "sheets": [
            {"name": s.name, "header_line": s.header_line, "columns": s.columns,
             "phone_columns_unused": s.phone_columns_unused, "rows": s.rows,
             "skipped": s.skipped, "note": s.note} for s in self.sheets]}


# --- headers ---------------------------------------------------------------------------------

# RawRow field → header names it is read from (compared without case, accents or punctuation).
HEADER_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "phone": ("số điện thoại", "sđt", "sdt", "số đt", "điện thoại", "điện thoại di động", "di động",
              "số di động", "phone", "mobile", "phone number", "mobile number", "msisdn", "tel",
              "đt", "dđ", "đtdđ", "sđt di động", "điện thoại liên hệ", "số điện thoại liên hệ"),
    "name": ("họ tên", "họ và tên", "tên", "name", "full name", "họ và tên chủ hộ", "chủ hộ",
             "họ tên chủ hộ"),
    "district": ("quận/huyện", "huyện/quận", "quận/huyện/thị xã", "quận", "huyện", "thị xã",
                 "district", "quận/huyện/thị xã/thành phố"),
    # communal level: ward (phường), commune (xã), township (thị trấn), in any order
    "ward": ("phường/xã", "xã/phường", "phường", "xã", "thị trấn", "xã/thị trấn",
             "phường/thị trấn", "phường/xã/thị trấn", "xã/phường/thị trấn", "ward", "commune",
             "đơn vị hành chính cấp xã", "xã/phường/đặc khu"),
    "province": ("tỉnh", "tỉnh/thành phố", "tỉnh/tp", "tỉnh/thành", "province"),
    "zalo_user_id": ("zalo user id", "zalo id", "zalo_user_id"),
}
_NON_WORD: Final = re.compile(r"[\W_]+")
_FIELDS: Final = ("phone", "name", "district", "ward", "zalo_user_id", "province")


def _header_key(label: str) -> str:
    """Compare headers without accents, case, spacing or punctuation: "Số Điện-Thoại" → "so dien thoai"."""
    decomposed = unicodedata.normalize("NFD", label.replace("đ", "d").replace("Đ", "D"))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", bare.casefold()).strip()


_HEADER_FIELDS: Final[dict[str, str]] = {
    _header_key(alias): name for name, aliases in HEADER_ALIASES.items() for alias in aliases
}
# Without an exact phone header, a label that starts with a phone alias word for word
# ("SĐT liên hệ", "Số điện thoại (Zalo)") is a phone column; only for phone: "Tên đơn vị" is no name.
_PHONE_PREFIXES: Final = tuple(_header_key(a) + " " for a in HEADER_ALIASES["phone"])
# Words that make a phone column the mobile one, or a fixed-line one (used only when several
# phone columns exist: "Số điện thoại" over "Cố định | Di động").
_MOBILE_WORDS: Final = re.compile(r"\b(?:di dong|dd|dtdd|mobile|cell|zalo)\b")
_FIXED_WORDS: Final = re.compile(r"\b(?:co dinh|ban|landline|fixed|co quan|nha rieng)\b")
_STT_KEYS: Final = frozenset({"stt", "tt", "so tt", "so thu tu", "no", "#", "s tt"})
_HEADER_SEARCH_ROWS: Final = 30  # letterhead and title rows allowed above the header
_MANY_DIGITS: Final = re.compile(r"(?:\d[\s.\-]?){7}")


def _field_of(label: str) -> str | None:
    key = _header_key(label)
    found = _HEADER_FIELDS.get(key)
    if found is None and key.startswith(_PHONE_PREFIXES):
        found = "phone"
    return found


class _Columns:
    """Where each known field sits, and the labels of the other columns.

    ``labels`` are the column names (two-row headers already joined "top / sub"); ``parts``
    the (top, sub) of each, matched when the joined label is not a known header."""

    def __init__(self, labels: list[str], parts: list[tuple[str, str]] | None = None) -> None:
        self.labels = labels
        self.width = len(labels)
        self.fields: dict[str, int] = {}
        self.extra: list[tuple[int, str]] = []
        self.phone_unused: list[str] = []
        self.stt: int | None = None
        phones: list[tuple[int, int]] = []  # (rank, column)
        found: dict[int, str] = {}
        for i, label in enumerate(labels):
            # the sub-header first: "Quận/Huyện" under a group is a district, whatever the group
            name = _field_of(parts[i][1]) if parts is not None and parts[i][1] else None
            if name is None and label:
                name = _field_of(label)
            if name is None and parts is not None and parts[i][1]:
                name = _field_of(parts[i][0])
            if name == "phone" and _MANY_DIGITS.search(label):
                name = None  # "ĐT: 0292 3820 123" in a letterhead is not a header
            if name == "phone":
                key = _header_key(label)
                rank = 0 if _MOBILE_WORDS.search(key) else 2 if _FIXED_WORDS.search(key) else 1
                phones.append((rank, i))
            elif name is not None and name not in self.fields:
                self.fields[name] = i
                found[i] = name
        if phones:
            best = min(phones)[1]
            self.fields["phone"] = best
            found[best] = "phone"
            self.phone_unused = [labels[i] for _, i in sorted(phones, key=lambda p: p[1]) if i != best]
        seen: set[str] = set()
        for i, label in enumerate(labels):
            if i in found:
                continue
            if self.stt is None and _header_key(label) in _STT_KEYS:
                self.stt = i
            label = label or f"column {i + 1}"  # a key of ``extra`` (template fields): not translated
            if label in seen:
                label = f"{label} ({i + 1})"
            seen.add(label)
            self.extra.append((i, label))
        # Index of each RawRow field; -1 reads the "" sentinel that row() appends.
        (self.phone, self.name, self.district, self.ward, self.zalo_user_id,
         self.province) = (self.fields.get(f, -1) for f in _FIELDS)

    def used(self) -> dict[str, str]:
        return {f: self.labels[i] for f, i in sorted(self.fields.items(), key=lambda kv: kv[1])}

    def row(self, file: str, line: int, cells: list[str], sheet: str | None) -> RawRow:
        n, width = len(cells), self.width
        if n < width:
            extra = {label: cells[i] for i, label in self.extra if i < n}
            cells.extend([""] * (width - n))
        else:
            extra = {label: cells[i] for i, label in self.extra}
            for i in range(width, n):
                if cells[i]:
                    extra[f"column {i + 1}"] = cells[i]
        cells.append("")
        return RawRow(file, line, cells[self.phone], cells[self.name] or None, cells[self.district] or None,
                      cells[self.ward] or None, cells[self.zalo_user_id] or None, extra, sheet,
                      cells[self.province] or None)


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value).replace("\ufeff", "").strip()


# Rows of a report-style form that are not data, matched on the casefolded NFC text (with its
# diacritics: "Tổng cộng" is a total, "Tống Văn An" a person).
_FOOTER: Final = re.compile(
    r"^(?:tổng cộng|tổng số|tổng|cộng|người lập|lập biểu|người duyệt|người ký|xác nhận|tm\.|t/m"
    r"|thay mặt|chủ tịch|phó chủ tịch|trưởng ấp|trưởng khu vực|trưởng khóm|trưởng thôn"
    r"|trưởng khu phố|tổ trưởng|kế toán|thủ trưởng|nơi nhận|\(ký|ký tên|ký,)(?!\w)")
_DATE_LINE: Final = re.compile(r"\bngày\b.*\btháng\b.*\bnăm\b")
_NUMBERING: Final = re.compile(r"\(?\d{1,2}\)?")


def _numbering_row(values: list[str]) -> bool:
    """The "(1) (2) (3) …" or "1 2 3 …" row that forms print under the header."""
    if len(values) < 3 or not all(_NUMBERING.fullmatch(v) for v in values):
        return False
    nums = [int(v.strip("()")) for v in values]
    return nums == list(range(nums[0], nums[0] + len(nums)))


class _Sheet:
    """Header detection and row classification for one sheet (or one text file).

    Rows go through :meth:`feed` in order; ``merges`` are merged ranges (0-based first row,
    first column, last row, last column) whose value fills every cell they cover below the
    header (a district cell merged over its rows belongs to each of them)."""

    def __init__(self, file: str, info: SheetInfo, merges: list[tuple[int, int, int, int]]) -> None:
        self.file, self.info, self.sheet = file, info, info.name
        self.columns: _Columns | None = None
        self.pending: list[tuple[int, list[str]]] = []  # non-empty rows before the header
        self.first: tuple[int, list[str]] | None = None
        self.header_cells: list[str] = []
        self.sub_checked = False
        self.footer = False
        # vertical merges only: (first row, last row, first col, last col), by first row
        self.merges = sorted((r0, r1, c0, c1) for r0, c0, r1, c1 in merges if r1 > r0)
        self.h_merges = [(r0, c0, c1) for r0, c0, r1, c1 in merges if c1 > c0]
        self.next_merge = 0
        self.active: list[tuple[int, int, int, int, str]] = []  # r1, c0, c1, r0, value
        self.active_end = 1 << 62  # the first row after which an active merge ends

    # -- merges
    def _fill(self, line: int, cells: list[str]) -> list[str]:
        """Fill cells covered by a vertical merge with the merge's value (rows 1-based)."""
        r = line - 1
        merges = self.merges
        while self.next_merge < len(merges) and merges[self.next_merge][0] <= r:
            r0, r1, c0, c1 = merges[self.next_merge]
            self.next_merge += 1
            if r1 >= r:
                value = cells[c0] if r0 == r and c0 < len(cells) else ""
                self.active.append((r1, c0, c1, r0, value))
                self.active_end = min(self.active_end, r1)
        if self.active:
            if self.active_end < r:
                self.active = [m for m in self.active if m[0] >= r]
                self.active_end = min((m[0] for m in self.active), default=1 << 62)
            for r1, c0, c1, r0, value in self.active:
                if r0 == r or not value:
                    continue
                if len(cells) <= c1:
                    cells.extend([""] * (c1 + 1 - len(cells)))
                for c in range(c0, c1 + 1):
                    if not cells[c]:
                        cells[c] = value
        return cells

    # -- header
    def _try_header(self) -> bool:
        line, cells = self.pending[-1]
        filled = [c for c in cells if c]
        if any(_MANY_DIGITS.search(c) for c in filled):
            return False  # a letterhead line with the agency's number, or data
        cand = _Columns(cells)
        if "phone" not in cand.fields:
            return False
        if len(filled) == 1 and _header_key(filled[0]) not in _HEADER_FIELDS:
            return False  # a title such as "Số điện thoại của người dân khu vực 3"
        joined = self._top_header(line, cells, cand)
        if joined is not None:
            cand, cells = joined
            self.sub_checked = True  # the row above was the first header row: no third one
        self._use(line, cells, cand)
        return True

    def _use(self, line: int, labels: list[str], cand: _Columns) -> None:
        self.columns = cand
        self.header_cells = labels
        self.info.header_line = line
        self.info.columns = cand.used()
        self.info.phone_columns_unused = cand.phone_unused

    def _top_header(self, line: int, cells: list[str],
                    alone: _Columns) -> tuple[_Columns, list[str]] | None:
        """The header joined with the row just above it when that row is its first header row:
        "Họ và tên" and "Quận/Huyện" merged down two rows over a group ("Liên hệ") whose
        sub-headers ("Di động | Cố định") are the first row with a phone column. None when the
        row above adds no known column (a title, a letterhead)."""
        if len(self.pending) < 2:
            return None
        top_line, top = self.pending[-2]
        if top_line != line - 1 or sum(1 for c in top if c) < 2:
            return None
        if any(_MANY_DIGITS.search(c) for c in top) or _numbering_row([c for c in top if c]):
            return None
        labels, parts, _under = self._join(top, cells, top_line)
        cand = _Columns(labels, parts)
        if "phone" not in cand.fields or not set(alone.fields) < set(cand.fields):
            return None
        return cand, labels

    def _join(self, top: list[str], cells: list[str],
              top_line: int) -> tuple[list[str], list[tuple[str, str]], bool]:
        """Labels of a header over two rows (``top`` on ``top_line``, ``cells`` below it): a
        group label merged across columns ("Số điện thoại" over "Di động | Cố định") joins each
        sub-header ("Số điện thoại / Di động"), a label with nothing under it stays alone
        ("Họ và tên" merged down both rows), a sub-header with nothing above too. Returns the
        labels, the (top, sub) of each, and whether the second row is a header row: some
        sub-header sits under a group or alone under an empty top cell."""
        width = max(len(top), len(cells))
        top = top + [""] * (width - len(top))
        sub = cells + [""] * (width - len(cells))
        spans = {c: c0 for r0, c0, c1 in self.h_merges if r0 == top_line - 1
                 for c in range(c0, c1 + 1)}
        under_group = False
        parts: list[tuple[str, str]] = []
        for i in range(width):
            t = top[i]
            own = _field_of(sub[i]) if sub[i] else None
            if i in spans:
                t = top[spans[i]]
            elif (not t and sub[i] and i > 0 and sub[i - 1] and parts and parts[-1][0]
                  and not spans and own in (None, "phone")):
                # no merge information (CSV): the group label is to the left, but a known
                # column of its own ("Quận/Huyện" next to "Số điện thoại / Cố định") is not in it
                t = parts[-1][0]
            if sub[i] and t and (i in spans or not top[i]):
                under_group = True
            elif own is not None and not top[i] and not _MANY_DIGITS.search(sub[i]):
                under_group = True  # "Họ và tên" in the second row only, nothing above it
            parts.append((t, sub[i]))
        labels = [f"{t} / {s}" if t and s and t != s else (t or s) for t, s in parts]
        return labels, parts, under_group

    def _sub_header(self, line: int, cells: list[str]) -> bool:
        """Join a second header row ("Cố định | Di động" under a merged "Số điện thoại", or
        "Họ và tên" in the second row only)."""
        if any(_MANY_DIGITS.search(c) for c in cells) or _numbering_row([c for c in cells if c]):
            return False
        labels, parts, under_group = self._join(self.header_cells, cells,
                                                self.info.header_line or 0)
        if not under_group:
            return False
        cand = _Columns(labels, parts)
        if "phone" not in cand.fields:
            return False
        self._use(line, labels, cand)
        return True

    # -- data
    def _skip(self, line: int, why: str) -> None:
        self.info.skipped += 1
        if len(self.info.skipped_examples) < 5:
            self.info.skipped_examples.append((line, why))

    def _not_data(self, phone: str, cells: list[str], original: list[str]) -> str | None:
        """Why a row without a number is not a recipient row, or None (a data row)."""
        cols = self.columns
        assert cols is not None
        values = [v for v in original if v]
        if not values:
            return "empty"
        if _numbering_row(values):
            return _("column numbering")
        if any(_FOOTER.match(v.casefold()) or _DATE_LINE.search(v.casefold()) for v in values[:3]):
            self.footer = True
            return _("totals or signature")
        if cells[: len(self.header_cells)] == self.header_cells:
            return _("repeated header")
        if self.footer:
            return _("signature")
        stt = cols.stt
        own = [i for i, v in enumerate(original) if v and i != stt]
        # "Khu vực 1" stands alone at the left or in the name column; a lone note in another
        # column ("Ghi chú": "trống") is a person without a number, reported as such
        alone_at = (0, cols.name, 1 if stt == 0 else 0)
        if (len(own) <= 1 and not phone and (not own or own[0] in alone_at)
                and (stt is None or stt >= len(original) or not original[stt].isdigit())):
            return _("section")
        return None

    def feed(self, line: int, raw_cells: list[str], clean: bool = False) -> RawRow | None:
        cells = raw_cells if clean else [c.strip() if c.isascii() else _nfc(c) for c in raw_cells]
        cols = self.columns
        if cols is None:
            if not any(cells):
                return None
            self.first = self.first or (line, cells)
            self.pending.append((line, cells))
            if self._try_header():
                self.pending.clear()
            return None
        if self.merges:
            original = list(cells)
            cells = self._fill(line, cells)
        else:
            original = cells
        if not any(cells):
            return None
        if not self.sub_checked:
            self.sub_checked = True
            if self._sub_header(line, cells):
                return None
            cols = self.columns
        phone = cells[cols.phone] if cols.phone < len(cells) else ""
        if not _MANY_DIGITS.search(phone):
            why = self._not_data(phone, cells, original)
            if why is not None:
                if why != "empty":
                    self._skip(line, why)
                return None
        elif self.footer:
            self.footer = False  # a list may go on after a subtotal
        self.info.rows += 1
        if clean and len(cells) < cols.width:
            # a workbook row ends at its last value: every header column is still in ``extra``
            cells.extend([""] * (cols.width - len(cells)))
        return cols.row(self.file, line, cells, self.sheet)

    def searching(self) -> bool:
        return self.columns is None and len(self.pending) < _HEADER_SEARCH_ROWS

    def missing_header(self) -> ListFileError:
        if self.first is None:
            return ListFileError(self.file, None, _("empty file: no header row"), self.sheet,
                                 kind="empty")
        seen = ", ".join(repr(c) for c in self.first[1] if c) or _("none")
        return ListFileError(self.file, self.first[0], _(
            "no phone column (expected a header such as 'Số điện thoại', 'SĐT' or 'phone'); "
            "headers seen: {seen}").format(seen=seen), self.sheet)


def _sheet_rows(file: str, info: SheetInfo, records: Iterable[tuple[int, list[str]]],
                merges: list[tuple[int, int, int, int]] | None = None,
                clean: bool = False) -> Iterator[RawRow]:
    """Rows of one sheet; raises the "no phone column" ListFileError when no header is found.
    ``clean``: the records' cells are already stripped NFC strings."""
    sheet = _Sheet(file, info, merges or [])
    feed = sheet.feed
    for line, cells in records:
        if sheet.columns is None and not sheet.searching():
            break
        row = feed(line, cells, clean)
        if row is not None:
            yield row
    if sheet.columns is None:
        raise sheet.missing_header()
# --- text files ------------------------------------------------------------------------------

_PREFIX_BYTES: Final = 64 * 1024  # bounded prefix read for sniffing the encoding
_CHUNK_BYTES: Final = 1024 * 1024
_SNIFF_LINES: Final = 20
_DELIMITERS: Final = ",;\t"
_BOMS: Final = (  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_ALLOWED_CP1258_CATEGORIES: Final = frozenset({"Ll", "Lu", "Lt", "Lo", "Mn", "Zs", "Pd", "Pi", "Pf", "Po", "Ps",
                                               "Pe", "Sc", "Sm", "So", "No"})


def _looks_like_cp1258(head: bytes) -> bool:
    """Decodes cleanly as Windows-1258 and reads as text: no control characters, and every
    non-ASCII character a letter, a combining tone mark or ordinary punctuation."""
    try:
        text = head.decode("cp1258")
    except UnicodeDecodeError:
        return False
    for ch in set(text):
        if ch in "\t\r\n":
            continue
        if ch < " " or ch == "\x7f":
            return False
        if ch > "\x7f" and unicodedata.category(ch) not in _ALLOWED_CP1258_CATEGORIES:
            return False
    return True


_BOM_FAMILIES: Final[dict[str, str]] = {
    "utf-8": "utf-8", "utf-8-sig": "utf-8", "utf-16": "utf-16", "utf-16-le": "utf-16",
    "utf-16-be": "utf-16", "utf-32": "utf-32", "utf-32-le": "utf-32", "utf-32-be": "utf-32",
}


def _forced_encoding(codec: str, head: bytes) -> tuple[str, int]:
    """A forced Unicode codec still honours a BOM of its own family (and skips it)."""
    family = _BOM_FAMILIES.get(codec)
    if family is None:
        return codec, 0
    for bom, name in _BOMS:
        if name.startswith(family) and head.startswith(bom):
            return name, len(bom)
    return {"utf-8-sig": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}.get(codec, codec), 0


def _choose_encoding(file: str, head: bytes, forced: str | None) -> tuple[str, int]:
    """(codec, BOM length): forced if given, else BOM, else strict UTF-8, else Windows-1258."""
    if forced:
        try:
            codec = codecs.lookup(forced).name
        except LookupError:
            raise ListFileError(file, None, _("unknown encoding {name!r}").format(
                name=forced)) from None
        return _forced_encoding(codec, head)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, len(bom)
    if b"\x00" in head:
        # Excel always writes a BOM in "Unicode Text"; without one, NULs mean UTF-16 or binary.
        sample = head[:4096]
        odd, even = sample[1::2].count(0), sample[0::2].count(0)
        if max(odd, even) > len(sample) // 4:
            return ("utf-16-le" if odd > even else "utf-16-be"), 0
        raise ListFileError(file, None, _("binary file: not CSV, TSV or XLSX"), kind="fatal")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _PREFIX_BYTES)
    except UnicodeDecodeError as exc:
        # Vietnamese text in Windows-1258 practically never forms valid UTF-8 sequences: a file
        # whose first part is UTF-8 with accents and then has a bad byte is a damaged UTF-8
        # file, and decoding it as Windows-1258 would garble every name
        utf8_before = not head[: exc.start].isascii()
        if not utf8_before and _looks_like_cp1258(head):
            return "cp1258", 0
        line = head[: exc.start].count(b"\n") + 1
        raise ListFileError(file, line, _undecodable("utf-8", exc), kind="fatal") from None
    return "utf-8", 0


#: Messages of the standard library's csv and zipfile modules that reach the operator inside
#: a refusal ("malformed CSV … (unexpected end of data)"), translated where shown.
_LIBRARY_MESSAGES: Final[dict[str, str]] = {
    "unexpected end of data": N_("unexpected end of data"),
    "File is not a zip file": N_("File is not a zip file"),
    "newline inside string": N_("newline inside string"),
    "line contains NUL": N_("line contains NUL"),
}
_EXPECTED_AFTER: Final = re.compile(r"'(.)' expected after '(.)'")


def _library_message(exc: BaseException) -> str:
    """The text of a csv or zipfile exception in the interface language (others as they are)."""
    text = str(exc)
    found = _LIBRARY_MESSAGES.get(text)
    if found is not None:
        return _(found)
    if m := _EXPECTED_AFTER.fullmatch(text):
        return _("{delimiter!r} expected after {quote!r}").format(
            delimiter=m.group(1), quote=m.group(2))
    return text


def _undecodable(codec: str, exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start : exc.end].hex(" ").upper()
    return _("cannot decode as {codec} (bytes {bad}): save the file as 'CSV UTF-8' or give its "
             "encoding (e.g. encoding='cp1258')").format(codec=codec, bad=bad)


def _decoded_lines(f: BinaryIO, codec: str, skip: int, newline: str, file: str) -> Iterator[str]:
    """Physical lines (with their ends) decoded incrementally; a decoding error or a U+FFFD in
    the file raises ListFileError naming the line, after every earlier line has been yielded."""
    f.seek(skip)
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    lines_done = 0  # lines fully yielded; the partial line in `tail` is line lines_done + 1
    tail = ""
    while True:
        chunk = f.read(_CHUNK_BYTES)
        final = not chunk
        error: str | None = None
        try:
            text = tail + decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            text = tail + exc.object[: exc.start].decode(codec, errors="ignore")
            error = _undecodable(codec, exc)
        if (bad := text.find("\ufffd")) >= 0:
            text = text[:bad]
            error = _("contains U+FFFD (a character already lost by an earlier wrong-encoding "
                      "conversion): fix the name in the source file")
        lines = text.split(newline)
        tail = lines.pop()
        for line in lines:
            yield line + newline
        lines_done += len(lines)
        if error is not None:
            raise ListFileError(file, lines_done + 1, error, kind="fatal")
        if final:
            if tail:
                yield tail
            return


def _delimiter(sample: list[str]) -> str:
    """The separator: the one that splits the sample's lines most consistently (title lines
    above the header have none, or fewer), as Excel in any locale writes it."""
    lines = [line for line in sample if line.strip()]
    header = next(iter(lines), "")
    try:
        found = csv.Sniffer().sniff("".join(sample), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        found = ""
    scores: dict[str, int] = {}
    for d in _DELIMITERS:
        counts = Counter(n for n in (line.count(d) for line in lines) if n)
        scores[d] = max(counts.values()) if counts else 0
    best = max(_DELIMITERS, key=lambda d: (scores[d], d == found))
    if found and found in header and scores[found] >= scores[best]:
        return found
    if scores[best]:
        return best
    counts_h = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts_h, key=counts_h.__getitem__)
    return best if counts_h[best] else ","


_SEP_LINE: Final = re.compile(r"\s*sep=(.)\s*", re.IGNORECASE)


def _csv_records(file: str, lines: Iterator[str]) -> Iterator[tuple[int, list[str]]]:
    sample = list(itertools.islice(lines, _SNIFF_LINES))
    start = 1
    # Excel writes "sep=;" as the first line when asked to; it names the separator
    if sample and (m := _SEP_LINE.fullmatch(sample[0])):
        delimiter = m.group(1)
        sample.pop(0)
        start = 2
    else:
        delimiter = _delimiter(sample)
    # strict: an unclosed quote must be an error, not the rest of the file swallowed into one cell
    reader = csv.reader(itertools.chain(sample, lines), delimiter=delimiter, strict=True)
    offset = start - 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = _("malformed CSV in the row starting here ({error}): check its quotes").format(
                error=_library_message(exc))
            raise ListFileError(file, start, reason, kind="fatal") from None
        yield start, cells
        start = reader.line_num + 1 + offset


def _text_records(file: str, f: BinaryIO, head: bytes, encoding: str | None) -> Iterator[tuple[int, list[str]]]:
    codec, skip = _choose_encoding(file, head, encoding)
    head_text = head[skip:].decode(codec, errors="ignore")
    newline = "\r" if "\r" in head_text and "\n" not in head_text else "\n"  # classic Mac files
    yield from _csv_records(file, _decoded_lines(f, codec, skip, newline, file))


# --- workbooks (XLSX, XLS, ODS) --------------------------------------------------------------

_EXACT_FLOAT_LIMIT: Final = 1e15  # Excel keeps 15 significant digits


def _cell_text(value: object) -> str:
    """A workbook cell value as the text a person sees: 912345678.0 → "912345678"; a float past
    Excel's 15-digit precision as Excel's General format shows it ("1.23457E+19")."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _EXACT_FLOAT_LIMIT:
            return str(int(value))
        if abs(value) >= _EXACT_FLOAT_LIMIT:
            return f"{value:.5E}".replace("E+0", "E+")
        return format(value, ".15G")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


# --- XLSX, streamed --------------------------------------------------------------------------
#
# An .xlsx sheet is read as it is decompressed, with the standard library's expat parser: one
# window of rows in memory at a time, whatever the sheet's size (python-calamine, used for .xls
# and .ods, holds a whole sheet: about 170 MB for 500,000 rows of six columns). Merged ranges
# come after the rows in the sheet XML (ECMA-376 Part 1, 18.3.1.55 mergeCells), so they are
# collected by the bounded byte scan that already looks for formulas without saved values,
# before the rows are read. Cell values come out as python-calamine gives them (shared and
# inline strings with rich-text runs and without phonetic runs, _xHHHH_ escapes, booleans,
# error cells empty, numbers, date-formatted numbers as dates); tests/test_listfiles.py
# compares the two readers on the same workbooks.

_MAIN_NS: Final = ("http://schemas.openxmlformats.org/spreadsheetml/2006/main",
                   "http://purl.oclc.org/ooxml/spreadsheetml/main")  # transitional, strict
_REL_NS: Final = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships",
                  "http://purl.oclc.org/ooxml/officeDocument/relationships")
_PKG_REL_NS: Final = "http://schemas.openxmlformats.org/package/2006/relationships"
# a formula cell whose value was never computed: <c r="C5"><f>…</f></c> or an empty <v/>
_UNCACHED: Final = re.compile(rb'<c\b[^>]*?\br="([A-Z]{1,3}[0-9]{1,7})"[^>]*>\s*<f\b[^>]*(?:/>|>[^<]*</f>)'
                              rb'\s*(?:<v\s*/>|<v>\s*</v>)?\s*</c>')
_MERGE_CELL: Final = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Z]{1,3})([0-9]{1,7})'
                                rb'(?::([A-Z]{1,3})([0-9]{1,7}))?"')
_SCAN_BYTES: Final = 1 << 20
_READ_BYTES: Final = 1 << 18  # sheet XML fed to the parser at a time
_ESCAPE: Final = re.compile(r"_x([0-9A-Fa-f]{4})_")  # ST_Xstring: "_x000D_" is a carriage return


def _unescape_x(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "_x" in text else text


def _column_index(letters: str) -> int:
    """"A" → 0, "Z" → 25, "AA" → 26."""
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _attr(el: Any, name: str, namespaces: tuple[str, ...]) -> str | None:
    for ns in namespaces:
        value = el.get(f"{{{ns}}}{name}")
        if value is not None:
            return value
    return None


def _part_path(base: str, target: str) -> str:
    """A relationship target resolved against the folder of the part that names it."""
    if target.startswith("/"):
        return target.lstrip("/")
    folder = base.rpartition("/")[0]
    parts: list[str] = folder.split("/") if folder else []
    for piece in target.split("/"):
        if piece == "..":
            if parts:
                parts.pop()
        elif piece not in ("", "."):
            parts.append(piece)
    return "/".join(parts)


# Number formats that make a number a date or a duration, as python-calamine reads them: the
# built-in ids of ECMA-376 Part 1, 18.8.30 (14-22 dates and times, 45-47 times, 27-36, 50-58
# and 71-81 the East Asian date formats; 46 "[h]:mm:ss" a duration), and custom codes whose
# first section has a date or time letter outside quotes, brackets and escapes.
_DATE_FORMAT_IDS: Final = frozenset([*range(14, 23), *range(27, 37), 45, 47, *range(50, 59),
                                     *range(71, 82)])
_DURATION_FORMAT_IDS: Final = frozenset({46})


def _format_kind(code: str) -> str | None:
    """"date", "duration" or None (a plain number) for a custom number format code."""
    escaped = quoted = False
    brackets = 0
    bracket_text = ""
    for ch in code:
        if escaped:
            escaped = False
        elif quoted:
            quoted = ch != '"'
        elif ch in "\\_":
            escaped = True
        elif ch == '"':
            quoted = True
        elif ch == ";":
            return None
        elif ch == "[":
            brackets += 1
            bracket_text = ""
        elif ch == "]":
            brackets = max(0, brackets - 1)
            if bracket_text and bracket_text[0] in "hHmMsS" and len(set(bracket_text.lower())) == 1:
                return "duration"
        elif brackets:
            bracket_text += ch
        elif ch in "dmhysDMHYS":
            return "date"
    return None


class _XlsxBook:
    """An .xlsx package: its sheets (name, visible, XML part) in workbook order, the shared
    strings (stripped, NFC) and which cell styles are dates or durations. Raises
    ListFileError for a package whose workbook parts are missing or not XML."""

    def __init__(self, file: str, f: BinaryIO) -> None:
        import xml.etree.ElementTree as ET

        self.file = file
        try:
            f.seek(0)
            self.zf = zipfile.ZipFile(f)
            names = set(self.zf.namelist())
            root = ET.fromstring(self.zf.read("_rels/.rels")) if "_rels/.rels" in names else []
            book_part = next((_part_path("", r.get("Target", "")) for r in root
                              if r.get("Type", "").endswith("/officeDocument")), "xl/workbook.xml")
            book = ET.fromstring(self.zf.read(book_part))
            rels_part = _part_path(book_part, "_rels/" + book_part.rpartition("/")[2] + ".rels")
            rels = {r.get("Id"): (r.get("Type", ""), _part_path(book_part, r.get("Target", "")))
                    for r in ET.fromstring(self.zf.read(rels_part))}
        except (KeyError, ET.ParseError, zipfile.BadZipFile, OSError, UnicodeError) as exc:
            raise ListFileError(file, None, _(
                "not a readable .xlsx workbook ({error}): open it in Excel or LibreOffice and "
                "save it again as .xlsx").format(error=exc), kind="fatal") from None
        self.sheets: list[tuple[str, bool, str]] = []
        for el in book.iter():
            if _local(el.tag) == "sheet":
                _type, target = rels.get(_attr(el, "id", _REL_NS) or "", ("", ""))
                self.sheets.append((el.get("name", ""),
                                    el.get("state", "visible") not in ("hidden", "veryHidden"), target))
        by_type = {kind.rpartition("/")[2]: target for kind, target in rels.values()}
        self.strings = self._shared_strings(by_type.get("sharedStrings"))
        self.dates, self.durations = self._styles(by_type.get("styles"))

    def _shared_strings(self, part: str | None) -> list[str]:
        import xml.parsers.expat as expat

        strings: list[str] = []
        if not part or part not in self.zf.namelist():
            return strings
        pieces: list[str] = []
        in_text = False
        phonetic = 0

        def start(name: str, attrs: dict[str, str]) -> None:
            nonlocal in_text, phonetic
            local = name.rpartition(":")[2]
            if local == "t":
                in_text = not phonetic
            elif local == "rPh":
                phonetic += 1

        def end(name: str) -> None:
            nonlocal in_text, phonetic
            local = name.rpartition(":")[2]
            if local == "t":
                in_text = False
            elif local == "rPh":
                phonetic -= 1
            elif local == "si":
                text = _unescape_x("".join(pieces))
                strings.append(text.strip() if text.isascii() else _nfc(text))
                pieces.clear()

        def data(text: str) -> None:
            if in_text:
                pieces.append(text)

        p = expat.ParserCreate()
        p.buffer_text = True
        p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, data
        try:
            with self.zf.open(part) as fh:
                p.ParseFile(fh)
        except (expat.ExpatError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ListFileError(self.file, None, _(
                "not a readable .xlsx workbook (shared strings: {error}): open it in Excel or "
                "LibreOffice and save it again as .xlsx").format(error=exc), kind="fatal") from None
        return strings

    def _styles(self, part: str | None) -> tuple[frozenset[str], frozenset[str]]:
        """Indexes (as the ``s`` attribute writes them) of the cell styles that show a number
        as a date or time, and as a duration."""
        import xml.etree.ElementTree as ET

        if not part or part not in self.zf.namelist():
            return frozenset(), frozenset()
        try:
            root = ET.fromstring(self.zf.read(part))
        except ET.ParseError:
            return frozenset(), frozenset()
        kinds: dict[int, str | None] = {i: "date" for i in _DATE_FORMAT_IDS}
        kinds.update({i: "duration" for i in _DURATION_FORMAT_IDS})
        cell_xfs: list[int] = []
        for el in root:
            if _local(el.tag) == "numFmts":
                for fmt in el:
                    try:
                        kinds[int(fmt.get("numFmtId", ""))] = _format_kind(fmt.get("formatCode", ""))
                    except ValueError:
                        continue
            elif _local(el.tag) == "cellXfs":
                for xf in el:
                    try:
                        cell_xfs.append(int(xf.get("numFmtId", "0")))
                    except ValueError:
                        cell_xfs.append(0)
        dates = frozenset(str(i) for i, fmt in enumerate(cell_xfs) if kinds.get(fmt) == "date")
        durations = frozenset(str(i) for i, fmt in enumerate(cell_xfs) if kinds.get(fmt) == "duration")
        return dates, durations

    def close(self) -> None:
        self.zf.close()

    def scan(self, part: str) -> tuple[list[str], list[tuple[int, int, int, int]]]:
        """One bounded pass over a sheet's XML bytes: the cells holding a formula without a
        saved value (a reader sees them empty), and the merged ranges as (first row, first
        column, last row, last column), 0-based."""
        found: list[str] = []
        merges: set[tuple[int, int, int, int]] = set()
        try:
            fh = self.zf.open(part)
        except KeyError:
            return found, []
        with fh:
            tail = b""
            while chunk := fh.read(_SCAN_BYTES):
                data = tail + chunk
                if b"<f" in data:
                    for m in _UNCACHED.finditer(data):
                        ref = m.group(1).decode()
                        if ref not in found:
                            found.append(ref)
                if b"mergeCell" in data:
                    for m in _MERGE_CELL.finditer(data):
                        c0, r0 = _column_index(m.group(1).decode()), int(m.group(2)) - 1
                        if m.group(3):
                            c1, r1 = _column_index(m.group(3).decode()), int(m.group(4)) - 1
                        else:
                            c1, r1 = c0, r0
                        merges.add((min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1)))
                # a formula cell or a tag cut by the chunk's end is scanned again with the next
                cut = data.rfind(b"<c ")
                if cut < 0 or len(data) - cut >= 65536:
                    cut = data.rfind(b"<")
                tail = data[cut:] if cut >= 0 and len(data) - cut < 65536 else b""
        return found, sorted(merges)

    def records(self, name: str, part: str) -> Iterator[tuple[int, list[str]]]:
        """``(row number, cells)`` of one sheet as the XML is decompressed: cells at their
        column (0 = A), stripped NFC text, rows without a value left out. Raises
        ListFileError ("cannot read sheet …") for XML that is not well-formed, a shared
        string index past the table or a number that is not one."""
        import xml.parsers.expat as expat

        strings, dates, file = self.strings, self.dates, self.file
        special = self.dates | self.durations
        cell_text, nfc, unescape = _cell_text, _nfc, _unescape_x
        columns: dict[str, int] = {}
        done: list[tuple[int, list[str]]] = []
        cells: list[str] = []
        text: str | None = None  # the value's text read so far; None: the cell has no value
        attrs_c: dict[str, str] = {}
        row_no = 0
        col = -1
        capture = False  # inside <v>, or inside <t> of an inline string (not a phonetic run)
        inline = phonetic = 0
        names = ("row", "c", "v", "is", "t", "rPh")

        def bad(reason: str) -> ListFileError:
            return ListFileError(file, row_no or None, _("cannot read sheet ({reason})").format(
                reason=reason), name, kind="fatal")

        def other(kind: str | None, text: str) -> str:
            """Every value but a shared string and a plain whole number."""
            if kind == "inlineStr" or kind == "str":
                text = unescape(text)
                return text.strip() if text.isascii() else nfc(text)
            if kind == "b":
                return "FALSE" if text.strip() == "0" else "TRUE"
            if kind == "e":
                return ""
            if kind == "d":
                return _iso_date_text(text)
            try:
                number = float(text)
            except ValueError:
                raise bad(_("cell {cell}: {text!r} is not a number").format(
                    cell=attrs_c.get('r'), text=text)) from None
            style = attrs_c.get("s")
            if style in dates:
                return _excel_date_text(number)
            if style in special:
                return cell_text(dt.timedelta(days=number))
            return cell_text(number)

        def start(tag: str, attrs: dict[str, str]) -> None:
            nonlocal row_no, col, capture, inline, phonetic, cells, attrs_c
            if tag == V:
                capture = True
            elif tag == C:
                attrs_c = attrs
                ref = attrs.get("r")
                if ref is None:
                    col += 1
                else:
                    letters = ref.rstrip("0123456789")
                    found = columns.get(letters)
                    if found is None:
                        found = columns[letters] = _column_index(letters)
                    col = found
            elif tag == ROW:
                r = attrs.get("r")
                row_no = int(r) if r else row_no + 1
                col = -1
                cells = []
            elif tag == T:
                capture = inline > 0 and not phonetic
            elif tag == IS:
                inline += 1
            elif tag == RPH:
                phonetic += 1

        def end(tag: str) -> None:
            nonlocal capture, inline, phonetic, text
            if tag == V:
                capture = False
            elif tag == C:
                if text is None:
                    return
                kind = attrs_c.get("t")
                if kind == "s":
                    try:
                        value = strings[int(text)]
                    except (ValueError, IndexError):
                        raise bad(_("cell {cell}: shared string {text!r} is not in the "
                                    "workbook's table").format(cell=attrs_c.get('r'),
                                                               text=text)) from None
                elif (kind is None or kind == "n") and len(text) < 16 and text.isdigit() and (
                        text.isascii() and attrs_c.get("s") not in special):
                    value = str(int(text))  # what float() and _cell_text() give, sooner
                else:
                    value = other(kind, text)
                text = None
                if value:
                    n = len(cells)
                    if col == n:
                        cells.append(value)
                    elif col > n:
                        cells.extend([""] * (col - n))
                        cells.append(value)
                    else:
                        cells[col] = value
            elif tag == ROW:
                if cells:
                    done.append((row_no, cells))
            elif tag == T:
                capture = False
            elif tag == IS:
                inline -= 1
            elif tag == RPH:
                phonetic -= 1

        def data(chunk: str) -> None:
            nonlocal text
            if capture:
                text = chunk if text is None else text + chunk

        def first(tag: str, attrs: dict[str, str]) -> None:
            # the root element tells the namespace prefix the part uses ("x:row" or "row")
            nonlocal ROW, C, V, IS, T, RPH
            prefix = tag[: tag.index(":") + 1] if ":" in tag else ""
            ROW, C, V, IS, T, RPH = (prefix + n for n in names)
            p.StartElementHandler = start

        ROW = C = V = IS = T = RPH = ""
        p = expat.ParserCreate()
        p.buffer_text = True
        p.buffer_size = 1 << 16
        p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = first, end, data
        try:
            fh = self.zf.open(part)
        except KeyError:
            raise bad(_("the part {part} is missing from the package").format(part=part)) from None
        with fh:
            while True:
                failed: ListFileError | None = None
                chunk = b""
                try:
                    chunk = fh.read(_READ_BYTES)
                    p.Parse(chunk, not chunk)
                except expat.ExpatError as exc:
                    failed = bad(_("malformed XML in {part}: {error}").format(part=part, error=exc))
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    failed = bad(_("damaged package: {error}").format(error=exc))
                except ListFileError as exc:  # a bad cell, raised by a handler
                    failed = exc
                if done:  # the rows before the failing one are yielded first
                    yield from done
                    done.clear()
                if failed is not None:
                    raise failed
                if not chunk:
                    return


_EXCEL_EPOCH: Final = dt.datetime(1899, 12, 31)
_EXCEL_MAX_SERIAL: Final = 2958466  # 10000-01-01: past the last date Excel has


def _excel_date_text(serial: float) -> str:
    """A date-formatted number as python-calamine gives it, as text: Excel's 1900 date system
    (serial 1 = 1900-01-01, the phantom 29 February 1900 = serial 60 read as the 28th), a
    value under 1 a time of day, a whole number a date; past 9999 the number itself."""
    if not -_EXCEL_MAX_SERIAL < serial < _EXCEL_MAX_SERIAL:
        return _cell_text(serial)
    base = _EXCEL_EPOCH if serial < 60 else _EXCEL_EPOCH - dt.timedelta(days=1)
    moment = base + dt.timedelta(milliseconds=round(serial * 86_400_000))
    if serial < 1:
        return moment.time().isoformat()
    if moment.time() == dt.time(0):
        return moment.date().isoformat()
    return moment.isoformat()


def _iso_date_text(text: str) -> str:
    """A t="d" cell (ISO 8601 text) as python-calamine gives it, as text."""
    try:
        if "T" in text or " " in text.strip():
            return dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00")).isoformat()
        if ":" in text:
            return dt.time.fromisoformat(text.strip()).isoformat()
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        return text.strip()


# --- workbooks (XLS, ODS) through python-calamine ---------------------------------------------


def _workbook(file: str, f: BinaryIO, fmt: str) -> Any:
    import python_calamine as pc  # imported here: CSV-only runs should not pay for it

    try:
        f.seek(0)
        return pc.CalamineWorkbook.from_filelike(f)
    except pc.PasswordError:
        raise ListFileError(file, None, _(_PROTECTED), kind="fatal") from None
    except (pc.CalamineError, pc.ZipError, pc.XmlError, ValueError, OSError) as exc:
        raise ListFileError(file, None, _(
            "not a readable .{format} workbook ({error}): open it in Excel or LibreOffice and "
            "save it again as .xlsx").format(format=fmt, error=exc), kind="fatal") from None


_PROTECTED: Final = N_("the workbook is password-protected (encrypted): open it in Excel with the "
                     "password, then File > Info > Protect Workbook > Encrypt with Password, "
                     "clear the password and save; or save a copy as .xlsx without a password")



def _sheet_records(ws: Any) -> Iterator[tuple[int, list[str]]]:
    """``(row number, cells)`` of a python-calamine sheet, cells at their column (0 = A).
    python-calamine (0.9) yields rows from the sheet's first row, empty ones included, and
    cells from the first column that holds a value: rows are numbered from 1, cells padded."""
    start = ws.start
    if start is None:
        return
    col0 = start[1]
    pad = [""] * col0
    cell_text, nfc = _cell_text, _nfc
    for i, values in enumerate(ws.iter_rows(), start=1):
        cells = [(v.strip() if v.isascii() else nfc(v)) if type(v) is str else cell_text(v)
                 for v in values]
        yield i, (pad + cells) if col0 else cells


class _CalamineBook:
    """An .xls or .ods workbook through python-calamine (one sheet in memory at a time)."""

    def __init__(self, file: str, f: BinaryIO, fmt: str) -> None:
        import python_calamine as pc

        self.file, self.pc = file, pc
        self.wb = _workbook(file, f, fmt)
        meta = {m.name: m for m in self.wb.sheets_metadata}
        self.sheets = [(n, meta[n].visible == pc.SheetVisibleEnum.Visible if n in meta else True, n)
                       for n in self.wb.sheet_names]

    def scan(self, part: str) -> tuple[list[str], list[tuple[int, int, int, int]]]:
        return [], []

    def open(self, name: str) -> tuple[Iterator[tuple[int, list[str]]], list[tuple[int, int, int, int]]]:
        try:
            ws = self.wb.get_sheet_by_name(name)
        except self.pc.CalamineError as exc:
            raise ListFileError(self.file, None, _("cannot read sheet ({reason})").format(
                reason=exc), name, kind="fatal") from None
        merges = [(r0, c0, r1, c1) for (r0, c0), (r1, c1) in (ws.merged_cell_ranges or [])]
        return _sheet_records(ws), merges

    def close(self) -> None:
        self.wb.close()


def _workbook_rows(file: str, f: BinaryIO, fmt: str, sheet: str | None,
                   info: ListInfo) -> Iterator[RawRow]:
    book: _XlsxBook | _CalamineBook = _XlsxBook(file, f) if fmt == "xlsx" else _CalamineBook(file, f, fmt)
    try:
        names = [name for name, _, _ in book.sheets]
        if sheet is not None and sheet not in names:
            listed = ", ".join(repr(n) for n in names)
            raise ListFileError(file, None, _("no sheet {sheet!r}; sheets: {listed}").format(
                sheet=sheet, listed=listed))
        chosen = [s for s in book.sheets if sheet is None or s[0] == sheet]
        errors: list[ListFileError] = []
        for name, visible, part in chosen:
            si = SheetInfo(name)
            info.sheets.append(si)
            if sheet is None and not visible:
                si.note = _("hidden sheet: not read (give --sheet to read it)")
                continue
            uncached, merges = book.scan(part)
            if uncached:
                shown = ", ".join(uncached[:10]) + (
                    _(" and {n} more").format(n=len(uncached) - 10) if len(uncached) > 10 else "")
                raise ListFileError(
                    file, None, _("formula cells without a saved value ({cells}): the file was "
                                  "written by a program that does not compute formulas; open it "
                                  "in Excel or LibreOffice and save it (or paste the values), "
                                  "then import again").format(cells=shown), name, kind="fatal")
            if isinstance(book, _XlsxBook):
                records = book.records(name, part)
            else:
                records, merges = book.open(name)
            try:
                yield from _sheet_rows(file, si, records, merges, clean=True)
            except ListFileError as exc:
                if sheet is not None or exc.kind == "fatal":
                    raise
                if exc.kind == "empty":
                    si.note = _("empty sheet")
                else:
                    si.note = exc.reason
                errors.append(exc)
            finally:
                records.close()
                del records
        if not any(s.read for s in info.sheets):
            if len(errors) == 1 and len(chosen) == 1:
                raise errors[0]
            notes = "; ".join(f"{s.name!r}: {s.note}" for s in info.sheets)
            raise ListFileError(file, None, _("no sheet holds a list with a phone column "
                                              "({notes})").format(notes=notes))
    finally:
        book.close()


# --- HTML tables saved as .xls by web portals -------------------------------------------------


class _Tables(html.parser.HTMLParser):
    """Every <table> as rows of cell texts, with colspan repeated and rowspan filled down."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._stack: list[tuple[list[list[str]], dict[int, tuple[int, str]]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._span = (1, 1)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._stack.append(([], {}))
        elif tag == "tr" and self._stack:
            self._end_row()
            self._row = []
        elif tag in ("td", "th") and self._stack:
            if self._row is None:
                self._row = []
            self._end_cell()
            a = dict(attrs)
            def num(v: str | None) -> int:
                try:
                    return max(1, min(int(v or 1), 10000))
                except ValueError:
                    return 1
            self._span = (num(a.get("colspan")), num(a.get("rowspan")))
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._end_cell()
        elif tag == "tr":
            self._end_row()
        elif tag == "table" and self._stack:
            self._end_row()
            rows, _ = self._stack.pop()
            self.tables.append(rows)

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def _place(self, row: list[str], pending: dict[int, tuple[int, str]]) -> None:
        while len(row) in pending:
            n, v = pending[len(row)]
            row.append(v)
            if n <= 1:
                del pending[len(row) - 1]
            else:
                pending[len(row) - 1] = (n - 1, v)

    def _end_cell(self) -> None:
        if self._cell is None or self._row is None or not self._stack:
            self._cell = None
            return
        text = " ".join("".join(self._cell).split(" ")).strip()
        _, pending = self._stack[-1]
        self._place(self._row, pending)
        cols, rows = self._span
        for _ in range(cols):
            if rows > 1:
                pending[len(self._row)] = (rows - 1, text)
            self._row.append(text)
        self._cell = None

    def _end_row(self) -> None:
        self._end_cell()
        if self._row is not None and self._stack:
            rows, pending = self._stack[-1]
            self._place(self._row, pending)
            rows.append(self._row)
        self._row = None


_HTML_START: Final = re.compile(rb"\s*(?:<!doctype html|<html|<table|<meta|<head|<body|<\?xml[^>]*>\s*<html)",
                                re.IGNORECASE)
_CHARSET: Final = re.compile(rb"charset\s*=\s*[\"']?([\w-]+)", re.IGNORECASE)


def _html_rows(file: str, f: BinaryIO, info: ListInfo) -> Iterator[RawRow]:
    f.seek(0)
    data = f.read()
    m = _CHARSET.search(data[:4096])
    codec = "utf-8"
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16"
    elif m:
        codec = m.group(1).decode("ascii").lower()
    try:
        text = data.decode(codec)
    except (LookupError, UnicodeDecodeError):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1258", errors="replace")
    parser = _Tables()
    parser.feed(text)
    parser.close()
    if not parser.tables:
        raise ListFileError(file, None, _("an HTML page with no table (a web page saved with an "
                                          ".xls name): export the list from the portal as .xlsx "
                                          "or CSV"))
    many = len(parser.tables) > 1
    errors: list[ListFileError] = []
    for n, table in enumerate(parser.tables, start=1):
        si = SheetInfo(_("table {n}").format(n=n) if many else None)
        info.sheets.append(si)
        try:
            yield from _sheet_rows(file, si, enumerate(table, start=1))
        except ListFileError as exc:
            si.note = exc.reason
            errors.append(exc)
    if not any(s.read for s in info.sheets):
        raise errors[0]


# --- entry point -----------------------------------------------------------------------------

_ZIP_MAGIC: Final = b"PK\x03\x04"
_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED: Final = "EncryptedPackage".encode("utf-16-le")


def _zip_format(file: str, f: BinaryIO, ext: str) -> str:
    try:
        f.seek(0)
        with zipfile.ZipFile(f) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as exc:
        raise ListFileError(file, None, _("not a readable .{format} workbook ({error})").format(
            format=ext.lstrip('.') or 'xlsx', error=_library_message(exc)), kind="fatal") from None
    if "content.xml" in names:
        return "ods"
    if "xl/workbook.xml" in names or any(n.startswith("xl/") for n in names):
        return "xlsx"
    raise ListFileError(file, None, _("a zip file that is not a workbook (no xl/workbook.xml or "
                                      "content.xml): save the list as .xlsx or CSV"))


def read_list(path: str | os.PathLike[str], *, encoding: str | None = None,
              sheet: str | None = None, info: ListInfo | None = None) -> Iterator[RawRow]:
    """Stream the recipient rows of a list file, header and non-data rows excluded.

    Formats, recognised by content (the extension is only a hint): ``.xlsx``/``.xlsm``,
    streamed (the sheet XML parsed with expat as it is decompressed: memory does not grow with
    the rows; values as python-calamine gives them), legacy ``.xls`` (BIFF) and ``.ods``
    through python-calamine (one sheet in memory at a time); cells read as stored, whatever
    the declared sheet dimension; an HTML table saved with an ``.xls`` name (web portals); and
    delimited text: comma, semicolon or tab, detected from the first lines or named by Excel's
    ``sep=;`` line. Text encodings: UTF-8 with or without BOM, UTF-16 with BOM (Excel "Unicode
    Text"), Windows-1258 (recognised when the text is not UTF-8 and reads cleanly as 1258; its
    combining tone marks come out NFC); ``encoding`` forces one.

    Report-style sheets: the header is found by content in the first 30 non-empty rows (a
    letterhead, even with the agency's own number, and a title may come first); a second
    header row under merged cells is joined ("Số điện thoại / Di động"); of several phone
    columns the mobile one is used; merged cells below the header fill every row they cover;
    section ("Khu vực 1"), column-numbering, totals ("Tổng cộng"), date and signature rows are
    skipped and counted in ``info``. Every visible sheet with a phone column is read; ``sheet``
    reads one sheet only. Headers are matched ignoring case and diacritics
    (:data:`HEADER_ALIASES`). ``info``, if given, is filled with the :class:`ListInfo`.

    Raises ListFileError (with the line or sheet when known) for an unreadable, encrypted or
    unsupported file, formula cells without saved values (naming the cells), undecodable bytes,
    malformed CSV quoting, or no phone column (listing the headers seen); rows before the
    failing line have already been yielded.
    """
    file = os.fspath(path)
    info = info if info is not None else ListInfo(file)
    info.file = file
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ListFileError(file, None, _("cannot open: {error}").format(
            error=exc.strerror or exc)) from None
    with f:
        head = f.read(_PREFIX_BYTES)
        ext = os.path.splitext(file)[1].lower()
        if head.startswith(_OLE2_MAGIC):
            if _ENCRYPTED in head or _ENCRYPTED in f.read():
                raise ListFileError(file, None, _(_PROTECTED), kind="fatal")
            info.format = "xls"
            yield from _workbook_rows(file, f, "xls", sheet, info)
        elif head.startswith(_ZIP_MAGIC) or (ext in (".xlsx", ".xlsm", ".ods")
                                             and head.strip()[:1] != b"<"):
            info.format = _zip_format(file, f, ext)
            yield from _workbook_rows(file, f, info.format, sheet, info)
        elif _HTML_START.match(head[3:] if head.startswith(codecs.BOM_UTF8) else head):
            info.format = "html"
            yield from _html_rows(file, f, info)
        else:
            info.format = "csv"
            si = SheetInfo(None)
            info.sheets.append(si)
            yield from _sheet_rows(file, si, _text_records(file, f, head, encoding))


def read_cells(path: str | os.PathLike[str], *, encoding: str | None = None,
               sheet: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """Stream ``(line, cells)`` of any table file :func:`read_list` reads (same formats,
    encodings and line numbers; of a workbook, ``sheet`` or the first sheet), every row
    including the header, cells NFC and stripped, rows whose cells are all empty skipped. For
    tables other than recipient lists (a carrier's reported figures). Raises ListFileError
    like :func:`read_list`."""
    file = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ListFileError(file, None, _("cannot open: {error}").format(
            error=exc.strerror or exc)) from None
    with f:
        head = f.read(_PREFIX_BYTES)
        ext = os.path.splitext(file)[1].lower()
        if head.startswith(_OLE2_MAGIC) or head.startswith(_ZIP_MAGIC) or ext in (
                ".xlsx", ".xlsm", ".ods"):
            fmt = "xls" if head.startswith(_OLE2_MAGIC) else _zip_format(file, f, ext)
            wb = _workbook(file, f, fmt)
            names = list(wb.sheet_names)
            if sheet is not None and sheet not in names:
                raise ListFileError(file, None, _("no sheet {sheet!r}; sheets: {listed}").format(
                    sheet=sheet, listed=", ".join(repr(n) for n in names)))
            records: Iterable[tuple[int, list[str]]] = _sheet_records(
                wb.get_sheet_by_name(sheet if sheet is not None else names[0]))
        else:
            records = _text_records(file, f, head, encoding)
        for line, raw_cells in records:
            cells = [c.strip() if c.isascii() else _nfc(c) for c in raw_cells]
            if any(cells):
                yield line, cells

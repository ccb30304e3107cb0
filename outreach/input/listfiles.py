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
    (``"x.xlsx [sheet 'Phường 1']:12: reason"`` when a sheet is named)."""

    def __init__(self, file: str, line: int | None, reason: str, sheet: str | None = None) -> None:
        super().__init__(file, line, reason, sheet)  # all four: rebuilt intact from a child process
        self.file = file
        self.line = line
        self.reason = reason
        self.sheet = sheet

    def __str__(self) -> str:
        file = unicodedata.normalize("NFC", str(self.file))  # shown in NFC (macOS names: NFD)
        where = file if self.sheet is None else f"{file} [sheet {self.sheet!r}]"
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
            name = _field_of(label) if label else None
            if name is None and parts is not None and parts[i][1]:
                name = _field_of(parts[i][1]) or _field_of(parts[i][0])
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
            label = label or f"column {i + 1}"
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
        self.columns = cand
        self.header_cells = cells
        self.info.header_line = line
        self.info.columns = cand.used()
        self.info.phone_columns_unused = cand.phone_unused
        return True

    def _sub_header(self, line: int, cells: list[str]) -> bool:
        """Join a second header row ("Cố định | Di động" under a merged "Số điện thoại")."""
        top = self.header_cells
        if any(_MANY_DIGITS.search(c) for c in cells) or _numbering_row([c for c in cells if c]):
            return False
        width = max(len(top), len(cells))
        top = top + [""] * (width - len(top))
        sub = cells + [""] * (width - len(cells))
        spans = {c: c0 for r0, c0, c1 in self.h_merges if r0 == self.info.header_line - 1
                 for c in range(c0, c1 + 1)}
        under_group = False
        parts: list[tuple[str, str]] = []
        for i in range(width):
            t = top[i]
            if i in spans:
                t = top[spans[i]]
            elif not t and sub[i] and i > 0 and sub[i - 1] and parts and parts[-1][0]:
                t = parts[-1][0]  # no merge information (CSV): the group label is to the left
            if sub[i] and t and (i in spans or not top[i]):
                under_group = True
            parts.append((t, sub[i]))
        if not under_group:
            return False
        labels = [f"{t} / {s}" if t and s and t != s else (t or s) for t, s in parts]
        cand = _Columns(labels, parts)
        if "phone" not in cand.fields:
            return False
        self.columns = cand
        self.info.header_line = line
        self.info.columns = cand.used()
        self.info.phone_columns_unused = cand.phone_unused
        self.header_cells = labels
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
            return "column numbering"
        if any(_FOOTER.match(v.casefold()) or _DATE_LINE.search(v.casefold()) for v in values[:3]):
            self.footer = True
            return "totals or signature"
        if cells[: len(self.header_cells)] == self.header_cells:
            return "repeated header"
        if self.footer:
            return "signature"
        stt = cols.stt
        own = [i for i, v in enumerate(original) if v and i != stt]
        # "Khu vực 1" stands alone at the left or in the name column; a lone note in another
        # column ("Ghi chú": "trống") is a person without a number, reported as such
        alone_at = (0, cols.name, 1 if stt == 0 else 0)
        if (len(own) <= 1 and not phone and (not own or own[0] in alone_at)
                and (stt is None or stt >= len(original) or not original[stt].isdigit())):
            return "section"
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
        return cols.row(self.file, line, cells, self.sheet)

    def searching(self) -> bool:
        return self.columns is None and len(self.pending) < _HEADER_SEARCH_ROWS

    def missing_header(self) -> ListFileError:
        if self.first is None:
            return ListFileError(self.file, None, "empty file: no header row", self.sheet)
        seen = ", ".join(repr(c) for c in self.first[1] if c) or "none"
        return ListFileError(self.file, self.first[0], f"no phone column (expected a header such as "
                                                       f"'Số điện thoại', 'SĐT' or 'phone'); headers seen: {seen}",
                             self.sheet)


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
            raise ListFileError(file, None, f"unknown encoding {forced!r}") from None
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
        raise ListFileError(file, None, "binary file: not CSV, TSV or XLSX")
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
        raise ListFileError(file, line, _undecodable("utf-8", exc)) from None
    return "utf-8", 0


def _undecodable(codec: str, exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start : exc.end].hex(" ").upper()
    return (f"cannot decode as {codec} (bytes {bad}): save the file as 'CSV UTF-8' "
            f"or give its encoding (e.g. encoding='cp1258')")


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
            error = ("contains U+FFFD (a character already lost by an earlier wrong-encoding "
                     "conversion): fix the name in the source file")
        lines = text.split(newline)
        tail = lines.pop()
        for line in lines:
            yield line + newline
        lines_done += len(lines)
        if error is not None:
            raise ListFileError(file, lines_done + 1, error)
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
            reason = f"malformed CSV in the row starting here ({exc}): check its quotes"
            raise ListFileError(file, start, reason) from None
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


_SHEET_TAG: Final = re.compile(rb'<(?:\w+:)?sheet\b[^>]*?\bname="([^"]*)"[^>]*?\br:id="([^"]*)"')
_REL_TAG: Final = re.compile(rb'<Relationship\b[^>]*?\bId="([^"]*)"[^>]*?\bTarget="([^"]*)"'
                             rb'|<Relationship\b[^>]*?\bTarget="([^"]*)"[^>]*?\bId="([^"]*)"')
# a formula cell whose value was never computed: <c r="C5"><f>…</f></c> or an empty <v/>
_UNCACHED: Final = re.compile(rb'<c\b[^>]*?\br="([A-Z]{1,3}[0-9]{1,7})"[^>]*>\s*<f\b[^>]*(?:/>|>[^<]*</f>)'
                              rb'\s*(?:<v\s*/>|<v>\s*</v>)?\s*</c>')
_SCAN_BYTES: Final = 1 << 20


def _xml_unescape(raw: bytes) -> str:
    import html as _html
    return _html.unescape(raw.decode("utf-8", errors="replace"))


def _xlsx_sheet_parts(zf: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name → its XML part in an XLSX package."""
    try:
        book = zf.read("xl/workbook.xml")
        rels = zf.read("xl/_rels/workbook.xml.rels")
    except KeyError:
        return {}
    targets: dict[bytes, str] = {}
    for m in _REL_TAG.finditer(rels):
        rid, target = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        t = target.decode()
        targets[rid] = t.lstrip("/") if t.startswith("/") else "xl/" + t
    return {_xml_unescape(name): targets.get(rid, "") for name, rid in _SHEET_TAG.findall(book)}


def _uncached_formulas(zf: zipfile.ZipFile, part: str) -> list[str]:
    """Cells holding a formula without a saved value (files written by programs, never opened
    in Excel): a reader sees them empty. Scans the sheet XML in bounded chunks."""
    found: list[str] = []
    try:
        fh = zf.open(part)
    except KeyError:
        return found
    with fh:
        tail = b""
        while chunk := fh.read(_SCAN_BYTES):
            data = tail + chunk
            if b"<f" in data:
                for m in _UNCACHED.finditer(data):
                    ref = m.group(1).decode()
                    if ref not in found:
                        found.append(ref)
            cut = data.rfind(b"<c ")
            tail = data[cut:] if cut >= 0 and len(data) - cut < 65536 else b""
    return found


def _workbook(file: str, f: BinaryIO, fmt: str) -> Any:
    import python_calamine as pc  # imported here: CSV-only runs should not pay for it

    try:
        f.seek(0)
        return pc.CalamineWorkbook.from_filelike(f)
    except pc.PasswordError:
        raise ListFileError(file, None, _PROTECTED) from None
    except (pc.CalamineError, pc.ZipError, pc.XmlError, ValueError, OSError) as exc:
        raise ListFileError(file, None, f"not a readable .{fmt} workbook ({exc}): open it in Excel "
                                        "or LibreOffice and save it again as .xlsx") from None


_PROTECTED: Final = ("the workbook is password-protected (encrypted): open it in Excel with the "
                     "password, then File > Info > Protect Workbook > Encrypt with Password, "
                     "clear the password and save; or save a copy as .xlsx without a password")


def _sheet_records(ws: Any) -> Iterator[tuple[int, list[str]]]:
    start = ws.start
    if start is None:
        return
    row0, col0 = start
    pad = [""] * col0
    cell_text, nfc = _cell_text, _nfc
    for i, values in enumerate(ws.iter_rows(), start=row0 + 1):
        cells = [(v.strip() if v.isascii() else nfc(v)) if type(v) is str else cell_text(v)
                 for v in values]
        yield i, (pad + cells) if col0 else cells


def _workbook_rows(file: str, f: BinaryIO, fmt: str, sheet: str | None,
                   info: ListInfo) -> Iterator[RawRow]:
    import python_calamine as pc

    wb = _workbook(file, f, fmt)
    try:
        names = list(wb.sheet_names)
        meta = {m.name: m for m in wb.sheets_metadata}
        if sheet is not None and sheet not in names:
            listed = ", ".join(repr(n) for n in names)
            raise ListFileError(file, None, f"no sheet {sheet!r}; sheets: {listed}")
        chosen = [sheet] if sheet is not None else names
        parts: dict[str, str] = {}
        zf: zipfile.ZipFile | None = None
        if fmt == "xlsx":
            f.seek(0)
            zf = zipfile.ZipFile(f)
            parts = _xlsx_sheet_parts(zf)
        errors: list[ListFileError] = []
        for name in chosen:
            si = SheetInfo(name)
            info.sheets.append(si)
            m = meta.get(name)
            if sheet is None and m is not None and m.visible != pc.SheetVisibleEnum.Visible:
                si.note = "hidden sheet: not read (give --sheet to read it)"
                continue
            if zf is not None and name in parts:
                cells = _uncached_formulas(zf, parts[name])
                if cells:
                    shown = ", ".join(cells[:10]) + (f" and {len(cells) - 10} more" if len(cells) > 10 else "")
                    raise ListFileError(
                        file, None, f"formula cells without a saved value ({shown}): the file was "
                        "written by a program that does not compute formulas; open it in Excel or "
                        "LibreOffice and save it (or paste the values), then import again", name)
            try:
                ws = wb.get_sheet_by_name(name)
            except pc.CalamineError as exc:
                raise ListFileError(file, None, f"cannot read sheet ({exc})", name) from None
            merges = [(r0, c0, r1, c1) for (r0, c0), (r1, c1) in (ws.merged_cell_ranges or [])]
            records = _sheet_records(ws)
            del ws  # one sheet in memory at a time: calamine holds a whole sheet
            try:
                yield from _sheet_rows(file, si, records, merges, clean=True)
            except ListFileError as exc:
                if sheet is not None or exc.reason.startswith(("malformed", "cannot")):
                    raise
                if exc.reason.startswith("empty file"):
                    si.note = "empty sheet"
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
            raise ListFileError(file, None, f"no sheet holds a list with a phone column ({notes})")
    finally:
        wb.close()


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
        raise ListFileError(file, None, "an HTML page with no table (a web page saved with an "
                                        ".xls name): export the list from the portal as .xlsx or CSV")
    many = len(parser.tables) > 1
    errors: list[ListFileError] = []
    for n, table in enumerate(parser.tables, start=1):
        si = SheetInfo(f"table {n}" if many else None)
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
        raise ListFileError(file, None, f"not a readable .{ext.lstrip('.') or 'xlsx'} workbook "
                                        f"({exc})") from None
    if "content.xml" in names:
        return "ods"
    if "xl/workbook.xml" in names or any(n.startswith("xl/") for n in names):
        return "xlsx"
    raise ListFileError(file, None, "a zip file that is not a workbook (no xl/workbook.xml or "
                                    "content.xml): save the list as .xlsx or CSV")


def read_list(path: str | os.PathLike[str], *, encoding: str | None = None,
              sheet: str | None = None, info: ListInfo | None = None) -> Iterator[RawRow]:
    """Stream the recipient rows of a list file, header and non-data rows excluded.

    Formats, recognised by content (the extension is only a hint): ``.xlsx``/``.xlsm``, legacy
    ``.xls`` (BIFF) and ``.ods`` through python-calamine (cells read as stored, whatever the
    declared sheet dimension); an HTML table saved with an ``.xls`` name (web portals); and
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
        raise ListFileError(file, None, f"cannot open: {exc.strerror or exc}") from None
    with f:
        head = f.read(_PREFIX_BYTES)
        ext = os.path.splitext(file)[1].lower()
        if head.startswith(_OLE2_MAGIC):
            if _ENCRYPTED in head or _ENCRYPTED in f.read():
                raise ListFileError(file, None, _PROTECTED)
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
        raise ListFileError(file, None, f"cannot open: {exc.strerror or exc}") from None
    with f:
        head = f.read(_PREFIX_BYTES)
        ext = os.path.splitext(file)[1].lower()
        if head.startswith(_OLE2_MAGIC) or head.startswith(_ZIP_MAGIC) or ext in (
                ".xlsx", ".xlsm", ".ods"):
            fmt = "xls" if head.startswith(_OLE2_MAGIC) else _zip_format(file, f, ext)
            wb = _workbook(file, f, fmt)
            names = list(wb.sheet_names)
            if sheet is not None and sheet not in names:
                raise ListFileError(file, None, f"no sheet {sheet!r}; sheets: "
                                                + ", ".join(repr(n) for n in names))
            records: Iterable[tuple[int, list[str]]] = _sheet_records(
                wb.get_sheet_by_name(sheet if sheet is not None else names[0]))
        else:
            records = _text_records(file, f, head, encoding)
        for line, raw_cells in records:
            cells = [c.strip() if c.isascii() else _nfc(c) for c in raw_cells]
            if any(cells):
                yield line, cells

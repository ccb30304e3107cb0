"""Recipient list files as they really arrive (Excel CSV/TSV in any Excel encoding, XLSX), streamed as raw rows."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import itertools
import os
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final

__all__ = ["HEADER_ALIASES", "ListFileError", "RawRow", "read_list"]


@dataclass(slots=True)
class RawRow:
    """One recipient row, before phone normalisation.

    ``line`` is the 1-based physical line of the row's first line in a CSV/TSV file (a quoted
    field spanning lines does not shift later rows), or the row number in an XLSX sheet; the
    header is line 1 unless title rows precede it. Strings are NFC and stripped; an empty
    optional cell is None; ``phone`` is ``""`` when the cell is empty or missing. ``extra``
    maps every other column's header to its value (cells past the header: ``"column N"``).
    """

    file: str
    line: int
    phone: str
    name: str | None = None
    district: str | None = None
    ward: str | None = None
    zalo_user_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class ListFileError(Exception):
    """A list file that cannot be read: ``str()`` is ``"recipients/x.csv:12: reason"``."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        super().__init__(file, line, reason)
        self.file = file
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}"


# --- headers ---------------------------------------------------------------------------------

# RawRow field → header names it is read from (compared without case, accents or punctuation).
HEADER_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "phone": ("số điện thoại", "sđt", "sdt", "số đt", "điện thoại", "điện thoại di động", "di động",
              "số di động", "phone", "mobile", "phone number", "mobile number", "msisdn", "tel"),
    "name": ("họ tên", "họ và tên", "tên", "name", "full name"),
    "district": ("quận/huyện", "huyện/quận", "quận/huyện/thị xã", "quận", "huyện", "thị xã",
                 "district"),
    # communal level: ward (phường), commune (xã), township (thị trấn), in any order
    "ward": ("phường/xã", "xã/phường", "phường", "xã", "thị trấn", "xã/thị trấn",
             "phường/thị trấn", "phường/xã/thị trấn", "xã/phường/thị trấn", "ward", "commune"),
    "zalo_user_id": ("zalo user id", "zalo id", "zalo_user_id"),
}
_NON_WORD: Final = re.compile(r"[\W_]+")


def _header_key(label: str) -> str:
    """Compare headers without accents, case, spacing or punctuation: "Số Điện-Thoại" → "so dien thoai"."""
    decomposed = unicodedata.normalize("NFD", label.replace("đ", "d").replace("Đ", "D"))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", bare.casefold()).strip()


_HEADER_FIELDS: Final[dict[str, str]] = {
    _header_key(alias): name for name, aliases in HEADER_ALIASES.items() for alias in aliases
}
# Without an exact phone header, the first one that starts with a phone alias word for word
# ("SĐT liên hệ", "Số điện thoại (Zalo)") is taken; only for phone: "Tên đơn vị" is no name.
_PHONE_PREFIXES: Final = tuple(_header_key(a) + " " for a in HEADER_ALIASES["phone"])
_HEADER_SEARCH_ROWS: Final = 10  # title rows ("DANH SÁCH …") allowed above the header


class _Columns:
    """Where each known field sits, and the labels of the other columns."""

    def __init__(self, labels: list[str]) -> None:
        self.width = len(labels)
        self.fields: dict[str, int] = {}
        self.extra: list[tuple[int, str]] = []
        seen: set[str] = set()
        for i, label in enumerate(labels):
            name = _HEADER_FIELDS.get(_header_key(label))
            if name is not None and name not in self.fields:
                self.fields[name] = i
                continue
            label = label or f"column {i + 1}"
            if label in seen:
                label = f"{label} ({i + 1})"
            seen.add(label)
            self.extra.append((i, label))
        if "phone" not in self.fields:
            for k, (i, _) in enumerate(self.extra):
                if _header_key(labels[i]).startswith(_PHONE_PREFIXES):
                    self.fields["phone"] = i
                    del self.extra[k]
                    break

        # Index of each RawRow field; -1 reads the "" sentinel that row() appends.
        self.phone, self.name, self.district, self.ward, self.zalo_user_id = (
            self.fields.get(f, -1) for f in ("phone", "name", "district", "ward", "zalo_user_id"))

    def row(self, file: str, line: int, cells: list[str]) -> RawRow:
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
                      cells[self.ward] or None, cells[self.zalo_user_id] or None, extra)


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value).replace("\ufeff", "").strip()


def _rows(file: str, records: Iterable[tuple[int, list[str]]]) -> Iterator[RawRow]:
    columns: _Columns | None = None
    first: tuple[int, list[str]] | None = None
    searched = 0
    for line, raw_cells in records:
        cells = [c.strip() if c.isascii() else _nfc(c) for c in raw_cells]
        if not any(cells):
            continue
        if columns is None:
            first = first or (line, cells)
            candidate = _Columns(cells)
            if "phone" in candidate.fields:
                columns = candidate
                continue
            searched += 1
            if searched < _HEADER_SEARCH_ROWS:
                continue
            break
        yield columns.row(file, line, cells)
    if columns is None:
        if first is None:
            raise ListFileError(file, None, "empty file: no header row")
        seen = ", ".join(repr(c) for c in first[1] if c) or "none"
        raise ListFileError(file, first[0], f"no phone column (expected a header such as "
                                            f"'Số điện thoại', 'SĐT' or 'phone'); headers seen: {seen}")


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
    header = next((line for line in sample if line.strip()), "")
    try:
        found = csv.Sniffer().sniff("".join(sample), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        found = ""
    if found and found in header:
        return found
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _csv_records(file: str, lines: Iterator[str]) -> Iterator[tuple[int, list[str]]]:
    sample = list(itertools.islice(lines, _SNIFF_LINES))
    # strict: an unclosed quote must be an error, not the rest of the file swallowed into one cell
    reader = csv.reader(itertools.chain(sample, lines), delimiter=_delimiter(sample), strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = f"malformed CSV in the row starting here ({exc}): check its quotes"
            raise ListFileError(file, start, reason) from None
        yield start, cells
        start = reader.line_num + 1


def _text_records(file: str, f: BinaryIO, head: bytes, encoding: str | None) -> Iterator[tuple[int, list[str]]]:
    codec, skip = _choose_encoding(file, head, encoding)
    head_text = head[skip:].decode(codec, errors="ignore")
    newline = "\r" if "\r" in head_text and "\n" not in head_text else "\n"  # classic Mac files
    yield from _csv_records(file, _decoded_lines(f, codec, skip, newline, file))


# --- XLSX ------------------------------------------------------------------------------------

_EXACT_FLOAT_LIMIT: Final = 1e15  # Excel keeps 15 significant digits


def _cell_text(value: object) -> str:
    """An XLSX cell value as the text a person sees: 912345678.0 → "912345678"; a float past
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


def _xlsx_records(f: BinaryIO, file: str, sheet: str | None) -> Iterator[tuple[int, list[str]]]:
    import openpyxl  # imported here: CSV-only runs should not pay for it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        f.seek(0)  # a file object, not the path: openpyxl refuses unknown extensions
        workbook = openpyxl.load_workbook(f, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise ListFileError(file, None, f"not a readable .xlsx workbook ({exc})") from None
    try:
        if sheet is None:
            # the active sheet, unless it is empty and another sheet holds the list
            worksheet = workbook.active
            if worksheet is not None and not any(
                    any(v not in (None, "") for v in row)
                    for row in worksheet.iter_rows(max_row=20, values_only=True)):
                worksheet = next(
                    (ws for ws in workbook.worksheets
                     if any(any(v not in (None, "") for v in row)
                            for row in ws.iter_rows(max_row=20, values_only=True))), worksheet)
        elif sheet in workbook.sheetnames:
            worksheet = workbook[sheet]
        else:
            names = ", ".join(repr(n) for n in workbook.sheetnames)
            raise ListFileError(file, None, f"no sheet {sheet!r}; sheets: {names}")
        if worksheet is None:
            raise ListFileError(file, None, "workbook has no worksheet")
        # Read-only worksheets yield every row from row 1, empty ones included, so counting
        # gives the sheet's row numbers.
        for number, values in enumerate(worksheet.iter_rows(values_only=True), start=1):
            yield number, [_cell_text(v) for v in values]
    finally:
        workbook.close()


# --- entry point -----------------------------------------------------------------------------

_XLSX_EXTENSIONS: Final = frozenset({".xlsx", ".xlsm"})
_ZIP_MAGIC: Final = b"PK\x03\x04"
_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def read_list(path: str | os.PathLike[str], *, encoding: str | None = None,
              sheet: str | None = None) -> Iterator[RawRow]:
    """Stream the recipient rows of a list file, header row excluded.

    Formats: ``.xlsx`` (by extension or zip content; ``sheet`` names the sheet, default the
    active one) and delimited text: comma, semicolon or tab, detected from the first lines.
    Text encodings: UTF-8 with or without BOM, UTF-16 with BOM (Excel "Unicode Text"),
    Windows-1258 (recognised when the text is not UTF-8 and reads cleanly as 1258; its
    combining tone marks come out NFC); ``encoding`` forces one. Headers are matched in
    Vietnamese or English ignoring case and diacritics (:data:`HEADER_ALIASES`); title rows
    above the header and rows whose cells are all empty are skipped. The file is read in
    bounded chunks, never whole.

    Raises ListFileError (with the line when known) for an unreadable file, undecodable
    bytes, malformed CSV quoting, or no phone column (listing the headers seen); rows before
    the failing line have already been yielded.
    """
    file = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ListFileError(file, None, f"cannot open: {exc.strerror or exc}") from None
    with f:
        head = f.read(_PREFIX_BYTES)
        if os.path.splitext(file)[1].lower() in _XLSX_EXTENSIONS or head.startswith(_ZIP_MAGIC):
            records: Iterator[tuple[int, list[str]]] = _xlsx_records(f, file, sheet)
        elif head.startswith(_OLE2_MAGIC):
            raise ListFileError(file, None, "Excel 97-2003 (.xls) is not supported: "
                                            "save as .xlsx or 'CSV UTF-8'")
        else:
            records = _text_records(file, f, head, encoding)
        yield from _rows(file, records)


def read_cells(path: str | os.PathLike[str], *, encoding: str | None = None,
               sheet: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """Stream ``(line, cells)`` of any table file :func:`read_list` reads (same formats,
    encodings and line numbers), every row including the header, cells NFC and stripped,
    rows whose cells are all empty skipped. For tables other than recipient lists (a
    carrier's reported figures). Raises ListFileError like :func:`read_list`."""
    file = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ListFileError(file, None, f"cannot open: {exc.strerror or exc}") from None
    with f:
        head = f.read(_PREFIX_BYTES)
        if os.path.splitext(file)[1].lower() in _XLSX_EXTENSIONS or head.startswith(_ZIP_MAGIC):
            records: Iterator[tuple[int, list[str]]] = _xlsx_records(f, file, sheet)
        elif head.startswith(_OLE2_MAGIC):
            raise ListFileError(file, None, "Excel 97-2003 (.xls) is not supported: "
                                            "save as .xlsx or 'CSV UTF-8'")
        else:
            records = _text_records(file, f, head, encoding)
        for line, raw_cells in records:
            cells = [c.strip() if c.isascii() else _nfc(c) for c in raw_cells]
            if any(cells):
                yield line, cells

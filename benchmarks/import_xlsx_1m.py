"""Import a generated 1,000,000-row report-style XLSX (letterhead, title, two-row merged header,
STT, section rows, district cells merged over their rows, totals and signature rows, two
sheets) into SQLite; prints rows/s and peak memory.

    python benchmarks/import_xlsx_1m.py [--rows N] [--keep DIR]

Goal on a 2-core machine: under 60 s and under 300 MB peak (ru_maxrss of the importing
process and of the reader child). The workbook is written as Excel writes it (shared strings,
numbers as numbers) by this script, then imported by a fresh process.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PREFIXES = ["86", "96", "97", "98", "32", "33", "34", "35", "36", "37", "38", "39", "90", "93",
            "70", "76", "77", "78", "79", "88", "91", "94", "81", "82", "83", "84", "85", "92"]
DISTRICTS = [("Ninh Kiều", ["An Hòa", "Cái Khế", "An Khánh", "Xuân Khánh", "Hưng Lợi"]),
             ("Bình Thủy", ["Long Hòa", "Bùi Hữu Nghĩa", "An Thới", "Trà Nóc"]),
             ("Cái Răng", ["Phú Thứ", "Ba Láng", "Hưng Thạnh", "Lê Bình"]),
             ("Ô Môn", ["Phước Thới", "Long Hưng", "Thới Long", "Châu Văn Liêm"])]
BLOCK = 500  # rows per merged district cell
COLS = "ABCDEF"


class Strings:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.items: list[str] = []

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.items)
            self.items.append(s)
        return i


def _row(r: int, cells: list[object], sst: Strings) -> str:
    out = [f'<row r="{r}">']
    for col, v in zip(COLS, cells):
        if v is None or v == "":
            continue
        if isinstance(v, (int, float)):
            out.append(f'<c r="{col}{r}"><v>{v}</v></c>')
        else:
            out.append(f'<c r="{col}{r}" t="s"><v>{sst(str(v))}</v></c>')
    out.append("</row>")
    return "".join(out)


def _sheet(rows: int, sst: Strings, rng: random.Random, start_no: int) -> tuple[str, int]:
    lines: list[str] = []
    merges = ["A1:C1", "D1:F1", "A3:F3", "C4:D4", "A4:A5", "B4:B5", "E4:E5", "F4:F5"]
    lines.append(_row(1, ["UBND QUẬN NINH KIỀU", None, None, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"], sst))
    lines.append(_row(2, ["ĐT: 0292 3820 123", None, None, "Độc lập - Tự do - Hạnh phúc"], sst))
    lines.append(_row(3, ["DANH SÁCH NGƯỜI DÂN NHẬN TIN NHẮN PHÒNG, CHỐNG MUA BÁN NGƯỜI"], sst))
    lines.append(_row(4, ["STT", "Họ và tên", "Số điện thoại", None, "Phường/Xã", "Quận/Huyện"], sst))
    lines.append(_row(5, [None, None, "Cố định", "Di động", None, None], sst))
    r = 6
    done = 0
    while done < rows:
        district, wards = DISTRICTS[(done // BLOCK) % len(DISTRICTS)]
        lines.append(_row(r, [None, f"Khu vực {done // BLOCK + 1}"], sst))
        merges.append(f"B{r}:F{r}")
        r += 1
        first = r
        for _ in range(min(BLOCK, rows - done)):
            national = rng.choice(PREFIXES) + f"{rng.randrange(10_000_000):07d}"
            mobile: object = int(national) if rng.random() < 0.5 else "0" + national
            fixed = "0292 3" + f"{rng.randrange(1_000_000):06d}" if rng.random() < 0.1 else None
            lines.append(_row(r, [start_no + done + 1, f"Nguyễn Văn {done % 997}", fixed, mobile,
                                  rng.choice(wards), district if r == first else None], sst))
            r += 1
            done += 1
        merges.append(f"F{first}:F{r - 1}")
    lines.append(_row(r, ["Tổng cộng", None, None, rows], sst))
    lines.append(_row(r + 2, [None, "Người lập biểu", None, None, "TM. UBND PHƯỜNG"], sst))
    lines.append(_row(r + 5, [None, "Trần Thị B", None, None, "Lê Văn C"], sst))
    xml = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
           '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
           f'<dimension ref="A1:F{r + 5}"/><sheetData>' + "".join(lines) + "</sheetData>"
           f'<mergeCells count="{len(merges)}">'
           + "".join(f'<mergeCell ref="{m}"/>' for m in merges) + "</mergeCells></worksheet>")
    return xml, r + 5


def generate(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    sst = Strings()
    half = rows // 2
    s1, _ = _sheet(half, sst, rng, 0)
    s2, _ = _sheet(rows - half, sst, rng, half)
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rns = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    off = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    ct = ("application/vnd.openxmlformats-officedocument.spreadsheetml")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml",
                   '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/>'
                   f'<Override PartName="/xl/workbook.xml" ContentType="{ct}.sheet.main+xml"/>'
                   f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{ct}.worksheet+xml"/>'
                   f'<Override PartName="/xl/worksheets/sheet2.xml" ContentType="{ct}.worksheet+xml"/>'
                   f'<Override PartName="/xl/sharedStrings.xml" ContentType="{ct}.sharedStrings+xml"/></Types>')
        z.writestr("_rels/.rels", f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg}">'
                   f'<Relationship Id="rId1" Type="{off}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", f'<?xml version="1.0" encoding="UTF-8"?><workbook {ns} {rns}><sheets>'
                   '<sheet name="Phường An Hòa" sheetId="1" r:id="rId1"/>'
                   '<sheet name="Phường Cái Khế" sheetId="2" r:id="rId2"/></sheets></workbook>')
        z.writestr("xl/_rels/workbook.xml.rels", f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg}">'
                   f'<Relationship Id="rId1" Type="{off}/worksheet" Target="worksheets/sheet1.xml"/>'
                   f'<Relationship Id="rId2" Type="{off}/worksheet" Target="worksheets/sheet2.xml"/>'
                   f'<Relationship Id="rId3" Type="{off}/sharedStrings" Target="sharedStrings.xml"/></Relationships>')
        z.writestr("xl/worksheets/sheet1.xml", s1)
        z.writestr("xl/worksheets/sheet2.xml", s2)
        z.writestr("xl/sharedStrings.xml", f'<?xml version="1.0" encoding="UTF-8"?><sst {ns} count="{len(sst.items)}" '
                   f'uniqueCount="{len(sst.items)}">' + "".join(f"<si><t>{escape(s)}</t></si>" for s in sst.items)
                   + "</sst>")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--generate", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        generate(Path(args.generate), args.rows)
        return
    if args.child:
        xlsx_path, db_path = args.child
        from outreach.input import recipients
        from outreach.ledger.db import Database

        db = Database(f"sqlite:///{db_path}")
        db.upgrade()
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        s = recipients.import_files(db, [xlsx_path], list_name="bench")
        el = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds compare runs on a shared machine, where wall time follows the load
        cpu = (f"CPU {own.ru_utime + own.ru_stime:.1f} s (importing process) + "
               f"{kids.ru_utime + kids.ru_stime:.1f} s (reader process); load average "
               f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
        sheets = "; ".join(f"{sh.name}: header row {sh.header_line}, {sh.rows:,} rows, "
                           f"{sh.skipped} skipped, phone {sh.columns.get('phone')!r}"
                           for info in s.lists for sh in info.sheets)
        print(f"imported {s.rows_read:,} rows in {el:.1f} s = {s.rows_read / el:,.0f} rows/s; "
              f"peak memory {peak:.0f} MB (reader process {child:.0f} MB); imported "
              f"{s.imported:,}, rejected {s.rejected:,}, duplicates {s.duplicates:,}; "
              f"balanced={s.balanced}\n{cpu}\n{sheets}")
        return
    d = Path(args.keep or tempfile.mkdtemp())
    d.mkdir(parents=True, exist_ok=True)
    xlsx_path, db_path = d / "report-style.xlsx", d / "bench.db"
    t0 = time.perf_counter()
    # generated by a process of its own: Linux keeps a process's peak RSS across fork and exec
    # (ru_maxrss), so an importer started from a parent that held the workbook's strings would
    # report the generator's peak as its own
    subprocess.run([sys.executable, __file__, "--generate", str(xlsx_path), "--rows",
                    str(args.rows)], check=True)
    print(f"generated {args.rows:,} rows ({xlsx_path.stat().st_size / 1e6:.0f} MB) in "
          f"{time.perf_counter() - t0:.1f} s")
    db_path.unlink(missing_ok=True)
    subprocess.run([sys.executable, __file__, "--child", str(xlsx_path), str(db_path)], check=True)


if __name__ == "__main__":
    main()

"""Administrative documents in the layout of Decree 30/2020/NĐ-CP (công tác văn thư), as Word
files through python-docx: the one implementation the carriers' request letters
(``outreach.carriers.letters``) and the official results report (``outreach.reporting.official``)
share.

The rules, from the decree's appendix I ("Thể thức, kỹ thuật trình bày văn bản hành chính"):

- paper A4 (210 × 297 mm), margins top and bottom 20–25 mm, left 30–35 mm, right 15–20 mm
  (section II.1); font Times New Roman (II.2, a Unicode font of TCVN 6909:2001);
- top left, the superior body (tên cơ quan chủ quản: capitals, 12–13 pt, upright) over the
  issuing body (tên cơ quan ban hành: capitals, 12–13 pt, bold) with a solid rule under it of 1/3
  to 1/2 of its line, centred (II.4); under them ``Số: …/BC-STTTT`` (13 pt, II.5: "Số" in
  lower case with a colon, the symbol in capitals);
- top right, the national name (quốc hiệu ``CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM``: capitals,
  12–13 pt, bold) and the motto (tiêu ngữ ``Độc lập - Tự do - Hạnh phúc``: 13–14 pt, bold,
  hyphens between its phrases), each on one line, with a solid rule under the motto as long as
  its line (II.3); under them place and date, italic, 13–14 pt (II.6: ``Cần Thơ, ngày 02 tháng
  8 năm 2024``, days below 10 and the months 1 and 2 with a leading zero);
- the document type (tên loại: capitals, 13–14 pt, bold) and the summary (trích yếu: 13–14 pt,
  bold) centred, a rule of 1/3–1/2 of the line under the summary (II.7);
- at the end, bottom left ``Nơi nhận:`` (12 pt, bold italic) and its lines (11 pt, each
  starting with a hyphen, II.12), bottom right the signer's authority and title (capitals,
  13–14 pt, bold), the space for the signature and seal, and the signer's full name (13–14 pt,
  bold, II.8).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

FONT = "Times New Roman"  # Decree 30/2020, appendix I, II.2
QUOC_HIEU = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
TIEU_NGU = "Độc lập - Tự do - Hạnh phúc"


def decree30_date(d: dt.date, place: str = "") -> str:
    """``Cần Thơ, ngày 05 tháng 7 năm 2024``: days below 10 and the months 1 and 2 take a
    leading zero (Decree 30/2020/NĐ-CP, appendix I, section II.6)."""
    day = f"{d.day:02d}"
    month = f"{d.month:02d}" if d.month <= 2 else str(d.month)
    s = f"ngày {day} tháng {month} năm {d.year}"
    return f"{place}, {s}" if place else s


def new_document(*, font_size: float = 14) -> Any:
    """A python-docx ``Document``: A4, margins 20/20/30/15 mm (top, bottom, left, right), style
    ``Normal`` in Times New Roman ``font_size`` pt (13–14), no space after paragraphs."""
    from docx import Document
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt

    doc = Document()
    sec = doc.sections[0]
    sec.page_width, sec.page_height = Mm(210), Mm(297)
    sec.top_margin, sec.bottom_margin = Mm(20), Mm(20)
    sec.left_margin, sec.right_margin = Mm(30), Mm(15)
    style = doc.styles["Normal"]
    style.font.name = FONT
    style.font.size = Pt(font_size)
    style.element.rPr.rFonts.set(qn("w:eastAsia"), FONT)
    style.paragraph_format.space_after = Pt(0)
    # the document's language: Word spell-checks it as Vietnamese, not as the template's en-US
    for el in doc.styles.element.iter(qn("w:lang")):
        el.set(qn("w:val"), "vi-VN")
    return doc


def para(container: Any, text: str, *, bold: bool = False, italic: bool = False,
         size: float | None = None, align: str = "center", underline: bool = False,
         first: bool = False) -> Any:
    """Add one paragraph of one run to a document or table cell (``first``: fill the cell's
    existing empty paragraph instead). ``align``: ``center``, ``left``, ``right``, ``justify``."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    par = container.paragraphs[0] if first else container.add_paragraph()
    par.alignment = {"center": WD_ALIGN_PARAGRAPH.CENTER, "left": WD_ALIGN_PARAGRAPH.LEFT,
                     "right": WD_ALIGN_PARAGRAPH.RIGHT,
                     "justify": WD_ALIGN_PARAGRAPH.JUSTIFY}[align]
    run = par.add_run(text)
    run.bold, run.italic, run.underline = bold, italic, underline
    if size:
        run.font.size = Pt(size)
    return par


def rule(container: Any, *, width_mm: float, within_mm: float) -> Any:
    """A solid horizontal rule ``width_mm`` long, centred in a column ``within_mm`` wide: an empty
    paragraph of 2 pt with a bottom border, indented on both sides (the rules of Decree 30,
    appendix I, II.3, II.4 and II.7)."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt

    par = container.add_paragraph()
    side = max(0.0, (within_mm - width_mm) / 2)
    par.paragraph_format.left_indent = Mm(side)
    par.paragraph_format.right_indent = Mm(side)
    par.paragraph_format.space_after = Pt(4)
    run = par.add_run()
    run.font.size = Pt(2)
    ppr = par._p.get_or_add_pPr()
    bdr = OxmlElement("w:pBdr")
    bottom = OxmlElement("w:bottom")
    for k, v in (("w:val", "single"), ("w:sz", "6"), ("w:space", "1"), ("w:color", "000000")):
        bottom.set(qn(k), v)
    bdr.append(bottom)
    ppr.append(bdr)
    return par


def is_rule(paragraph: Any) -> bool:
    """Whether a python-docx paragraph is a rule written by :func:`rule` (for tests and tools)."""
    from docx.oxml.ns import qn

    ppr = paragraph._p.pPr
    return (ppr is not None and ppr.find(qn("w:pBdr")) is not None and not paragraph.text)


def _text_mm(text: str, size_pt: float) -> float:
    """A rough width of a line of capitals or text in Times New Roman (0.5 em a character)."""
    return len(text) * size_pt * 0.5 * 0.3528


def set_widths(table: Any, widths_mm: Sequence[float]) -> None:
    """Fixed column widths (mm) for every cell of ``table``: Word and LibreOffice otherwise
    re-fit the columns to their text, and the header's quốc hiệu would wrap."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Mm

    table.autofit = False
    tblpr = table._tbl.tblPr
    layout = tblpr.find(qn("w:tblLayout"))
    if layout is None:
        layout = OxmlElement("w:tblLayout")
        tblpr.append(layout)
    layout.set(qn("w:type"), "fixed")
    for col, w in zip(table.columns, widths_mm):
        col.width = Mm(w)
    for row in table.rows:
        for cell, w in zip(row.cells, widths_mm):
            cell.width = Mm(w)


def add_header(doc: Any, *, superior: str, org: str, number: str, date_line: str,
               subject: str = "") -> Any:
    """The top of the first page as a two-column borderless table: left the superior body (may
    be empty), the issuing body (bold) and a rule under it, ``Số: {number}``, and (letters, công
    văn) the subject line ``V/v …`` under the number; right the quốc hiệu, the tiêu ngữ
    (underlined, its rule as long as its line), and the place and date (italic). Returns the
    table."""
    from docx.enum.table import WD_TABLE_ALIGNMENT

    head = doc.add_table(rows=1, cols=2)
    head.alignment = WD_TABLE_ALIGNMENT.CENTER
    set_widths(head, (62, 103))
    left, right = head.rows[0].cells
    para(left, superior.upper(), size=12, first=True)
    para(left, org.upper(), bold=True, size=12)
    rule(left, width_mm=min(50.0, max(18.0, _text_mm(org, 12) / 2.5)), within_mm=62)
    para(left, f"Số: {number}", size=13)
    if subject:
        para(left, subject, size=12)
    para(right, QUOC_HIEU, bold=True, size=12, first=True)
    para(right, TIEU_NGU, bold=True, size=14, underline=True)
    para(right, date_line, italic=True, size=14)
    return head


def add_title(doc: Any, kind: str, summary: str) -> None:
    """The document type (``BÁO CÁO``) and its summary (trích yếu), bold and centred, with a rule
    under the summary (Decree 30, appendix I, II.7)."""
    doc.add_paragraph()
    para(doc, kind.upper(), bold=True, size=14)
    para(doc, summary, bold=True, size=14)
    rule(doc, width_mm=50, within_mm=165)


def add_body(doc: Any, text: str, *, italic: bool = False, bold: bool = False,
             indent: bool = True, align: str = "justify") -> Any:
    """A body paragraph: justified, first line indented 10 mm, 6 pt after (appendix I, II.9)."""
    from docx.shared import Mm, Pt

    par = para(doc, text, italic=italic, bold=bold, align=align)
    if indent:
        par.paragraph_format.first_line_indent = Mm(10)
    par.paragraph_format.space_after = Pt(6)
    return par


def add_table(doc: Any, header: Sequence[str], rows: Iterable[Sequence[Any]], *,
              bold_last: bool = False, size: float = 11.5, right_from: int | None = None,
              widths_mm: Sequence[float] | None = None) -> Any:
    """A grid table (style ``Table Grid``): bold header row, one row per item; cells are
    written as ``str``; columns from ``right_from`` on are right-aligned (figures);
    ``bold_last`` bolds the last row (a total); ``widths_mm`` fixes the column widths."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    rows = [list(r) for r in rows]
    t = doc.add_table(rows=1, cols=len(header))
    t.style = "Table Grid"

    def fill(cells: Any, values: Sequence[Any], bold: bool) -> None:
        for i, (cell, v) in enumerate(zip(cells, values)):
            cell.text = str(v)
            p = cell.paragraphs[0]
            if right_from is not None and i >= right_from:
                p.alignment = WD_ALIGN_PARAGRAPH.RIGHT
            for run in p.runs:
                run.font.size = Pt(size)
                run.bold = bold

    fill(t.rows[0].cells, header, True)
    for i, r in enumerate(rows):
        fill(t.add_row().cells, r, bold_last and i == len(rows) - 1)
    if widths_mm:
        set_widths(t, widths_mm)
    return t


def add_signature(doc: Any, *, cc: Sequence[str], signer_authority: str, signer_title: str,
                  signer_name: str) -> Any:
    """The end of the document as a two-column borderless table: left ``Nơi nhận:`` (bold
    italic, 12 pt) and its lines (11 pt, ``- `` before each), right the signer's authority
    (``KT. GIÁM ĐỐC``; may be empty), title (``PHÓ GIÁM ĐỐC``), room for signature and seal,
    and full name (bold; a blank line when not known yet). Returns the table."""
    doc.add_paragraph()
    foot = doc.add_table(rows=1, cols=2)
    set_widths(foot, (85, 80))
    left, right = foot.rows[0].cells
    para(left, "Nơi nhận:", bold=True, italic=True, size=12, align="left", first=True)
    for line in cc:
        para(left, f"- {line}", size=11, align="left")
    lines = [x for x in (signer_authority.upper(), signer_title.upper()) if x]
    para(right, lines[0] if lines else "", bold=True, first=True)
    for line in lines[1:]:
        para(right, line, bold=True)
    for _ in range(3):
        right.add_paragraph()
    para(right, signer_name or " ", bold=True)
    return foot


_C = "http://schemas.openxmlformats.org/drawingml/2006/chart"
_A = "http://schemas.openxmlformats.org/drawingml/2006/main"
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _col(i: int) -> str:
    """Spreadsheet column letters of a 0-based index (0 -> A, 26 -> AA)."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def add_bar_chart(doc: Any, *, by_day: Any, title: str, series: Sequence[tuple[str, str, str]],
                  categories: Sequence[tuple[str, str]], width_mm: float = 165,
                  height_mm: float = 80) -> None:
    """A native Word chart (DrawingML ``c:barChart``, stacked columns) with its data as an
    embedded workbook, so staff can restyle and edit it in Word.

    ``categories``: (key, label) per column (days); ``series``: (label, ``#rrggbb`` colour,
    key) per stacked state; ``by_day[category key][series key]`` the count (absent = 0). The
    chart part's cached values are the figures (``c:numCache``); the workbook (openpyxl)
    holds the same table. ECMA-376 part 1, §21.2 (DrawingML charts)."""
    from xml.sax.saxutils import escape as esc

    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml
    from docx.shared import Mm
    from openpyxl import Workbook

    package = doc.part.package
    n = 1 + sum(1 for p in package.iter_parts() if str(p.partname).startswith("/word/charts/"))
    ncat = len(categories)
    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(["", *(label for label, _c, _k in series)])
    for key, label in categories:
        ws.append([label, *(int((by_day.get(key) or {}).get(k, 0)) for _l, _c, k in series)])
    buf = io.BytesIO()
    wb.save(buf)
    cat_ref = f"Sheet1!$A$2:$A${ncat + 1}"
    cat_pts = "".join(f'<c:pt idx="{i}"><c:v>{esc(label)}</c:v></c:pt>'
                      for i, (_k, label) in enumerate(categories))
    sers = []
    for j, (label, colour, key) in enumerate(series):
        col = _col(j + 1)
        vals = "".join(f'<c:pt idx="{i}"><c:v>{int((by_day.get(ck) or {}).get(key, 0))}</c:v>'
                       "</c:pt>" for i, (ck, _l) in enumerate(categories))
        sers.append(
            f'<c:ser><c:idx val="{j}"/><c:order val="{j}"/>'
            f'<c:tx><c:strRef><c:f>Sheet1!${col}$1</c:f><c:strCache><c:ptCount val="1"/>'
            f'<c:pt idx="0"><c:v>{esc(label)}</c:v></c:pt></c:strCache></c:strRef></c:tx>'
            f'<c:spPr><a:solidFill><a:srgbClr val="{colour.lstrip("#").upper()}"/></a:solidFill>'
            '</c:spPr><c:invertIfNegative val="0"/>'
            f'<c:cat><c:strRef><c:f>{cat_ref}</c:f><c:strCache><c:ptCount val="{ncat}"/>'
            f'{cat_pts}</c:strCache></c:strRef></c:cat>'
            f'<c:val><c:numRef><c:f>Sheet1!${col}$2:${col}${ncat + 1}</c:f><c:numCache>'
            f'<c:formatCode>General</c:formatCode><c:ptCount val="{ncat}"/>{vals}</c:numCache>'
            '</c:numRef></c:val></c:ser>')

    def rich(text: str, size: int) -> str:
        return (f'<c:tx><c:rich><a:bodyPr/><a:p><a:pPr><a:defRPr sz="{size}" b="1"/></a:pPr>'
                f'<a:r><a:rPr lang="vi-VN" sz="{size}" b="1"><a:latin typeface="{FONT}"/>'
                f'</a:rPr><a:t>{esc(text)}</a:t></a:r></a:p></c:rich></c:tx>')

    txpr = (f'<c:txPr><a:bodyPr/><a:p><a:pPr><a:defRPr sz="1000"><a:latin typeface="{FONT}"/>'
            '</a:defRPr></a:pPr><a:endParaRPr lang="vi-VN"/></a:p></c:txPr>')
    xml = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
           f'<c:chartSpace xmlns:c="{_C}" xmlns:a="{_A}" xmlns:r="{_R}">'
           '<c:lang val="vi-VN"/><c:roundedCorners val="0"/><c:chart>'
           f'<c:title>{rich(title, 1200)}<c:overlay val="0"/></c:title>'
           '<c:autoTitleDeleted val="0"/><c:plotArea><c:layout/>'
           '<c:barChart><c:barDir val="col"/><c:grouping val="stacked"/>'
           f'<c:varyColors val="0"/>{"".join(sers)}<c:gapWidth val="50"/>'
           '<c:overlap val="100"/><c:axId val="5001"/><c:axId val="5002"/></c:barChart>'
           '<c:catAx><c:axId val="5001"/><c:scaling><c:orientation val="minMax"/></c:scaling>'
           '<c:delete val="0"/><c:axPos val="b"/><c:numFmt formatCode="General" '
           'sourceLinked="0"/><c:majorTickMark val="out"/><c:minorTickMark val="none"/>'
           f'<c:tickLblPos val="nextTo"/>{txpr}<c:crossAx val="5002"/>'
           '<c:crosses val="autoZero"/><c:auto val="1"/><c:lblAlgn val="ctr"/>'
           '<c:lblOffset val="100"/><c:noMultiLvlLbl val="0"/></c:catAx>'
           '<c:valAx><c:axId val="5002"/><c:scaling><c:orientation val="minMax"/></c:scaling>'
           '<c:delete val="0"/><c:axPos val="l"/><c:majorGridlines/>'
           f'<c:title>{rich("Số tin nhắn", 1000)}<c:overlay val="0"/></c:title>'
           '<c:numFmt formatCode="#,##0" sourceLinked="0"/><c:majorTickMark val="out"/>'
           f'<c:minorTickMark val="none"/><c:tickLblPos val="nextTo"/>{txpr}'
           '<c:crossAx val="5001"/><c:crosses val="autoZero"/><c:crossBetween val="between"/>'
           '</c:valAx></c:plotArea><c:legend><c:legendPos val="r"/><c:overlay val="0"/>'
           f'{txpr}</c:legend><c:plotVisOnly val="1"/><c:dispBlanksAs val="gap"/></c:chart>'
           '<c:externalData r:id="rId1"><c:autoUpdate val="0"/></c:externalData>'
           '</c:chartSpace>')
    chart = Part(PackURI(f"/word/charts/chart{n}.xml"),
                 "application/vnd.openxmlformats-officedocument.drawingml.chart+xml",
                 xml.encode("utf-8"), package)
    book = Part(PackURI(f"/word/embeddings/Microsoft_Excel_Sheet{n}.xlsx"),
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                buf.getvalue(), package)
    chart.relate_to(book, RT.PACKAGE)  # rId1: the chart's only relationship
    rid = doc.part.relate_to(chart, RT.CHART)
    par = doc.add_paragraph()
    par.alignment = 1  # centred
    cx, cy = int(Mm(width_mm)), int(Mm(height_mm))
    inline = parse_xml(
        '<w:drawing xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
        'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing">'
        f'<wp:inline distT="0" distB="0" distL="0" distR="0"><wp:extent cx="{cx}" cy="{cy}"/>'
        '<wp:effectExtent l="0" t="0" r="0" b="0"/>'
        f'<wp:docPr id="{1000 + n}" name="Biểu đồ {n}" descr="{esc(title)}"/>'
        f'<wp:cNvGraphicFramePr/><a:graphic xmlns:a="{_A}"><a:graphicData uri="{_C}">'
        f'<c:chart xmlns:c="{_C}" xmlns:r="{_R}" r:id="{rid}"/></a:graphicData></a:graphic>'
        '</wp:inline></w:drawing>')
    par.add_run()._r.append(inline)


def chart_values(doc: Any) -> list[dict[str, Any]]:
    """The native charts of a python-docx document, read back: per chart ``{"title",
    "categories", "series": {label: [values]}}`` from the chart parts' caches (tests, tools)."""
    from lxml import etree

    ns = {"c": _C, "a": _A}
    out = []
    for rel in doc.part.rels.values():
        if not rel.reltype.endswith("/chart"):
            continue
        root = etree.fromstring(rel.target_part.blob)
        title = "".join(root.xpath("c:chart/c:title//a:t/text()", namespaces=ns))
        series: dict[str, list[float]] = {}
        cats: list[str] = []
        for ser in root.xpath("//c:ser", namespaces=ns):
            label = "".join(ser.xpath("c:tx//c:v/text()", namespaces=ns))
            cats = ser.xpath("c:cat//c:pt/c:v/text()", namespaces=ns)
            series[label] = [float(v) for v in ser.xpath("c:val//c:pt/c:v/text()",
                                                         namespaces=ns)]
        out.append({"title": title, "categories": cats, "series": series})
    return out


def page_break(doc: Any) -> None:
    from docx.enum.text import WD_BREAK

    doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)


def to_bytes(doc: Any, *, title: str, author: str) -> bytes:
    """The document as ``.docx`` bytes, with its core properties (title, author)."""
    import datetime as dt

    props = doc.core_properties
    props.title = title
    props.author = props.last_modified_by = author
    props.language = "vi-VN"
    props.comments = ""  # not python-docx's "generated by python-docx"
    props.created = props.modified = dt.datetime.now(dt.timezone.utc).replace(microsecond=0,
                                                                              tzinfo=None)
    props.revision = 1
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()

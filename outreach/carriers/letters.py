"""The request letter to each operator (công văn, Decree 30/2020/NĐ-CP layout) as DOCX and PDF, and its machine-readable sheet (CSV, XLSX)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from pathlib import Path
from typing import Any

from outreach.input import text as textmod
from outreach.carriers import areas, registry
from outreach.carriers.plan import CARRIER_LIMIT_CHARS

from outreach.decree30 import FONT, decree30_date  # noqa: F401  (re-exported: one implementation)
from outreach.i18n import N_, _, current, label


class LetterError(Exception):
    """A letter that cannot be written as asked (PDF without WeasyPrint, unknown carrier)."""


def vn_date(d: dt.date) -> str:
    """``25/7/2024``."""
    return f"{d.day:02d}/{d.month:02d}/{d.year}"


def text_options(spec: Any) -> list[dict[str, Any]]:
    """The texts offered to the operators, in order: ``prescribed`` (byte for byte as the plan
    gives it, with diacritics), ``unaccented`` (the same words without diacritics, GSM-7),
    and ``short`` when the campaign records an approved shorter text. Each: ``option``,
    ``label`` (Vietnamese), ``text``, ``encoding``, ``characters``, ``units`` (septets or
    UTF-16 units), ``segments``, ``sha256``, ``fits_one`` (one SMS of at most 160 characters,
    what operators usually broadcast), ``approval`` (text)."""
    out = []
    for option, label, body, approval in (
            ("prescribed", "Nội dung nguyên văn (có dấu)", spec.text,
             f"{spec.source.document}, mục {spec.source.section}"),
            ("unaccented", "Nội dung nguyên văn, không dấu", textmod.unaccent(spec.text),
             f"{spec.source.document}, mục {spec.source.section} (bỏ dấu, không đổi từ ngữ)")):
        out.append(_option(option, label, body, approval))
    short = spec.carriers.short_text
    if short is not None:
        approval = f"{short.approved_by}, ngày {vn_date(short.approved_on)}"
        if short.approval_ref:
            approval += f" ({short.approval_ref})"
        out.append(_option("short", "Nội dung rút gọn đã được phê duyệt (không dấu)", short.text,
                           approval))
    return out


def _option(option: str, label: str, body: str, approval: str) -> dict[str, Any]:
    a = textmod.analyse(body)
    return {"option": option, "label": label, "text": body, "encoding": a.encoding,
            "characters": a.characters, "units": a.units, "segments": a.segments,
            "sha256": textmod.text_sha256(body),
            "fits_one": a.encoding == textmod.GSM7 and a.segments == 1
            and a.characters <= CARRIER_LIMIT_CHARS, "approval": approval}


def area_rows(spec: Any) -> list[dict[str, str]]:
    """The requested areas and the units directly below each (districts of a province), as
    {"code", "name", "level", "level_vi", "parent"} rows; requested units have parent ``""``."""
    plan = spec.carriers
    rows = []
    for code in plan.area:
        a = areas.lookup(code, plan.start_date)
        rows.append({"code": a.code, "name": a.label(), "level": a.level,
                     "level_vi": areas.LEVEL_VI[a.level], "parent": ""})
        for ch in areas.children(a, plan.start_date):
            if ch.level != "commune" or a.level == "district":
                rows.append({"code": ch.code, "name": ch.name, "level": ch.level,
                             "level_vi": areas.LEVEL_VI[ch.level], "parent": a.code})
    return rows


def carrier_for(spec: Any, key: str) -> registry.Carrier:
    c = registry.find_carrier(key)
    if c is None:
        raise LetterError(_("unknown operator {name}").format(name=repr(key)))
    place = spec.carriers.letter.place
    c = c.with_contact(unit=registry.unit_for(c.contact.unit, place))
    override = spec.carriers.contacts.get(c.key)
    return c.with_contact(**override) if override else c


def context(spec: Any, carrier: str, *, number: str | None = None,
            letter_date: dt.date | None = None) -> dict[str, Any]:
    """Everything the letter and the sheet show for one operator (strings in NFC)."""
    plan = spec.carriers
    c = carrier_for(spec, carrier)
    letter = plan.letter
    d = letter_date or letter.date or dt.date.today()
    options = text_options(spec)
    prescribed = options[0]
    src = spec.source
    return {
        "campaign": spec.id, "carrier": c.key, "carrier_company": c.company,
        "to": c.contact.unit or c.company, "contact_to": c.contact,
        "number": number or letter.number, "date": d, "date_line": decree30_date(d, letter.place),
        "superior": letter.superior, "org": letter.org, "subject": letter.subject,
        "signer_authority": letter.signer_authority, "signer_title": letter.signer_title,
        "signer_name": letter.signer_name, "cc": list(letter.cc),
        "source": f"Kế hoạch số {src.document} ngày {vn_date(src.date)} của {src.issuer}"
                  if "/KH" in src.document else f"văn bản số {src.document} ngày "
                  f"{vn_date(src.date)} của {src.issuer}",
        "source_title": src.title, "section": src.section,
        "options": options, "prescribed": prescribed,
        "too_long": not prescribed["fits_one"] and not options[1]["fits_one"],
        "limit": CARRIER_LIMIT_CHARS,
        "areas": area_rows(spec),
        "area_text": "; ".join(f"{r['name']} (mã {r['code']})" for r in area_rows(spec)
                               if not r["parent"]),
        "start": vn_date(plan.start_date), "end": vn_date(plan.end_date),
        "start_iso": plan.start_date.isoformat(), "end_iso": plan.end_date.isoformat(),
        "hours": f"{plan.daily_start:%H:%M}–{plan.daily_end:%H:%M}",
        "daily_start": f"{plan.daily_start:%H:%M}", "daily_end": f"{plan.daily_end:%H:%M}",
        "reply_by": vn_date(plan.reply_by), "results_by": vn_date(plan.results_by),
        "report_deadline": vn_date(plan.report_deadline),
        "reply_by_iso": plan.reply_by.isoformat(), "results_by_iso": plan.results_by.isoformat(),
        "report_deadline_iso": plan.report_deadline.isoformat(),
        "contact": plan.contact,
    }


def paragraphs(ctx: dict[str, Any]) -> list[tuple[str, str]]:
    """The body as (kind, text) pairs, shared by DOCX and HTML: kind ``p`` a paragraph,
    ``quote`` a message text (shown exactly), ``areas`` the area table marker."""
    p = ctx["prescribed"]
    un = ctx["options"][1]
    dash = "…"
    out: list[tuple[str, str]] = [
        ("p", f"Thực hiện {ctx['source']} về việc {_lower_first(ctx['source_title'])}"
              f" (mục {ctx['section']}: phối hợp với các doanh nghiệp viễn thông di động nhắn tin "
              f"tuyên truyền), Sở Thông tin và Truyền thông đề nghị {ctx['to']} phối hợp nhắn tin "
              "tuyên truyền đến các thuê bao di động trên địa bàn, cụ thể như sau:"
         if ctx["source_title"] else
         f"Thực hiện {ctx['source']}, mục {ctx['section']}, Sở Thông tin và Truyền thông đề "
         f"nghị {ctx['to']} phối hợp nhắn tin tuyên truyền đến các thuê bao di động trên địa "
         "bàn, cụ thể như sau:"),
        ("p", "1. Nội dung tin nhắn (nguyên văn theo Kế hoạch):"),
        ("quote", p["text"]),
        ("p", f"Nội dung có {p['characters']} ký tự; gửi có dấu là {p['segments']} tin nhắn "
              f"(mã {p['encoding']}); mã kiểm tra SHA-256: {p['sha256']}."),
    ]
    if ctx["too_long"]:
        out.append(("p", f"2. Phương án gửi: doanh nghiệp thường nhắn tin không dấu, tối đa "
                         f"{ctx['limit']} ký tự một tin; nội dung trên dài {p['characters']} ký "
                         "tự nên không vừa một tin nhắn. Đề nghị doanh nghiệp chọn một trong các "
                         "phương án sau và cho biết phương án đã chọn:"))
    else:
        out.append(("p", "2. Phương án gửi:"))
    out.append(("p", f"a) Nhắn nguyên văn nội dung, không dấu ({un['characters']} ký tự, mã "
                     f"{un['encoding']}, {un['segments']} tin nhắn ghép; SHA-256: "
                     f"{un['sha256']}):"))
    out.append(("quote", un["text"]))
    if len(ctx["options"]) > 2:
        s = ctx["options"][2]
        out.append(("p", f"b) Nhắn nội dung rút gọn đã được phê duyệt ({s['approval']}): "
                         f"{s['characters']} ký tự, mã {s['encoding']}, {s['segments']} tin "
                         f"nhắn; SHA-256: {s['sha256']}:"))
        out.append(("quote", s["text"]))
    else:
        out.append(("p", "b) Chưa có nội dung rút gọn được phê duyệt: đề nghị doanh nghiệp không "
                         "tự rút gọn hay sửa đổi nội dung tin nhắn."))
    out += [
        ("p", f"3. Phạm vi: các thuê bao di động đang hoạt động trên địa bàn {ctx['area_text']}, "
              "gồm các đơn vị hành chính sau (mã theo danh mục đơn vị hành chính Việt Nam):"),
        ("areas", ""),
        ("p", f"4. Thời gian nhắn tin: từ ngày {ctx['start']} đến ngày {ctx['end']}, trong khung "
              f"giờ {ctx['hours']} hằng ngày."),
        ("p", f"5. Đề nghị doanh nghiệp xác nhận phương án, thương hiệu (brandname) hoặc đầu số "
              f"gửi tin trước ngày {ctx['reply_by']}; báo cáo kết quả (số thuê bao đã được nhắn "
              f"tin theo từng ngày và theo từng quận, huyện) trước ngày {ctx['results_by']} theo "
              "bảng tính gửi kèm, để Sở tổng hợp báo cáo Ủy ban nhân dân thành phố trước ngày "
              f"{ctx['report_deadline']}."),
        ("p", "6. Đầu mối liên hệ của Sở: "
              + ", ".join(x for x in (ctx["contact"].name or dash, ctx["contact"].unit,
                                      f"điện thoại {ctx['contact'].phone or dash}",
                                      f"thư điện tử {ctx['contact'].email or dash}") if x) + "."),
        ("p", f"Sở Thông tin và Truyền thông đề nghị {ctx['to']} quan tâm, phối hợp thực "
              "hiện./."),
    ]
    return out


def _lower_first(s: str) -> str:
    s = re.sub(r"^(Kế hoạch|Quyết định|Chỉ thị|Công văn|Văn bản)\s+(về việc\s+)?", "", s)
    return s[:1].lower() + s[1:] if s else s


# --- DOCX ------------------------------------------------------------------------------------

def docx_bytes(ctx: dict[str, Any]) -> bytes:
    """The letter as a Word file (python-docx) in the layout of :mod:`outreach.decree30`: A4,
    Times New Roman 14, the header (agency and number left, quốc hiệu, tiêu ngữ and date right),
    ``Kính gửi``, the body, ``Nơi nhận`` and the signer."""
    from outreach import decree30 as d30

    doc = d30.new_document()
    d30.add_header(doc, superior=ctx["superior"], org=ctx["org"], number=ctx["number"],
                   date_line=ctx["date_line"], subject=ctx["subject"])
    doc.add_paragraph()
    d30.para(doc, f"Kính gửi: {ctx['to']}")
    doc.add_paragraph()
    for kind, text in paragraphs(ctx):
        if kind == "areas":
            d30.add_table(doc, ("Mã", "Đơn vị hành chính", "Cấp"),
                          [(a["code"], a["name"], a["level_vi"]) for a in ctx["areas"]],
                          size=14)
            continue
        if kind == "quote":
            d30.add_body(doc, f"“{text}”", italic=True)
        else:
            # a 64-digit hash cannot be justified without stretching the line's spaces
            d30.add_body(doc, text, align="left" if "SHA-256" in text else "justify")
    d30.add_signature(doc, cc=ctx["cc"], signer_authority=ctx["signer_authority"],
                      signer_title=ctx["signer_title"], signer_name=ctx["signer_name"])
    return d30.to_bytes(doc, title=f"Công văn đề nghị {ctx['carrier']} nhắn tin – "
                                   f"{ctx['campaign']}", author=ctx["org"])


# --- HTML and PDF ----------------------------------------------------------------------------

def html(ctx: dict[str, Any]) -> str:
    """The letter as one self-contained A4 HTML page (templates/carrier_request.html), NFC."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("outreach", "templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    out = env.get_template("carrier_request.html").render(c=ctx, body=paragraphs(ctx))
    return unicodedata.normalize("NFC", out)


def pdf_bytes(ctx: dict[str, Any]) -> bytes:
    """The letter as PDF through WeasyPrint, the official report's renderer (optional:
    ``pip install 'outreach[pdf]'`` and Pango). Raises LetterError when WeasyPrint is missing."""
    try:
        from weasyprint import HTML  # type: ignore[import-not-found]
    except (ImportError, OSError) as exc:
        raise LetterError(_("PDF needs WeasyPrint, not installed here ({error}); "
                            "`pip install 'outreach[pdf]'` (WeasyPrint, and Pango), or print the "
                            "DOCX to PDF").format(error=type(exc).__name__)) from None
    return HTML(string=html(ctx)).write_pdf()


def pdf_available() -> bool:
    try:
        import weasyprint  # type: ignore[import-not-found]  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


# --- sheets ----------------------------------------------------------------------------------

SHEET_COLUMNS = ("campaign", "carrier", "letter_number", "option", "text", "encoding",
                 "characters", "units", "segments", "fits_one_sms", "sha256", "approval",
                 "area_codes", "area_names", "start_date", "end_date", "daily_start", "daily_end",
                 "reply_by", "results_by", "report_deadline", "contact_name", "contact_unit",
                 "contact_phone", "contact_email")


#: The text options the letters offer: code → English words (a msgid; the console shows them,
#: and the Vietnamese sheet).
OPTION_LABELS = {"prescribed": N_("prescribed"), "unaccented": N_("unaccented"),
                 "short": N_("short")}

#: The sheet's column (:data:`SHEET_COLUMNS`) → its heading in the Vietnamese interface (a
#: context-marked msgid, :func:`outreach.i18n.label`); the English sheet is headed by the
#: column names themselves, as it always was.
SHEET_HEADINGS = {
    "campaign": N_("sheet|campaign"), "carrier": N_("sheet|carrier"),
    "letter_number": N_("sheet|letter_number"), "option": N_("sheet|option"),
    "text": N_("sheet|text"), "encoding": N_("sheet|encoding"),
    "characters": N_("sheet|characters"), "units": N_("sheet|units"),
    "segments": N_("sheet|segments"), "fits_one_sms": N_("sheet|fits_one_sms"),
    "sha256": N_("sheet|sha256"), "approval": N_("sheet|approval"),
    "area_codes": N_("sheet|area_codes"), "area_names": N_("sheet|area_names"),
    "start_date": N_("sheet|start_date"), "end_date": N_("sheet|end_date"),
    "daily_start": N_("sheet|daily_start"), "daily_end": N_("sheet|daily_end"),
    "reply_by": N_("sheet|reply_by"), "results_by": N_("sheet|results_by"),
    "report_deadline": N_("sheet|report_deadline"), "contact_name": N_("sheet|contact_name"),
    "contact_unit": N_("sheet|contact_unit"), "contact_phone": N_("sheet|contact_phone"),
    "contact_email": N_("sheet|contact_email"),
}


def sheet_table(ctx: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The sheet in the interface language: its headings and one list of values per text
    option (the columns of :data:`SHEET_COLUMNS`). English: the column names and the codes
    (``prescribed``, ``yes``/``no``), as before; Vietnamese: :data:`SHEET_HEADINGS` and the
    option and the yes/no in words (``nguyên văn có dấu``, ``không``)."""
    rows = sheet_rows(ctx)
    if current() == "en":
        return list(SHEET_COLUMNS), [[r[c] for c in SHEET_COLUMNS] for r in rows]
    out = []
    for r in rows:
        r = dict(r, option=_(OPTION_LABELS.get(r["option"], r["option"])),
                 fits_one_sms=_("yes") if r["fits_one_sms"] == "yes" else _("no"))
        out.append([r[c] for c in SHEET_COLUMNS])
    return [label(SHEET_HEADINGS[c]) for c in SHEET_COLUMNS], out


def sheet_rows(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per text option with everything an operator's system needs (:data:`SHEET_COLUMNS`)."""
    top = [a for a in ctx["areas"] if not a["parent"]]
    rows = []
    for o in ctx["options"]:
        rows.append({
            "campaign": ctx["campaign"], "carrier": ctx["carrier"],
            "letter_number": ctx["number"].strip(), "option": o["option"], "text": o["text"],
            "encoding": o["encoding"], "characters": o["characters"], "units": o["units"],
            "segments": o["segments"], "fits_one_sms": "yes" if o["fits_one"] else "no",
            "sha256": o["sha256"], "approval": o["approval"],
            "area_codes": ";".join(a["code"] for a in top),
            "area_names": ";".join(a["name"] for a in top),
            "start_date": ctx["start_iso"], "end_date": ctx["end_iso"],
            "daily_start": ctx["daily_start"], "daily_end": ctx["daily_end"],
            "reply_by": ctx["reply_by_iso"], "results_by": ctx["results_by_iso"],
            "report_deadline": ctx["report_deadline_iso"],
            "contact_name": ctx["contact"].name, "contact_unit": ctx["contact"].unit,
            "contact_phone": ctx["contact"].phone, "contact_email": ctx["contact"].email})
    return rows


def csv_text(ctx: dict[str, Any]) -> str:
    """The sheet as CSV (comma, quoted where needed, CRLF as Excel writes it), headed and worded
    in the interface language (:func:`sheet_table`)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    headings, rows = sheet_table(ctx)
    w.writerow(headings)
    w.writerows(rows)
    return buf.getvalue()


RESULT_HEADERS = ("Ngày", "Mã địa bàn", "Địa bàn", "Số thuê bao đã nhắn tin", "Thành công")


def xlsx_bytes(ctx: dict[str, Any]) -> bytes:
    """The sheet as XLSX: ``Tin nhắn`` (the text options), ``Địa bàn`` (codes), ``Thông tin``
    (dates, deadlines, contact) and ``Báo cáo kết quả``, the form the operator fills in and
    sends back (one row per day and district; ``outreach carriers result`` reads it)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    ws.title = "Tin nhắn"
    headings, rows = sheet_table(ctx)
    ws.append(headings)
    for r in rows:
        ws.append(r)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.column_dimensions["E"].width = 80
    for row in ws.iter_rows(min_row=2, min_col=5, max_col=5):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
            cell.number_format = "@"
    wa = wb.create_sheet("Địa bàn")
    wa.append(["Mã", "Đơn vị hành chính", "Cấp", "Thuộc (mã)"])
    for a in ctx["areas"]:
        wa.append([a["code"], a["name"], a["level_vi"], a["parent"]])
    for row in wa.iter_rows(min_row=2, max_col=1):
        for cell in row:
            cell.number_format = "@"
    wi = wb.create_sheet("Thông tin")
    for k, v in (("Chiến dịch", ctx["campaign"]), ("Doanh nghiệp", ctx["carrier_company"]),
                 ("Kính gửi", ctx["to"]), ("Số công văn", ctx["number"].strip()),
                 ("Ngày công văn", ctx["date"].isoformat()), ("Căn cứ", ctx["source"]),
                 ("Từ ngày", ctx["start_iso"]), ("Đến ngày", ctx["end_iso"]),
                 ("Khung giờ", ctx["hours"]), ("Xác nhận trước ngày", ctx["reply_by_iso"]),
                 ("Báo cáo kết quả trước ngày", ctx["results_by_iso"]),
                 ("Hạn báo cáo của thành phố", ctx["report_deadline_iso"]),
                 ("Đầu mối", ctx["contact"].name), ("Đơn vị", ctx["contact"].unit),
                 ("Điện thoại", ctx["contact"].phone), ("Thư điện tử", ctx["contact"].email)):
        wi.append([k, v])
    wr = wb.create_sheet("Báo cáo kết quả")
    wr.append(list(RESULT_HEADERS))
    start, end = dt.date.fromisoformat(ctx["start_iso"]), dt.date.fromisoformat(ctx["end_iso"])
    units = [a for a in ctx["areas"] if a["parent"]] or [a for a in ctx["areas"]]
    day = start
    while day <= end:
        for a in units:
            wr.append([day.strftime("%d/%m/%Y"), a["code"], a["name"], None, None])
        day += dt.timedelta(days=1)
    for ws_ in (wa, wi, wr):
        for cell in ws_[1]:
            cell.font = Font(bold=True)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def file_stem(ctx: dict[str, Any]) -> str:
    """``cantho-2024-pcmbn-viettel``: the files' common name."""
    return f"{ctx['campaign']}-{re.sub(r'[^a-z0-9]+', '-', ctx['carrier'].lower()).strip('-')}"


def write_all(ctx: dict[str, Any], out_dir: Path, *, pdf: bool) -> list[Path]:
    """Write ``<stem>.docx``, ``<stem>.pdf`` (when ``pdf``), ``<stem>.csv`` (UTF-8 with BOM, for
    Excel) and ``<stem>.xlsx`` into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = file_stem(ctx)
    paths = [out_dir / f"{stem}.docx"]
    paths[0].write_bytes(docx_bytes(ctx))
    if pdf:
        p = out_dir / f"{stem}.pdf"
        p.write_bytes(pdf_bytes(ctx))
        paths.append(p)
    p = out_dir / f"{stem}.csv"
    p.write_text(csv_text(ctx), encoding="utf-8-sig", newline="")
    paths.append(p)
    p = out_dir / f"{stem}.xlsx"
    p.write_bytes(xlsx_bytes(ctx))
    paths.append(p)
    return paths

"""The official report as a signed document (Decree 30/2020/NĐ-CP): the DOCX opened with
python-docx, each element of the layout checked, every figure compared with `report --format
json`; the PDF rendered and its first page turned into an image."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from docx import Document

from outreach import decree30
from outreach.ledger.db import Database
from outreach.reporting import official
from tests.conftest import PLAN_TEXT
from tests.test_reports import CID, cli, db, phone, seeded  # noqa: F401  (fixtures)


def _json(db: Database) -> dict[str, Any]:
    code, out, err = cli(db, "report", CID, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def _docx(db: Database, tmp_path: Path, *extra: str) -> Any:
    out = tmp_path / "bao-cao.docx"
    code, stdout, err = cli(db, "report", CID, "--official", "--out", str(out), *extra)
    assert code == 0, err
    assert "official report of cantho-2024-pcmbn written" in stdout
    return Document(str(out))


def _cells(table: Any) -> list[list[str]]:
    return [[c.text for c in row.cells] for row in table.rows]


def _table(doc: Any, first: str, nth: int = 0, second: str | None = None) -> list[list[str]]:
    found = [_cells(t) for t in doc.tables if _cells(t)[0][0] == first
             and (second is None or _cells(t)[0][1] == second)]
    assert found, f"no table headed {first!r}"
    return found[nth]


def n(v: float) -> str:
    return f"{round(v):,}".replace(",", ".")


def pct(r: float | None) -> str:
    return "–" if r is None else f"{r * 100:.2f}".replace(".", ",") + "%"


def test_docx_has_every_decree30_element(seeded: Database, tmp_path: Path) -> None:
    doc = _docx(seeded, tmp_path, "--number", "45/BC-STTTT", "--signer-name", "Nguyễn Văn A")
    sec = doc.sections[0]
    mm = lambda v: round(v.mm, 1)  # noqa: E731  (Word stores twips)
    assert (mm(sec.page_width), mm(sec.page_height)) == (210, 297)  # A4
    assert tuple(map(mm, (sec.top_margin, sec.bottom_margin, sec.left_margin,
                          sec.right_margin))) == (20, 20, 30, 15)
    assert doc.styles["Normal"].font.name == "Times New Roman"
    assert 13 <= doc.styles["Normal"].font.size.pt <= 14

    head = doc.tables[0]
    left, right = head.rows[0].cells
    lp = [p for p in left.paragraphs]
    assert [p.text for p in lp if p.text] == ["ỦY BAN NHÂN DÂN THÀNH PHỐ CẦN THƠ",
                                              "SỞ THÔNG TIN VÀ TRUYỀN THÔNG", "Số: 45/BC-STTTT"]
    org = next(p for p in lp if p.text == "SỞ THÔNG TIN VÀ TRUYỀN THÔNG")
    assert org.runs[0].bold
    assert decree30.is_rule(lp[lp.index(org) + 1])  # a rule under the issuing body
    rp = [p for p in right.paragraphs if p.text]
    # quốc hiệu and tiêu ngữ each one paragraph (one line), bold; the tiêu ngữ underlined
    assert rp[0].text == "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" and rp[0].runs[0].bold
    assert rp[1].text == "Độc lập - Tự do - Hạnh phúc" and rp[1].runs[0].bold
    assert rp[1].runs[0].underline
    assert rp[2].text == "Cần Thơ, ngày 02 tháng 8 năm 2024" and rp[2].runs[0].italic

    paras = [p for p in doc.paragraphs]
    texts = [p.text for p in paras]
    i = texts.index("BÁO CÁO")
    assert paras[i].runs[0].bold
    assert texts[i + 1] == ("Kết quả nhắn tin tuyên truyền hưởng ứng “Ngày toàn dân phòng, chống "
                            "mua bán người 30 tháng 7” năm 2024") and paras[i + 1].runs[0].bold
    assert decree30.is_rule(paras[i + 2])  # under the trích yếu
    assert "Kính gửi: Ủy ban nhân dân thành phố Cần Thơ (qua Công an thành phố)" in texts
    body = "\n".join(texts)
    assert body.index("Kính gửi") > i
    assert ("Thực hiện Kế hoạch số 126/KH-UBND ngày 25/6/2024 của Ủy ban nhân dân thành phố Cần "
            "Thơ, mục II.6.b về việc triển khai hoạt động hưởng ứng") in body
    assert f"“{PLAN_TEXT}”" in texts  # the message byte for byte
    for heading in ("I. NỘI DUNG VÀ THỜI GIAN THỰC HIỆN", "II. KẾT QUẢ THỰC HIỆN",
                    "III. TIN NHẮN KHÔNG THÀNH CÔNG VÀ BIỆN PHÁP XỬ LÝ",
                    "IV. TIN NHẮN TRẢ LỜI CỦA NGƯỜI DÂN"):
        assert heading in texts
    assert ("kính báo cáo Ủy ban nhân dân thành phố Cần Thơ (qua Công an thành phố)./."
            in body)
    assert "BẢN CHẠY THỬ" not in body  # sent through Twilio: no trial banner

    foot = next(t for t in doc.tables if t.rows[0].cells[0].paragraphs[0].text == "Nơi nhận:")
    cc, signer = foot.rows[0].cells
    title = cc.paragraphs[0]
    assert title.runs[0].bold and title.runs[0].italic
    assert [p.text for p in cc.paragraphs[1:]] == [
        "- UBND thành phố (qua Công an thành phố);",
        "- Công an thành phố (Cơ quan thường trực BCĐ 138/TP);",
        "- Giám đốc, các Phó Giám đốc Sở;", "- Lưu: VT, TTBCXB."]
    lines = [p.text for p in signer.paragraphs if p.text.strip()]
    assert lines == ["KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC", "Nguyễn Văn A"]
    assert len(signer.paragraphs) - len(lines) >= 3  # room for the signature and the seal
    # the appendix follows on its own page, with the chart as a native Word chart
    assert "PHỤ LỤC" in texts and texts.index("PHỤ LỤC") > texts.index("BÁO CÁO")
    assert "(Kèm theo Báo cáo số 45/BC-STTTT ngày 2/8/2024 của Sở Thông tin và Truyền thông)" \
        in texts
    assert all(unicodedata.is_normalized("NFC", t) for t in texts)
    assert "+8490555" not in body and "Người 1" not in body  # no personal data


def test_every_docx_figure_equals_the_json_report(seeded: Database, tmp_path: Path) -> None:
    doc = _docx(seeded, tmp_path)
    rep = _json(seeded)
    body = "\n".join(p.text for p in doc.paragraphs)
    assert (f"đã gửi tin nhắn đến {n(rep['recipients'])} người nhận, trong đó "
            f"{n(rep['reached'])} người đã nhận được tin nhắn ({pct(rep['reach_rate'])}). Tổng số "
            f"{n(rep['deliveries'])} tin nhắn, trong đó {n(rep['attempted'])} tin đã gửi đi: "
            f"{n(rep['delivered'])} tin đã đến máy người nhận, {n(rep['failures'])} tin không "
            f"thành công, {n(rep['awaiting'])} tin chưa xác định kết quả; "
            f"{n(rep['not_sent'])} tin không gửi") in body
    assert f"Tỷ lệ tin đến máy người nhận trên số tin đã gửi: {pct(rep['delivery_rate'])}" in body
    assert (f"Số bản tin SMS tính cước: {n(rep['segments'])}; chi phí {n(rep['cost_vnd'])} đồng"
            in body)
    by = rep["by_status"]
    assert (f"Có {n(rep['failures'])} tin không thành công ({n(by['failed'])} tin nhà cung cấp "
            f"báo không gửi được, {n(by['undelivered'])} tin không đến được") in body
    failed = [r for r in rep["failure_reasons"] if r["status"] in ("failed", "undelivered")]
    assert "các lý do chính: " + "; ".join(
        f"{official.REASON_VI[r['error_reason']]} ({n(r['count'])} tin)" for r in failed[:5]) in body
    assert f"Đã gửi lại {n(rep['resends'])} tin" in body and rep["resends"] == 1
    assert f"{n(by['unknown'])} tin không xác định được đã gửi hay chưa" in body
    assert f"{n(by['opted_out'])} tin không gửi vì người nhận đã từ chối nhận tin" in body
    chans = "; ".join(f"{official.CHANNEL_VI[c]}: {n(sum(v.values()))} tin"
                      for c, v in rep["by_channel"].items())
    assert f"3. Kênh gửi: {chans}." in body
    # replies: none recorded, and the text says which channel is recorded, never a guess
    assert rep["replies"]["total"] == 0 and rep["replies"]["optouts"] == 0
    assert "Chưa ghi nhận tin nhắn trả lời nào của người dân (0 tin)" in body

    def outcome_row(i: int, name: str, counts: dict[str, int]) -> list[str]:
        from outreach.reporting.reports import outcome

        o = outcome(counts)
        return [str(i), name, n(o["deliveries"]), n(o["attempted"]), n(o["delivered"]),
                n(o["failures"]), pct(o["delivery_rate"])]

    total_row = ["", "Tổng cộng", n(rep["deliveries"]), n(rep["attempted"]), n(rep["delivered"]),
                 n(rep["failures"]), pct(rep["delivery_rate"])]
    names = sorted(rep["by_district"], key=lambda k: (k == "(không rõ)", k))
    expected = [outcome_row(i, k, rep["by_district"][k]) for i, k in enumerate(names, 1)]
    for nth in (0, 1):  # in the body, and again in the appendix
        # a 2024 campaign: the districts before the reform
        t = _table(doc, "STT", nth, second="Quận, huyện")
        assert t[1:] == expected + [total_row]
    carriers = next(_cells(t) for t in doc.tables if _cells(t)[0][:2] == ["STT", "Nhà mạng"])
    names = sorted(rep["by_carrier"], key=lambda k: (k == "(không rõ)", k))
    assert carriers[1:] == [outcome_row(i, k, rep["by_carrier"][k])
                            for i, k in enumerate(names, 1)] + [total_row]
    totals = {r[0]: r[1] for r in _table(doc, "Chỉ tiêu")[1:]}
    assert totals == {
        "Số người nhận (số thuê bao trong danh sách được gửi)": n(rep["recipients"]),
        "Số người đã nhận được tin nhắn": f"{n(rep['reached'])} ({pct(rep['reach_rate'])})",
        "Tổng số tin nhắn": n(rep["deliveries"]), "– Số tin đã gửi đi": n(rep["attempted"]),
        "+ Đã đến máy người nhận": n(rep["delivered"]), "+ Không thành công": n(rep["failures"]),
        "+ Chưa xác định kết quả": n(rep["awaiting"]),
        "– Số tin không gửi (từ chối nhận tin, bỏ qua, chờ gửi)": n(rep["not_sent"]),
        "Tỷ lệ tin đến máy người nhận trên số tin đã gửi": pct(rep["delivery_rate"]),
        "Số bản tin SMS tính cước (tin dài được tách thành nhiều bản tin)": n(rep["segments"]),
        "Chi phí (đồng)": n(rep["cost_vnd"])}
    days = _table(doc, "Ngày")
    assert days[1:] == [[official.vn_date(d), n(sum(v.values())), n(v.get("delivered", 0))]
                        for d, v in rep["by_day"].items()]
    reasons = _table(doc, "Trạng thái")
    assert [r[-1] for r in reasons[1:-1]] == [n(r["count"]) for r in rep["failure_reasons"]]
    assert reasons[-1][0] == "Tổng cộng"
    assert reasons[-1][-1] == n(sum(r["count"] for r in rep["failure_reasons"]))
    # the chart: one native chart, its cached values the JSON's days and states
    charts = decree30.chart_values(doc)
    assert len(charts) == 1 and charts[0]["title"] == official.CHART_TITLE
    days_sorted = sorted(rep["by_day"])
    assert charts[0]["categories"] == [official.vn_date(d) for d in days_sorted]
    for state in {s for v in rep["by_day"].values() for s in v}:
        assert charts[0]["series"][official.STATUS_VI[state]] == [
            float(rep["by_day"][d].get(state, 0)) for d in days_sorted]


def test_replies_recorded_on_every_channel_are_counted_and_said(seeded: Database,
                                                               tmp_path: Path) -> None:
    from outreach.receipts import inbound

    at = dt.datetime(2024, 7, 29, 5, 0, tzinfo=dt.timezone.utc)  # 12:00 in Cần Thơ, 29 July
    replies = [("sms", "smpp", "m1", phone(1), "TU CHOI"), ("sms", "twilio", "m2", phone(3), "Đã nhận"),
               ("sms", "smpp", "m3", phone(4), "cảm ơn"), ("sms", "smpp", "m1", phone(1), "TU CHOI")]
    with seeded.engine.begin() as conn:
        for channel, gateway, mid, sender, text in replies:  # the last one is a repeat of m1
            inbound.record_inbound(conn, inbound.Inbound(
                channel=channel, gateway=gateway, provider_message_id=mid, sender=sender,
                text=text, received_at=at), now=at)
    rep = _json(seeded)
    assert rep["replies"]["total"] == 3 and rep["replies"]["by_kind"]["optout"] == 1
    assert rep["replies"]["by_kind"]["message"] == 2
    body = "\n".join(p.text for p in _docx(seeded, tmp_path).paragraphs)
    assert ("Đã nhận 3 tin nhắn trả lời của người dân (SMS): 1 tin từ chối nhận tin (nhắn từ "
            "khóa), 0 lượt bỏ quan tâm Zalo OA, 0 tin đăng ký nhận lại, 2 phản hồi khác.") in body


def test_document_fields_from_options_override_the_campaign_file(seeded: Database,
                                                                  tmp_path: Path) -> None:
    doc = _docx(seeded, tmp_path, "--date", "2024-08-01", "--signer-authority", "",
                "--signer-title", "Giám đốc", "--to", "Ủy ban nhân dân thành phố Cần Thơ")
    right = doc.tables[0].rows[0].cells[1]
    assert "Cần Thơ, ngày 01 tháng 8 năm 2024" in [p.text for p in right.paragraphs]
    foot = next(t for t in doc.tables if t.rows[0].cells[0].paragraphs[0].text == "Nơi nhận:")
    assert [p.text for p in foot.rows[0].cells[1].paragraphs if p.text.strip()] == ["GIÁM ĐỐC"]
    assert "Kính gửi: Ủy ban nhân dân thành phố Cần Thơ" in [p.text for p in doc.paragraphs]
    left = doc.tables[0].rows[0].cells[0]
    assert "Số:       /BC-STTTT" in [p.text for p in left.paragraphs]  # a blank for the clerk
    code, _, err = cli(seeded, "report", CID, "--official", "--out", str(tmp_path / "x.docx"),
                       "--date", "2 tháng 8")
    assert code == 2 and "not a date" in err


def test_decree30_date_leading_zeros() -> None:
    assert decree30.decree30_date(dt.date(2024, 8, 2), "Cần Thơ") == \
        "Cần Thơ, ngày 02 tháng 8 năm 2024"
    assert decree30.decree30_date(dt.date(2025, 2, 15)) == "ngày 15 tháng 02 năm 2025"
    assert decree30.decree30_date(dt.date(2024, 11, 9)) == "ngày 09 tháng 11 năm 2024"


def test_pdf_first_page_renders_to_a_non_empty_image(seeded: Database, tmp_path: Path) -> None:
    pdfium = pytest.importorskip("pypdfium2")
    out = tmp_path / "bao-cao.pdf"
    code, _, err = cli(seeded, "report", CID, "--official", "--out", str(out))
    assert code == 0, err
    pdf = pdfium.PdfDocument(str(out))
    assert len(pdf) >= 3  # the report, then the appendix on its own pages
    page = pdf[0]
    w, h = page.get_size()
    assert (round(w / 72 * 25.4), round(h / 72 * 25.4)) == (210, 297)  # A4 in mm
    text = page.get_textpage().get_text_range()
    assert "BÁO CÁO" in text and "Độc lập - Tự do - Hạnh phúc" in text
    assert "Cần Thơ, ngày 02 tháng 8 năm 2024" in text
    image = page.render(scale=1).to_pil().convert("L")
    hist = image.histogram()
    dark = sum(hist[:128])
    assert abs(image.size[0] - w) <= 1 and abs(image.size[1] - h) <= 1
    assert dark > 0.005 * image.size[0] * image.size[1]  # printed text, not a blank page
    assert hist[255] > 0.5 * image.size[0] * image.size[1]  # on white paper
    # the chart is drawn in the PDF (vector SVG): the appendix page carries its colours
    found = False
    for i in range(len(pdf)):
        if "Số tin nhắn theo ngày và theo trạng thái" in pdf[i].get_textpage().get_text_range():
            rgb = pdf[i].render(scale=1).to_pil().convert("RGB")
            colours = {c for _n, c in rgb.getcolors(maxcolors=1 << 24) or []}
            found = (27, 120, 55) in colours  # delivered, #1b7837
            break
    assert found


def test_html_report_is_the_same_document(seeded: Database, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert cli(seeded, "report", CID, "--official", "--out", str(out))[0] == 0
    html = out.read_text("utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    for s in ("BÁO CÁO", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
              "Cần Thơ, ngày 02 tháng 8 năm 2024", "Nơi nhận:", "KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC",
              "Kính gửi: Ủy ban nhân dân thành phố Cần Thơ (qua Công an thành phố)",
              "IV. TIN NHẮN TRẢ LỜI CỦA NGƯỜI DÂN", "Phụ lục"):
        assert s in text, s


@pytest.mark.skipif(official.libreoffice() is None, reason="LibreOffice is not installed")
def test_pdf_through_libreoffice_when_weasyprint_is_missing(seeded: Database, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import sys

    pdfium = pytest.importorskip("pypdfium2")
    monkeypatch.setitem(sys.modules, "weasyprint", None)
    out = tmp_path / "bao-cao.pdf"
    code, _, err = cli(seeded, "report", CID, "--official", "--out", str(out))
    assert code == 0, err
    pdf = pdfium.PdfDocument(str(out))
    text = " ".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    text = " ".join(text.split())
    # LibreOffice's PDF keeps stacked Vietnamese marks as separate glyphs in its text layer:
    # check the parts without them, and that the pages are drawn
    assert len(pdf) >= 3 and "/BC-STTTT" in text and "47,06%" in text and "38.400" in text
    hist = pdf[0].render(scale=1).to_pil().convert("L").histogram()
    assert sum(hist[:128]) > 0.005 * sum(hist)
    pdf.close()

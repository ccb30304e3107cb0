"""The official results report: Vietnamese, self-contained HTML with the figures and the chart."""

from __future__ import annotations

import sys
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from outreach.reporting import official, reports
from outreach.ledger.db import Database
from tests.conftest import PLAN_TEXT
from tests.test_reports import CID, cli, db, seeded  # noqa: F401  (fixtures)



class _Tables(HTMLParser):
    """Collects every table as a list of rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.img_src: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.img_src.append(a.get("src") or "")
        for k in ("href", "src"):
            if a.get(k) and not (a[k] or "").startswith("data:"):
                self.urls.append(a[k] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_headed(tables: list[list[list[str]]], first: str, nth: int = -1) -> list[list[str]]:
    """The ``nth`` table whose header row starts with ``first`` (the body and the appendix show
    some tables twice: -1 is the appendix's)."""
    found = [t for t in tables if t and t[0] and t[0][0] == first]
    assert found, f"no table headed {first!r}"
    return found[nth]


def _render(db: Database, tmp_path: Path, *extra: str) -> tuple[str, _Tables]:
    out = tmp_path / "ket-qua.html"
    code, stdout, err = cli(db, "report", CID, "--official", "--out", str(out), *extra)
    assert code == 0, err
    assert "official report of cantho-2024-pcmbn written" in stdout
    html = out.read_text("utf-8")
    parser = _Tables()
    parser.feed(html)
    return html, parser


def test_html_has_the_reference_text_period_and_figures(seeded: Database, tmp_path: Path) -> None:
    html, p = _render(seeded, tmp_path, "--org", "Sở Thông tin và Truyền thông", "--place",
                      "Cần Thơ")
    assert unicodedata.is_normalized("NFC", html)
    assert '<html lang="vi">' in html and "@page { size: A4" in html
    assert ("Kế hoạch số 126/KH-UBND ngày 25/6/2024 của Ủy ban nhân dân thành phố Cần Thơ, "
            "mục II.6.b") in html
    assert f"“{PLAN_TEXT}”" in html  # the message exactly
    assert "BẢN CHẠY THỬ" not in html  # sent through real gateways: no trial banner
    assert "3f1ad8e529e297499cb7cadb031244e2f8697386f2100868261d727bb7d709e2" in html
    assert "từ ngày 1/7/2024 đến ngày 30/9/2024" in html
    assert "Tin nhắn đầu tiên được gửi lúc 08:00 ngày 29/7/2024" in html
    assert "tin nhắn cuối cùng lúc 09:00 ngày 31/7/2024" in html
    assert "Sở Thông tin và Truyền thông" in html and "Cần Thơ, ngày" in html
    assert "+8490555" not in html and "Người 1" not in html  # no personal data

    totals = {row[0]: row[1] for row in table_headed(p.tables, "Chỉ tiêu")[1:]}
    assert totals["Số người nhận (số thuê bao trong danh sách được gửi)"] == "18"
    assert totals["Số người đã nhận được tin nhắn"] == "8 (44,44%)"
    assert totals["Tổng số tin nhắn"] == "20"
    assert totals["– Số tin đã gửi đi"] == "17"
    assert totals["+ Đã đến máy người nhận"] == "8"
    assert totals["+ Không thành công"] == "6"
    assert totals["+ Chưa xác định kết quả"] == "3"
    assert totals["Tỷ lệ tin đến máy người nhận trên số tin đã gửi"] == "47,06%"
    assert totals["Chi phí (đồng)"] == "38.400"

    districts = table_headed(p.tables, "STT")
    assert table_headed(p.tables, "STT", 0) == districts  # the body's table is the appendix's
    assert districts[0] == ["STT", "Quận, huyện", "Tổng số tin", "Đã gửi", "Đã nhận",
                            "Không thành công", "Tỷ lệ nhận"]
    assert districts[1:] == [
        ["1", "Cái Răng", "6", "5", "1", "2", "20,00%"],
        ["2", "Ninh Kiều", "9", "9", "5", "3", "55,56%"],
        ["3", "Phong Điền", "4", "2", "1", "1", "50,00%"],
        ["4", "(không rõ)", "1", "1", "1", "0", "100,00%"],
        ["", "Tổng cộng", "20", "17", "8", "6", "47,06%"],
    ]
    days = table_headed(p.tables, "Ngày")
    assert days[1:] == [["29/7/2024", "13", "5"], ["30/7/2024", "6", "2"],
                        ["31/7/2024", "1", "1"]]
    reasons = table_headed(p.tables, "Trạng thái")
    assert reasons[1] == ["Gửi không thành công", "twilio", "21211 · invalid-number",
                          "Số điện thoại không hợp lệ", "2"]
    assert ["Gửi không thành công", "zalo", "-118 · no-zalo-account",
            "Số điện thoại chưa đăng ký Zalo", "1"] in reasons
    assert reasons[-1] == ["Tổng cộng", "9"]


def test_chart_is_inline_svg_and_nothing_is_fetched(seeded: Database, tmp_path: Path) -> None:
    html, p = _render(seeded, tmp_path)
    assert p.img_src == [] and html.count("<svg") == 1
    svg = html[html.index("<svg"):html.index("</svg>") + 6]
    bars = _bars(svg)
    # every (day, state) of the JSON report is one bar of that count, stacked in order
    with reports.report_connection(seeded.engine) as conn:
        data = reports.campaign_report(conn, CID)
    assert {(b["day"], b["status"]): b["count"] for b in bars} == {
        (d, s): n for d, v in data["by_day"].items() for s, n in v.items()}
    assert p.urls == [] and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<link" not in html and "<script" not in html
    assert "Tên cơ quan, đơn vị" not in html  # the campaign's [report] names the Department


def _bars(svg: str) -> list[dict[str, Any]]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    return [{"day": r.get("data-day"), "status": r.get("data-status"),
             "count": int(r.get("data-count") or 0), "y": float(r.get("y") or 0),
             "height": float(r.get("height") or 0)}
            for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "bar"]


def test_chart_svg_bars_are_proportional_and_stacked_from_zero() -> None:
    svg = official.chart_svg({"2024-07-29": {"delivered": 5, "failed": 2},
                              "2024-07-30": {"delivered": 1}})
    assert svg.startswith("<svg") and 'width="17.0cm" height="8.0cm"' in svg
    bars = _bars(svg)
    assert [(b["day"], b["status"], b["count"]) for b in bars] == [
        ("2024-07-29", "delivered", 5), ("2024-07-29", "failed", 2),
        ("2024-07-30", "delivered", 1)]
    unit = bars[0]["height"] / 5
    assert unit > 0
    for b in bars:
        assert b["height"] == pytest.approx(unit * b["count"], abs=0.02)
    base = bars[0]["y"] + bars[0]["height"]  # the x axis
    assert bars[1]["y"] + bars[1]["height"] == pytest.approx(bars[0]["y"], abs=0.02)  # stacked
    assert bars[2]["y"] + bars[2]["height"] == pytest.approx(base, abs=0.02)
    assert "Đã đến máy người nhận" in svg and "Gửi không thành công" in svg  # legend
    assert "29/7/2024" in svg and "30/7/2024" in svg
    assert ">0<" in svg and ">7<" not in svg.split("<rect")[0]  # y axis from 0, ticks whole
    assert "Chưa có tin nhắn nào" in official.chart_svg({})  # an empty campaign still renders
    many = official.chart_svg({f"2024-07-{d:02d}": {"delivered": 1200} for d in range(1, 13)})
    assert "rotate(-45" in many and "1.000" in many  # slanted days, Vietnamese grouping


def test_since_until_period_is_stated(seeded: Database, tmp_path: Path) -> None:
    html, p = _render(seeded, tmp_path, "--since", "2024-07-30")
    assert "tính từ 00:00 ngày 30/7/2024" in html
    totals = {row[0]: row[1] for row in table_headed(p.tables, "Chỉ tiêu")[1:]}
    assert totals["Tổng số tin nhắn"] == "7"


def test_pdf_without_weasyprint_says_how_to_get_it(seeded: Database, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import fails as when not installed
    monkeypatch.setattr(official, "libreoffice", lambda: None)  # and no LibreOffice either
    code, out, err = cli(seeded, "report", CID, "--official", "--out", str(tmp_path / "r.pdf"))
    assert code == 1
    err = " ".join(err.split())
    assert "pip install 'outreach[pdf]'" in err and "Pango" in err and "FILE.docx" in err
    assert "Traceback" not in err + out
    assert not (tmp_path / "r.pdf").exists()


def test_official_needs_a_docx_pdf_or_html_out(seeded: Database, tmp_path: Path) -> None:
    code, _, err = cli(seeded, "report", CID, "--official")
    assert code == 2 and "--out FILE.docx" in err
    code, _, err = cli(seeded, "report", CID, "--official", "--out", str(tmp_path / "r.odt"))
    assert code == 2 and ".docx, .pdf or .html" in err


def test_formatting_helpers() -> None:
    assert official.vn_int(2689835300) == "2.689.835.300"
    assert official.vn_pct(0.8911) == "89,11%" and official.vn_pct(None) == "–"
    assert official.vn_date("2024-06-25") == "25/6/2024"
    assert official.vn_datetime("2024-07-29T23:30:00+00:00") == "06:30 ngày 30/7/2024"
    data = {"source": "x", "source_detail": {"document": "15/QĐ-UBND", "date": "2024-01-05",
                                             "issuer": "Ủy ban nhân dân quận Ninh Kiều"}}
    assert official.source_reference(data) == ("Quyết định số 15/QĐ-UBND ngày 5/1/2024 của "
                                               "Ủy ban nhân dân quận Ninh Kiều")
    assert official.source_reference({"source": "Công văn 7", "source_detail": {}}) == "Công văn 7"


def test_render_from_the_report_dict_is_the_same_as_from_the_database(seeded: Database) -> None:
    with reports.report_connection(seeded.engine) as conn:
        data = reports.campaign_report(conn, CID)
        html = official.render_html(conn, CID)
    assert f"“{data['text']}”" in html
    assert official.render(data).count("<tr") == html.count("<tr")

"""The official results report (Vietnamese, A4, self-contained HTML; PDF when WeasyPrint is there)."""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from sqlalchemy import Connection

from outreach.ledger import states
from outreach.reporting import reports
from outreach.clock import VN_TZ
from outreach.decree30 import decree30_date
from outreach.i18n import vi_sort_key

#: Vietnamese labels of the delivery states (report wording).
STATUS_VI: dict[str, str] = {
    states.QUEUED: "Chờ gửi",
    states.SENDING: "Đang gửi",
    states.SENT: "Đã gửi, chờ báo nhận",
    states.DELIVERED: "Đã đến máy người nhận",
    states.UNDELIVERED: "Không đến được máy",
    states.FAILED: "Gửi không thành công",
    states.SKIPPED: "Không gửi (bỏ qua)",
    states.OPTED_OUT: "Người nhận từ chối nhận tin",
    states.UNKNOWN: "Chưa xác định kết quả",
}
#: Chart colours per state (colour-blind-safe order: delivered green, failures red/orange).
STATUS_COLOURS: dict[str, str] = {
    states.DELIVERED: "#1b7837", states.SENT: "#7fbf7b", states.SENDING: "#a6dba0",
    states.UNKNOWN: "#999999", states.UNDELIVERED: "#f1a340", states.FAILED: "#d73027",
    states.OPTED_OUT: "#762a83", states.SKIPPED: "#c2a5cf", states.QUEUED: "#d9d9d9",
}
#: Stacking order of the chart, bottom up: delivered first, then what may still arrive, then
#: failures, then what was never sent.
CHART_ORDER = (states.DELIVERED, states.SENT, states.SENDING, states.UNKNOWN, states.UNDELIVERED,
               states.FAILED, states.OPTED_OUT, states.SKIPPED, states.QUEUED)
#: Vietnamese wording of the stable reason codes stored in ``deliveries.error_reason``
#: (outreach.gateways.base and .http, twilio_errors.json, zalo_errors.json, runs.py); others are
#: shown as is.
REASON_VI: dict[str, str] = {
    "invalid-number": "Số điện thoại không hợp lệ",
    "invalid-address": "Số điện thoại không hợp lệ",
    "unknown-handset": "Số thuê bao không tồn tại hoặc đã ngừng hoạt động",
    "unreachable": "Thuê bao không liên lạc được (tắt máy, ngoài vùng phủ sóng)",
    "landline": "Không phải số điện thoại di động",
    "unroutable": "Không định tuyến được tới số này",
    "carrier-filtered": "Bị nhà mạng chặn lọc",
    "blocked": "Bị chặn",
    "rejected": "Nhà cung cấp từ chối",
    "opted-out": "Người nhận đã từ chối nhận tin",
    "suppressed": "Số điện thoại trong danh sách từ chối nhận tin",
    "cancelled": "Đợt gửi bị hủy",
    "operator-skipped": "Cán bộ vận hành quyết định không gửi lại",
    "outcome-unknown": "Không xác định được tin đã gửi hay chưa",
    "read-timeout": "Không nhận được trả lời sau khi gửi; không xác định được tin đã gửi hay chưa",
    "connection-lost": "Mất kết nối sau khi gửi; không xác định được tin đã gửi hay chưa",
    "connect-failed": "Không kết nối được tới nhà cung cấp; tin chưa được gửi",
    "bad-request": "Yêu cầu gửi tin không hợp lệ; tin chưa được gửi",
    "validity-expired": "Quá thời hạn hiệu lực, tin không được gửi",
    "no-zalo-account": "Số điện thoại chưa đăng ký Zalo",
    "carrier-unknown-error": "Lỗi không xác định từ nhà mạng",
    "unavailable": "Dịch vụ gửi tin tạm thời không sẵn sàng",
    "rate-limited": "Vượt giới hạn tốc độ gửi",
}



_LANGUAGE_LOCK = threading.Lock()


def in_vietnamese(fn: Any, text: str | None) -> str:
    """``fn(text)`` with the interface in Vietnamese, whatever its language now (the report
    and the dashboard are Vietnamese documents). The language is switched for the call and
    switched back, one call at a time (the web application serves requests in threads)."""
    from outreach import i18n

    with _LANGUAGE_LOCK:
        before = i18n.current()
        i18n.set_language("vi")
        try:
            return fn(text)
        finally:
            i18n.set_language(before)


def reason_vi(code: str | None) -> str:
    """A delivery reason code (``deliveries.error_reason``) in Vietnamese: the report's own
    wording (:data:`REASON_VI`), else the console's label
    (:func:`outreach.sending.reasons.label`, first letter capitalised), else the code itself;
    ``""`` for None."""
    if not code:
        return ""
    if code in REASON_VI:
        return REASON_VI[code]
    from outreach.sending import reasons

    text = in_vietnamese(reasons.label, code)
    return text[:1].upper() + text[1:] if text != code else code


def run_reason_vi(text: str | None) -> str:
    """A run's stored (English) ``status_reason`` in Vietnamese
    (:func:`outreach.sending.reasons.run_reason`); unchanged when it matches no template."""
    if not text:
        return ""
    from outreach.sending import reasons

    return in_vietnamese(reasons.run_reason, text)


_DOC_TYPES = {"KH": "Kế hoạch", "QĐ": "Quyết định", "QD": "Quyết định", "CV": "Công văn",
              "TB": "Thông báo", "CT": "Chỉ thị", "BC": "Báo cáo", "HD": "Hướng dẫn",
              "NQ": "Nghị quyết"}


class OfficialReportError(Exception):
    """The report cannot be written as asked (PDF without WeasyPrint, unknown file type)."""


def vn_int(n: int | float | None) -> str:
    """``1234567`` -> ``1.234.567`` (Vietnamese digit grouping)."""
    if n is None:
        return "–"
    return f"{round(n):,}".replace(",", ".")


def vn_pct(rate: float | None) -> str:
    """``0.8911`` -> ``89,11%``; None -> ``–``."""
    if rate is None:
        return "–"
    return f"{rate * 100:.2f}".replace(".", ",") + "%"


def vn_date(value: str | dt.date | None) -> str:
    """``2024-06-25`` -> ``25/6/2024`` (the day and month without leading zero, as in the
    plan's own references)."""
    if value is None or value == "":
        return "…"
    d = dt.date.fromisoformat(value[:10]) if isinstance(value, str) else value
    return f"{d.day}/{d.month}/{d.year}"


def vn_datetime(value: str | dt.datetime | None) -> str:
    """An ISO instant -> ``08:00 ngày 29/7/2024`` in Asia/Ho_Chi_Minh; None -> ``–``."""
    if not value:
        return "–"
    t = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    t = t.astimezone(VN_TZ)
    return f"{t:%H:%M} ngày {vn_date(t.date())}"


def source_reference(data: Mapping[str, Any]) -> str:
    """``Kế hoạch số 126/KH-UBND ngày 25/6/2024 của Ủy ban nhân dân thành phố Cần Thơ, mục
    II.6.b`` from the campaign file's ``[source]`` (document type read from the number's code:
    KH -> Kế hoạch, QĐ -> Quyết định...); the stored ``source_ref`` when the table is missing."""
    src = data.get("source_detail") or {}
    doc = src.get("document")
    if not doc:
        return str(data.get("source") or "")
    m = re.search(r"/([A-ZĐ]+)", doc)
    kind = _DOC_TYPES.get(m.group(1), "Văn bản") if m else "Văn bản"
    ref = f"{kind} số {doc}"
    if src.get("date"):
        ref += f" ngày {vn_date(src['date'])}"
    if src.get("issuer"):
        ref += f" của {src['issuer']}"
    if src.get("section"):
        ref += f", mục {src['section']}"
    return ref


def _nice_step(top: int, ticks: int = 5) -> int:
    """The tick step for an axis from 0 to ``top``: 1, 2 or 5 times a power of ten, whole."""
    raw = max(top / ticks, 1)
    mag = 10 ** int(math.floor(math.log10(raw)))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return int(m * mag)
    return int(10 * mag)


#: Chart size in SVG user units (1 unit = 0.25 mm: 680 × 320 units = 17 × 8 cm).
CHART_W, CHART_H = 680, 320


def chart_svg(by_day: Mapping[str, Mapping[str, int]], *, width_cm: float = 17.0,
              height_cm: float = 8.0) -> str:
    """A stacked bar chart of deliveries per day by state, as an SVG document (text, NFC).

    ``by_day``: ``YYYY-MM-DD`` (Asia/Ho_Chi_Minh) -> state -> count, as in
    :func:`outreach.reporting.reports.campaign_report`. One ``<rect class="bar">`` per day and
    state with a count, stacked bottom up in :data:`CHART_ORDER`, its height proportional to
    the count (``data-day``, ``data-status``, ``data-count`` attributes give the figure); a
    y axis of whole numbers with Vietnamese grouping, the days as ``29/7/2024`` under the bars
    (slanted beyond 8 days), the legend on the right top-down in the order of the stack, the
    colours of :data:`STATUS_COLOURS`. Drawn here: no plotting library. ``width_cm`` ×
    ``height_cm`` is the printed size (viewBox :data:`CHART_W` × :data:`CHART_H`). An empty
    mapping gives a chart saying so.
    """
    w, h = CHART_W, CHART_H
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width_cm}cm" '
           f'height="{height_cm}cm" viewBox="0 0 {w} {h}" role="img" '
           'font-family="Times New Roman, Liberation Serif, DejaVu Serif, serif">',
           f'<title>{escape(CHART_TITLE)}</title>']
    days = sorted(by_day)
    if not days:
        out.append(f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" font-size="16">'
                   'Chưa có tin nhắn nào</text></svg>')
        return unicodedata.normalize("NFC", "".join(out))
    shown = [s for s in CHART_ORDER if any(by_day[d].get(s) for d in days)]
    shown += sorted({s for d in days for s in by_day[d] if s not in CHART_ORDER})
    slant = len(days) > 8
    left, right, top, bottom = 64, 170, 34, (86 if slant else 48)
    pw, ph = w - left - right, h - top - bottom
    peak = max(sum(by_day[d].get(s, 0) for s in shown) for d in days) or 1
    step = _nice_step(peak)
    ymax = step * math.ceil(peak / step)
    y = lambda v: top + ph - ph * v / ymax  # noqa: E731
    out.append(f'<text x="{left + pw / 2}" y="20" text-anchor="middle" font-size="15" '
               f'font-weight="bold">{escape(CHART_TITLE)}</text>')
    for v in range(0, ymax + 1, step):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.2f}" y2="{y(v):.2f}" '
                   'stroke="#dddddd" stroke-width="1"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.2f}" text-anchor="end" '
                   f'font-size="12">{vn_int(v)}</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {top + ph / 2})">Số tin nhắn</text>')
    slot = pw / len(days)
    bar = slot * 0.7
    for i, d in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        acc = 0
        for s in shown:
            n = by_day[d].get(s, 0)
            if not n:
                continue
            y0, y1 = y(acc + n), y(acc)
            out.append(f'<rect class="bar" x="{x:.2f}" y="{y0:.2f}" width="{bar:.2f}" '
                       f'height="{y1 - y0:.2f}" fill="{STATUS_COLOURS.get(s, "#444444")}" '
                       f'data-day="{d}" data-status="{escape(s)}" data-count="{n}"/>')
            acc += n
        cx, ly = left + i * slot + slot / 2, top + ph + 16
        label = vn_date(d)
        if slant:
            out.append(f'<text x="{cx:.2f}" y="{ly}" text-anchor="end" font-size="11" '
                       f'transform="rotate(-45 {cx:.2f} {ly})">{label}</text>')
        else:
            out.append(f'<text x="{cx:.2f}" y="{ly}" text-anchor="middle" '
                       f'font-size="12">{label}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" '
               'stroke="#000000" stroke-width="1"/>')
    lx = left + pw + 14
    for j, s in enumerate(reversed(shown)):  # legend top-down = the stack top-down
        ly = top + 4 + j * 20
        out.append(f'<rect class="legend" x="{lx}" y="{ly}" width="12" height="12" '
                   f'fill="{STATUS_COLOURS.get(s, "#444444")}" data-status="{escape(s)}"/>')
        out.append(f'<text x="{lx + 18}" y="{ly + 11}" font-size="11">'
                   f'{escape(STATUS_VI.get(s, s))}</text>')
    out.append("</svg>")
    return unicodedata.normalize("NFC", "".join(out))


CHART_TITLE = "Số tin nhắn theo ngày và theo trạng thái"


@dataclass(frozen=True)
class DocumentInfo:
    """The fixed parts of the report as an administrative document (Decree 30/2020/NĐ-CP,
    :mod:`outreach.decree30`): the issuing body ``org`` as written in a sentence ("Sở Thông tin
    và Truyền thông"; the header prints it in capitals) and its ``superior``; ``number``
    (``Số:``, left blank for the clerk by default); ``place`` and ``date`` (None: today in
    Asia/Ho_Chi_Minh); the addressee ``to`` (plan 126, III.1: the city People's Committee,
    through the city police); the summary ``subject`` (trích yếu); the signer's
    ``signer_authority`` (``KT. GIÁM ĐỐC``), ``signer_title`` and ``signer_name``; ``cc`` (Nơi
    nhận). From the campaign file's ``[report]`` table, overridden by the command's options."""

    org: str = ""
    superior: str = ""
    number: str = "      /BC-STTTT"
    place: str = ""
    date: dt.date | None = None
    to: str = ""
    subject: str = ""
    signer_authority: str = ""
    signer_title: str = "GIÁM ĐỐC"
    signer_name: str = ""
    cc: tuple[str, ...] = ("Như trên;", "Lưu: VT.")


def document_info(data: Mapping[str, Any], **overrides: Any) -> DocumentInfo:
    """The :class:`DocumentInfo` of a report: the campaign's ``[report]`` table (``data
    ["document"]``), then each override that is not None (``date`` a ``datetime.date`` or ISO
    text, ``cc`` a sequence of lines). Text is NFC."""
    raw: dict[str, Any] = dict(data.get("document") or {})
    raw.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f: raw[f] for f in DocumentInfo.__dataclass_fields__ if f in raw}
    if isinstance(fields.get("date"), str):
        fields["date"] = dt.date.fromisoformat(fields["date"])
    if "cc" in fields:
        fields["cc"] = tuple(unicodedata.normalize("NFC", x) for x in fields["cc"])
    for k, v in fields.items():
        if isinstance(v, str):
            fields[k] = unicodedata.normalize("NFC", v)
    return DocumentInfo(**fields)


def area_label(data: Mapping[str, Any]) -> str:
    """``Quận, huyện`` for a campaign starting before 1 July 2025, ``Xã, phường`` after (no
    district level since the 2025 reform: Resolution 202/2025/QH15; the breakdown's keys are the
    ledger's districts, or communes for later campaigns: README, "Administrative units")."""
    start = (data.get("window") or {}).get("start_date")
    return "Xã, phường" if start and str(start)[:10] >= "2025-07-01" else "Quận, huyện"


def _rows(by: Mapping[str, Mapping[str, int]], *, unknown_last: str | None = None
          ) -> list[dict[str, Any]]:
    names = sorted(by, key=lambda k: (k == unknown_last, vi_sort_key(k)))  # Vietnamese order
    out = []
    for name in names:
        o = reports.outcome(by[name])
        out.append({"name": name, **o, "rate": vn_pct(o["delivery_rate"])})
    return out


def context(data: Mapping[str, Any], *, org: str | None = None, place: str | None = None,
            info: DocumentInfo | None = None) -> dict[str, Any]:
    """What the HTML and the DOCX show, computed from
    :func:`outreach.reporting.reports.campaign_report` (``data``) and the document's fixed parts
    (``info``, else :func:`document_info` with ``org`` and ``place``)."""
    info = info or document_info(data, org=org, place=place)
    districts = _rows(data["by_district"], unknown_last=reports.UNKNOWN_DISTRICT)
    carriers_rows = _rows(data["by_carrier"], unknown_last=reports.UNKNOWN_VALUE)
    total = reports.outcome(data["by_status"])
    reasons = [{"status": STATUS_VI.get(r["status"], r["status"]),
                "gateway": r["gateway"] or "",
                "code": " · ".join(x for x in (r["error_code"], r["error_reason"]) if x),
                "reason": reason_vi(r["error_reason"]),
                "count": r["count"]} for r in data["failure_reasons"]]
    now = dt.datetime.now(VN_TZ)
    day = info.date or now.date()
    ctx = {
        "d": data, "org": info.org or None, "place": info.place or None, "info": info,
        "today": decree30_date(day),
        "date_line": decree30_date(day, info.place),
        "generated": vn_datetime(data.get("generated_at") or now.isoformat()),
        "source_reference": source_reference(data),
        "source_title": (data.get("source_detail") or {}).get("title"),
        "window_start": vn_date(data["window"].get("start_date")),
        "window_end": vn_date(data["window"].get("end_date")),
        "first_send": vn_datetime(data.get("first_send")),
        "last_send": vn_datetime(data.get("last_send")),
        "since": vn_datetime(data.get("since")) if data.get("since") else None,
        "until": vn_datetime(data.get("until")) if data.get("until") else None,
        "total": total, "total_rate": vn_pct(total["delivery_rate"]),
        "reach_rate": vn_pct(data.get("reach_rate")),
        "status_rows": [{"label": STATUS_VI.get(s, s), "code": s, "count": n}
                        for s, n in data["by_status"].items() if n],
        "districts": districts, "area_label": area_label(data),
        "carrier_rows": carriers_rows, "reasons": reasons,
        "reasons_total": sum(r["count"] for r in data["failure_reasons"]),
        "chart_svg": chart_svg(data["by_day"]),
        "days": [{"day": vn_date(d), "count": sum(v.values()),
                  "delivered": v.get(states.DELIVERED, 0)} for d, v in data["by_day"].items()],
        "n": vn_int, "pct": vn_pct,
        "carriers": carrier_context(data.get("carrier_broadcasts") or {}),
        "replies": replies_context(data.get("replies") or {}),
    }
    ctx["body"] = body(ctx)
    ctx["attach"] = attach_line(ctx)
    return ctx


#: Kinds of citizens' replies (outreach.receipts.inbound) in the report's words.
REPLY_KIND_VI = {"optout": "Từ chối nhận tin (nhắn từ khóa)",
                 "unfollow": "Bỏ quan tâm Zalo OA (chỉ ngừng tin Zalo)",
                 "optin": "Đăng ký nhận lại tin", "message": "Phản hồi khác (hộp thư)"}


def replies_context(r: Mapping[str, Any]) -> dict[str, Any]:
    """The "Phản hồi của người dân" section from ``campaign_report(...)["replies"]``
    (:func:`outreach.receipts.inbound.reply_counts`): totals by kind, keyword and day."""
    by_kind = r.get("by_kind") or {}
    return {
        "total": r.get("total", 0), "optouts": r.get("optouts", 0),
        "kinds": [{"label": REPLY_KIND_VI.get(k, k), "count": v} for k, v in by_kind.items() if v],
        "keywords": [{"keyword": k, "count": v} for k, v in (r.get("by_keyword") or {}).items()],
        "days": [{"day": vn_date(d), "optouts": v.get("optout", 0) + v.get("unfollow", 0),
                  "others": v.get("message", 0) + v.get("optin", 0)}
                 for d, v in (r.get("by_day") or {}).items()],
    }


def _sentence_org(info: DocumentInfo) -> str:
    return info.org or "……………………"


def body(ctx: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The report's body as (kind, payload) pairs, shared by the HTML and the DOCX: ``h`` a
    section heading, ``p`` a paragraph, ``quote`` the message text (exactly as sent),
    ``warn`` the trial banner, ``table`` ``(name, header, rows)`` with the total last.
    Every figure comes from the JSON report (``ctx["d"]``), formatted with :func:`vn_int` and
    :func:`vn_pct`."""
    d, info, n = ctx["d"], ctx["info"], vn_int
    total = ctx["total"]
    org = _sentence_org(info)
    out: list[tuple[str, Any]] = []
    if d.get("local_gateways"):
        out.append(("warn", "BẢN CHẠY THỬ — KHÔNG DÙNG ĐỂ BÁO CÁO. Các tin nhắn qua cổng "
                            f"{', '.join(d['local_gateways'])} chỉ được ghi vào tệp trên máy "
                            "(để kiểm tra), không gửi đến điện thoại nào và không phát sinh "
                            "cước."))
    title = ctx["source_title"]
    about = f" về việc {_lower_first(title)}" if title else ""
    out.append(("p", f"Thực hiện {ctx['source_reference']}{about}, {org} báo cáo kết quả nhắn "
                     "tin tuyên truyền đến người dân như sau:"))
    out.append(("h", "I. NỘI DUNG VÀ THỜI GIAN THỰC HIỆN"))
    out.append(("p", "1. Nội dung tin nhắn đã gửi (đúng nguyên văn):"))
    out.append(("quote", d["text"]))
    out.append(("p", f"Mã kiểm tra SHA-256 của nội dung: {d['text_sha256']}."))
    out.append(("p", f"2. Thời gian: chiến dịch từ ngày {ctx['window_start']} đến ngày "
                     f"{ctx['window_end']}; tin nhắn đầu tiên được gửi lúc {ctx['first_send']}, "
                     f"tin nhắn cuối cùng lúc {ctx['last_send']}."
                + (" Số liệu trong báo cáo tính"
                   + (f" từ {ctx['since']}" if ctx["since"] else "")
                   + (f" đến trước {ctx['until']}" if ctx["until"] else "") + "."
                   if ctx["since"] or ctx["until"] else "")))
    chans = "; ".join(f"{CHANNEL_VI.get(c, c)}: {n(sum(v.values()))} tin"
                      for c, v in d["by_channel"].items())
    out.append(("p", f"3. Kênh gửi: {chans or 'chưa gửi tin nào'}."))
    out.append(("h", "II. KẾT QUẢ THỰC HIỆN"))
    out.append(("p", f"1. Kết quả chung: đã gửi tin nhắn đến {n(d['recipients'])} người nhận, "
                     f"trong đó {n(d['reached'])} người đã nhận được tin nhắn "
                     f"({ctx['reach_rate']}). Tổng số {n(total['deliveries'])} tin nhắn, trong đó "
                     f"{n(total['attempted'])} tin đã gửi đi: {n(total['delivered'])} tin đã đến "
                     f"máy người nhận, {n(total['failures'])} tin không thành công, "
                     f"{n(total['awaiting'])} tin chưa xác định kết quả; "
                     f"{n(total['not_sent'])} tin không gửi (người nhận từ chối nhận tin, bỏ qua, "
                     f"chờ gửi). Tỷ lệ tin đến máy người nhận trên số tin đã gửi: "
                     f"{ctx['total_rate']}. Số bản tin SMS tính cước: {n(d['segments'])}; chi phí "
                     f"{n(d['cost_vnd'])} đồng."))
    header = ("STT", ctx["area_label"], "Tổng số tin", "Đã gửi", "Đã nhận", "Không thành công",
              "Tỷ lệ nhận")
    totals = ("", "Tổng cộng", n(total["deliveries"]), n(total["attempted"]),
              n(total["delivered"]), n(total["failures"]), ctx["total_rate"])

    def rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
        return [(str(i), r["name"], n(r["deliveries"]), n(r["attempted"]), n(r["delivered"]),
                 n(r["failures"]), r["rate"]) for i, r in enumerate(items, 1)] + [totals]

    out.append(("p", f"2. Kết quả theo {ctx['area_label'].lower()}:"))
    out.append(("table", ("districts", header, rows(ctx["districts"]))))
    out.append(("p", "3. Kết quả theo nhà mạng (doanh nghiệp viễn thông di động của thuê bao):"))
    out.append(("table", ("carriers", ("STT", "Nhà mạng", *header[2:]),
                          rows(ctx["carrier_rows"]))))
    cb = ctx["carriers"]
    if cb:
        per = "; ".join(f"{r['name']}: {n(r['sent']) if r['sent'] is not None else 'chưa báo cáo'}"
                        for r in cb["rows"])
        out.append(("p", f"4. Tin nhắn do các doanh nghiệp viễn thông di động gửi theo đề nghị "
                         f"của {org}: theo báo cáo của các doanh nghiệp, "
                         f"{n(cb['total'])} lượt thuê bao đã được nhắn tin ({per}). Số liệu này "
                         "do doanh nghiệp báo cáo, không cộng vào số người nhận ở trên."))
    out.append(("h", "III. TIN NHẮN KHÔNG THÀNH CÔNG VÀ BIỆN PHÁP XỬ LÝ"))
    failed = [r for r in d["failure_reasons"]
              if r["status"] in (states.FAILED, states.UNDELIVERED)][:5]
    why = "; ".join(f"{_reason_vi(r)} ({n(r['count'])} tin)" for r in failed)
    by = d["by_status"]
    out.append(("p", f"1. Có {n(total['failures'])} tin không thành công ({n(by.get('failed', 0))}"
                     f" tin nhà cung cấp báo không gửi được, {n(by.get('undelivered', 0))} tin "
                     "không đến được máy người nhận)"
                + (f"; các lý do chính: {why}." if why else ".")
                + " Chi tiết tại Phụ lục."))
    out.append(("p", f"2. Đã gửi lại {n(d.get('resends', 0))} tin cho người nhận có tin không "
                     "thành công (mỗi người nhận tối đa một lần trong mỗi đợt gửi lại)."
                if d.get("resends") else
                "2. Chưa gửi lại tin nào cho người nhận có tin không thành công."))
    out.append(("p", f"3. {n(by.get('unknown', 0))} tin không xác định được đã gửi hay chưa và "
                     f"{n(by.get('sent', 0) + by.get('sending', 0))} tin đã gửi, chưa có báo cáo "
                     "nhận: các tin này được đối soát với nhà cung cấp, không gửi lại tự động để "
                     "không người nào nhận hai lần."))
    out.append(("p", f"4. {n(by.get('opted_out', 0))} tin không gửi vì người nhận đã từ chối "
                     f"nhận tin; {n(by.get('skipped', 0))} tin bỏ qua; {n(by.get('queued', 0))} "
                     "tin đang chờ gửi."))
    out.append(("h", "IV. TIN NHẮN TRẢ LỜI CỦA NGƯỜI DÂN"))
    rep = d.get("replies") or {}
    total_replies = int(rep.get("total") or 0)
    chans = ", ".join(CHANNEL_VI.get(c, c) for c in sorted(rep.get("by_channel") or {}))
    if total_replies:
        kinds = rep.get("by_kind") or {}
        out.append(("p", f"Đã nhận {n(total_replies)} tin nhắn trả lời của người dân ({chans}): "
                         f"{n(kinds.get('optout', 0))} tin từ chối nhận tin (nhắn từ khóa), "
                         f"{n(kinds.get('unfollow', 0))} lượt bỏ quan tâm Zalo OA, "
                         f"{n(kinds.get('optin', 0))} tin đăng ký nhận lại, "
                         f"{n(kinds.get('message', 0))} phản hồi khác. Người từ chối được đưa "
                         "vào danh sách không gửi và không nhận thêm tin nào của đợt gửi."))
    else:
        out.append(("p", "Chưa ghi nhận tin nhắn trả lời nào của người dân (0 tin) qua SMS, "
                         "Zalo OA và kết nối SMPP với nhà mạng."))
    to = info.to or "Ủy ban nhân dân"
    out.append(("p", f"Trên đây là báo cáo kết quả nhắn tin tuyên truyền của {org}, kính báo cáo "
                     f"{to}./."))
    return out


def _reason_vi(r: Mapping[str, Any]) -> str:
    """A failure reason in Vietnamese (:func:`reason_vi`), else its code, else its state."""
    return (reason_vi(r["error_reason"]) or r["error_code"]
            or STATUS_VI.get(r["status"], r["status"]))


def _lower_first(s: str) -> str:
    s = re.sub(r"^(Kế hoạch|Quyết định|Chỉ thị|Công văn|Văn bản)\s+(về việc\s+)?", "", s)
    return s[:1].lower() + s[1:] if s else s


#: Vietnamese names of the channels and of the reply channels recorded.
CHANNEL_VI = {"sms": "SMS", "zalo": "Zalo"}


def carrier_context(cb: Mapping[str, Any]) -> dict[str, Any] | None:
    """The carrier section of the report (None when no operator was asked): rows per carrier
    (status in Vietnamese, letter, subscribers), per day and per area, each with a total."""
    from outreach.carriers.ledger import STATUS_VI as CARRIER_STATUS_VI

    carriers = cb.get("carriers") or {}
    if not carriers:
        return None
    names = list(carriers)
    rows = [{"name": k, "status": CARRIER_STATUS_VI.get(v["status"], v["status"]),
             "letter": " ".join(x for x in ((v.get("letter_number") or "").strip(),
                                            f"ngày {vn_date(v['letter_date'])}"
                                            if v.get("letter_date") else "") if x) or "–",
             "requested_on": vn_date(v["requested_on"]) if v.get("requested_on") else "–",
             "results_on": vn_date(v["results_on"]) if v.get("results_on") else "–",
             "sent": v["sent"] if v.get("results_on") or v["sent"] else None}
            for k, v in carriers.items()]
    with_results = [n for n in names if any(n in d for d in cb["by_day"].values())]
    return {
        "rows": rows, "total": cb.get("sent", 0), "carriers": with_results,
        "days": [{"day": vn_date(d), "by": [v.get(n, 0) for n in with_results],
                  "total": sum(v.values())} for d, v in cb["by_day"].items()],
        "areas": [{"area": a, "by": [v.get(n, 0) for n in with_results], "total": sum(v.values())}
                  for a, v in cb["by_area"].items()],
        "totals": [carriers[n]["sent"] for n in with_results],
    }


def _env() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(loader=PackageLoader("outreach", "templates"),
                       autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def render(data: Mapping[str, Any], *, org: str | None = None, place: str | None = None,
           info: DocumentInfo | None = None) -> str:
    """The report as one self-contained HTML document (NFC, no external URL, A4 print CSS): the
    BÁO CÁO (:func:`body`) in the Decree 30 layout, then the appendix with its tables and the
    chart as inline SVG (:func:`chart_svg`)."""
    from markupsafe import Markup

    ctx = context(data, org=org, place=place, info=info)
    ctx["chart_svg"] = Markup(ctx["chart_svg"])  # drawn here, every text escaped
    html = _env().get_template("official_report.html").render(**ctx)
    return unicodedata.normalize("NFC", html)


def render_html(conn: Connection, campaign_id: str, *, since: dt.datetime | None = None,
                until: dt.datetime | None = None, org: str | None = None,
                place: str | None = None) -> str:
    """Read the campaign's report from the ledger and render it (see :func:`render`)."""
    return render(reports.campaign_report(conn, campaign_id, since=since, until=until),
                  org=org, place=place)


# --- DOCX ------------------------------------------------------------------------------------

def docx_bytes(data: Mapping[str, Any], *, info: DocumentInfo | None = None) -> bytes:
    """The report as a Word file (python-docx, :mod:`outreach.decree30`): the header (superior
    and issuing body, ``Số:``, quốc hiệu, tiêu ngữ, place and date), ``BÁO CÁO`` and the
    summary, ``Kính gửi``, the body of :func:`body` with its tables, ``Nơi nhận`` and the signer;
    then, on a new page, the appendix: its tables as in the HTML and the chart as a native Word
    bar chart (:func:`outreach.decree30.add_bar_chart`), which staff can restyle."""
    from outreach import decree30 as d30

    ctx = context(data, info=info)
    info = ctx["info"]
    doc = d30.new_document()
    d30.add_header(doc, superior=info.superior, org=info.org or "Tên cơ quan, đơn vị: ……………",
                   number=info.number, date_line=ctx["date_line"])
    d30.add_title(doc, "BÁO CÁO", info.subject or f"Kết quả {data['name'][:1].lower()}"
                                                  f"{data['name'][1:]}")
    if info.to:
        d30.para(doc, f"Kính gửi: {info.to}")
        doc.add_paragraph()
    _docx_items(doc, ctx["body"])
    d30.add_signature(doc, cc=info.cc, signer_authority=info.signer_authority,
                      signer_title=info.signer_title, signer_name=info.signer_name)
    d30.page_break(doc)
    d30.para(doc, "PHỤ LỤC", bold=True, size=14)
    d30.para(doc, "Kết quả nhắn tin tuyên truyền", bold=True, size=14)
    d30.para(doc, data["name"], bold=True, size=13)
    d30.para(doc, attach_line(ctx), italic=True, size=12)
    doc.add_paragraph()
    _docx_items(doc, appendix(ctx))
    return d30.to_bytes(doc, title=f"Báo cáo kết quả nhắn tin – {data['campaign']}",
                        author=info.org or "outreach")


def _docx_items(doc: Any, items: list[tuple[str, Any]]) -> None:
    from outreach import decree30 as d30

    for kind, payload in items:
        if kind == "h":
            d30.add_body(doc, payload, bold=True, indent=False, align="left")
        elif kind == "quote":
            d30.add_body(doc, f"“{payload}”", italic=True)
        elif kind == "warn":
            d30.add_body(doc, payload, bold=True, indent=False)
        elif kind == "table":
            name, header, rows = payload
            right_from, widths = _DOCX_TABLES.get(name, (len(header) - 1, None))
            d30.add_table(doc, header, rows, bold_last="Tổng cộng" in rows[-1][:2] if rows
                          else False, right_from=right_from, widths_mm=widths)
            doc.add_paragraph()
        elif kind == "chart":
            d30.add_bar_chart(doc, **payload)
        else:
            d30.add_body(doc, payload, align="left" if "SHA-256" in payload else "justify")


#: DOCX tables: the first right-aligned (figure) column and the column widths in mm (165 mm).
_DOCX_TABLES: dict[str, tuple[int, tuple[float, ...] | None]] = {
    "districts": (2, (12, 43, 22, 20, 20, 26, 22)),
    "carriers": (2, (12, 43, 22, 20, 20, 26, 22)),
    "totals": (1, (125, 40)),
    "days": (1, (55, 55, 55)),
    "reasons": (4, (32, 22, 37, 54, 20)),
    "carrier-broadcasts": (5, (28, 32, 24, 27, 24, 30)),
}


def attach_line(ctx: Mapping[str, Any]) -> str:
    """``(Kèm theo Báo cáo số      /BC-STTTT ngày 02/8/2024 của Sở Thông tin và Truyền thông)``."""
    info = ctx["info"]
    day = info.date or dt.datetime.now(VN_TZ).date()
    return (f"(Kèm theo Báo cáo số {info.number.strip() or '……'} ngày {vn_date(day)} của "
            f"{_sentence_org(info)})")


def appendix(ctx: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The appendix as (kind, payload) pairs for the DOCX (the HTML template lays out the same
    tables): totals, by district, the chart and days, failure reasons, the operators' figures."""
    d, n, total = ctx["d"], vn_int, ctx["total"]
    out: list[tuple[str, Any]] = [("h", "1. Kết quả chung"), ("table", ("totals", (
        "Chỉ tiêu", "Số lượng"), [
        ("Số người nhận (số thuê bao trong danh sách được gửi)", n(d["recipients"])),
        ("Số người đã nhận được tin nhắn", f"{n(d['reached'])} ({ctx['reach_rate']})"),
        ("Tổng số tin nhắn", n(total["deliveries"])),
        ("– Số tin đã gửi đi", n(total["attempted"])),
        ("+ Đã đến máy người nhận", n(total["delivered"])),
        ("+ Không thành công", n(total["failures"])),
        ("+ Chưa xác định kết quả", n(total["awaiting"])),
        ("– Số tin không gửi (từ chối nhận tin, bỏ qua, chờ gửi)", n(total["not_sent"])),
        ("Tỷ lệ tin đến máy người nhận trên số tin đã gửi", ctx["total_rate"]),
        ("Số bản tin SMS tính cước (tin dài được tách thành nhiều bản tin)", n(d["segments"])),
        ("Chi phí (đồng)", n(d["cost_vnd"]))]))]
    out.append(("p", "Chi tiết theo trạng thái: " + "; ".join(
        f"{r['label']}: {n(r['count'])}" for r in ctx["status_rows"]) + "."))
    body_tables = {p[0]: p for k, p in ctx["body"] if k == "table"}
    out += [("h", f"2. Kết quả theo {ctx['area_label'].lower()}"),
            ("table", body_tables["districts"]),
            ("h", "3. Số tin nhắn theo ngày"),
            ("chart", {"by_day": d["by_day"], "title": CHART_TITLE,
                       "series": [(STATUS_VI.get(s, s), STATUS_COLOURS.get(s, "#444444"), s)
                                  for s in _chart_states(d["by_day"])],
                       "categories": [(day, vn_date(day)) for day in sorted(d["by_day"])]}),
            ("table", ("days", ("Ngày", "Số tin nhắn", "Đã đến máy người nhận"),
                       [(r["day"], n(r["count"]), n(r["delivered"])) for r in ctx["days"]])),
            ("h", "4. Lý do tin nhắn không đến được người nhận")]
    if ctx["reasons"]:
        out.append(("table", ("reasons", ("Trạng thái", "Cổng gửi", "Mã lỗi", "Lý do", "Số tin"),
                              [(r["status"], r["gateway"], r["code"], r["reason"], n(r["count"]))
                               for r in ctx["reasons"]]
                              + [("Tổng cộng", "", "", "", n(ctx["reasons_total"]))])))
    else:
        out.append(("p", "Không có tin nhắn nào không thành công."))
    cb = ctx["carriers"]
    if cb:
        out += [("h", "5. Tin nhắn do các doanh nghiệp viễn thông di động gửi"),
                ("table", ("carrier-broadcasts", ("Doanh nghiệp", "Công văn đề nghị",
                                                  "Ngày gửi đề nghị", "Tình trạng",
                                                  "Ngày báo cáo", "Số thuê bao đã nhắn tin"),
                           [(r["name"], r["letter"], r["requested_on"], r["status"],
                             r["results_on"],
                             n(r["sent"]) if r["sent"] is not None else "Chưa báo cáo")
                            for r in cb["rows"]]
                           + [("Tổng cộng", "", "", "", "", n(cb["total"]))]))]
    out.append(("p", f"Số liệu được tổng hợp lúc {ctx['generated']}. Phụ lục không chứa số điện "
                     "thoại hay họ tên của người nhận (dữ liệu cá nhân). Chiến dịch: "
                     f"{d['campaign']}."))
    return out


def _chart_states(by_day: Mapping[str, Mapping[str, int]]) -> list[str]:
    days = list(by_day)
    shown = [s for s in CHART_ORDER if any(by_day[d].get(s) for d in days)]
    return shown + sorted({s for d in days for s in by_day[d] if s not in CHART_ORDER})


# --- files -----------------------------------------------------------------------------------

SUFFIXES = (".html", ".htm", ".pdf", ".docx")


def write_report(data: Mapping[str, Any], out: str | Path, *,
                 info: DocumentInfo | None = None) -> Path:
    """Write the report to ``out`` by its suffix: ``.html``/``.htm`` (UTF-8), ``.docx``
    (:func:`docx_bytes`), ``.pdf`` (:func:`pdf_bytes`); the file is private (0600).

    Raises OfficialReportError for another suffix or when no PDF renderer is installed."""
    from outreach import safeio

    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise OfficialReportError(f"{path.name}: the official report is written as .docx, .pdf "
                                  "or .html")
    if suffix in (".html", ".htm"):
        safeio.write_private(path, render(data, info=info))
    elif suffix == ".docx":
        safeio.write_private(path, docx_bytes(data, info=info))
    else:
        safeio.write_private(path, pdf_bytes(data, info=info))
    return path


def pdf_bytes(data: Mapping[str, Any], *, info: DocumentInfo | None = None) -> bytes:
    """The report as PDF: the HTML through WeasyPrint (the ``pdf`` extra), else the DOCX through
    LibreOffice (``soffice --headless --convert-to pdf``) when it is installed.

    Raises OfficialReportError naming ``pip install 'outreach[pdf]'`` when neither is there."""
    try:
        from weasyprint import HTML  # type: ignore[import-not-found]
    except (ImportError, OSError) as exc:
        office = libreoffice()
        if office is None:
            raise OfficialReportError(
                "PDF output needs WeasyPrint, which is not installed here "
                f"({type(exc).__name__}: {exc}). Install it with `pip install 'outreach[pdf]'` "
                "(WeasyPrint) and its system libraries (Pango; on Debian/Ubuntu `apt install "
                "libpango-1.0-0 libpangoft2-1.0-0`), or install LibreOffice, or write --out "
                "FILE.docx (or FILE.html) and print it to PDF.") from None
        return docx_to_pdf(docx_bytes(data, info=info), office)
    return HTML(string=render(data, info=info)).write_pdf()


def libreoffice() -> str | None:
    """The LibreOffice program (``soffice`` or ``libreoffice`` on PATH), or None."""
    import shutil

    return shutil.which("soffice") or shutil.which("libreoffice")


def docx_to_pdf(docx: bytes, office: str, *, timeout: float = 120.0) -> bytes:
    """Convert DOCX bytes to PDF with LibreOffice in a private temporary folder (its own
    profile, so a running LibreOffice is not disturbed). Raises OfficialReportError when the
    conversion fails or takes longer than ``timeout`` seconds."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="outreach-pdf-") as tmp:
        src = Path(tmp) / "bao-cao.docx"
        src.write_bytes(docx)
        try:
            proc = subprocess.run(
                [office, f"-env:UserInstallation=file://{tmp}/profile", "--headless",
                 "--convert-to", "pdf", "--outdir", tmp, str(src)],
                capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise OfficialReportError(f"LibreOffice did not convert the report to PDF within "
                                      f"{timeout:.0f} s") from None
        pdf = Path(tmp) / "bao-cao.pdf"
        if proc.returncode != 0 or not pdf.exists():
            raise OfficialReportError("LibreOffice could not convert the report to PDF: "
                                      + (proc.stderr.decode("utf-8", "replace").strip()[-300:]
                                         or f"exit code {proc.returncode}"))
        return pdf.read_bytes()

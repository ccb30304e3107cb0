"""The official results report (Vietnamese, A4, self-contained HTML; PDF when WeasyPrint is there)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from outreach.ledger import states
from outreach.reporting import reports
from outreach.clock import VN_TZ

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


def chart_png(by_day: Mapping[str, Mapping[str, int]], *, width_cm: float = 17.0,
              height_cm: float = 8.0, dpi: int = 150) -> bytes:
    """A stacked bar chart of deliveries per day by state (Vietnamese labels), as PNG bytes.

    Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend change).
    Days are ``YYYY-MM-DD`` (Asia/Ho_Chi_Minh); an empty mapping gives a chart saying so.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_cm / 2.54, height_cm / 2.54), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    days = sorted(by_day)
    if not days:
        ax.text(0.5, 0.5, "Chưa có tin nhắn nào", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        x = list(range(len(days)))
        bottom = [0] * len(days)
        shown = [s for s in CHART_ORDER if any(by_day[d].get(s) for d in days)]
        shown += sorted({s for d in days for s in by_day[d] if s not in CHART_ORDER})
        for s in shown:
            values = [by_day[d].get(s, 0) for d in days]
            ax.bar(x, values, bottom=bottom, color=STATUS_COLOURS.get(s), label=STATUS_VI.get(s, s),
                   width=0.7)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xticks(x, [vn_date(d) for d in days], rotation=45 if len(days) > 8 else 0,
                      ha="right" if len(days) > 8 else "center", fontsize=7)
        ax.set_ylabel("Số tin nhắn", fontsize=8)
        ax.set_title("Số tin nhắn theo ngày và theo trạng thái", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(_thousands())
        handles, labels = ax.get_legend_handles_labels()  # legend top-down = the stack
        ax.legend(handles[::-1], labels[::-1], fontsize=6, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: vn_int(v))


def context(data: Mapping[str, Any], *, org: str | None = None, place: str | None = None,
            chart: bytes | None = None) -> dict[str, Any]:
    """What the template shows, computed from :func:`outreach.reporting.reports.campaign_report`."""
    districts = []
    names = sorted(data["by_district"], key=lambda k: (k == reports.UNKNOWN_DISTRICT, k))
    for name in names:  # "(không rõ)" last
        o = reports.outcome(data["by_district"][name])
        districts.append({"name": name, **o, "rate": vn_pct(o["delivery_rate"])})
    total = reports.outcome(data["by_status"])
    reasons = [{"status": STATUS_VI.get(r["status"], r["status"]),
                "gateway": r["gateway"] or "",
                "code": " · ".join(x for x in (r["error_code"], r["error_reason"]) if x),
                "reason": REASON_VI.get(r["error_reason"] or "", r["error_reason"] or ""),
                "count": r["count"]} for r in data["failure_reasons"]]
    now = dt.datetime.now(VN_TZ)
    png = chart if chart is not None else chart_png(data["by_day"])
    return {
        "d": data, "org": org, "place": place,
        "today": f"ngày {now.day} tháng {now.month} năm {now.year}",
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
        "districts": districts, "reasons": reasons,
        "reasons_total": sum(r["count"] for r in data["failure_reasons"]),
        "chart_b64": base64.b64encode(png).decode("ascii"),
        "days": [{"day": vn_date(d), "count": sum(v.values()),
                  "delivered": v.get(states.DELIVERED, 0)} for d, v in data["by_day"].items()],
        "n": vn_int, "pct": vn_pct,
        "carriers": carrier_context(data.get("carrier_broadcasts") or {}),
        "replies": replies_context(data.get("replies") or {}),
    }


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


def render(data: Mapping[str, Any], *, org: str | None = None, place: str | None = None) -> str:
    """The report as one self-contained HTML document (NFC, no external URL, A4 print CSS)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("outreach", "templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("official_report.html").render(**context(data, org=org, place=place))
    return unicodedata.normalize("NFC", html)


def render_html(conn: Connection, campaign_id: str, *, since: dt.datetime | None = None,
                until: dt.datetime | None = None, org: str | None = None,
                place: str | None = None) -> str:
    """Read the campaign's report from the ledger and render it (see :func:`render`)."""
    return render(reports.campaign_report(conn, campaign_id, since=since, until=until),
                  org=org, place=place)


def write(html: str, out: str | Path) -> Path:
    """Write ``html`` to ``out``: ``.html``/``.htm`` as UTF-8, ``.pdf`` through WeasyPrint.

    Raises OfficialReportError for another suffix, or for PDF when WeasyPrint (an optional
    dependency with system libraries) cannot be imported.
    """
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        from outreach import safeio

        safeio.write_private(path, html)
        return path
    if suffix == ".pdf":
        try:
            from weasyprint import HTML  # type: ignore[import-not-found]
        except (ImportError, OSError) as exc:
            raise OfficialReportError(
                "PDF output needs WeasyPrint, which is not installed here "
                f"({type(exc).__name__}: {exc}). Install it with `pip install weasyprint` and its "
                "system libraries (Pango; on Debian/Ubuntu `apt install libpango-1.0-0 "
                "libpangoft2-1.0-0`), or write --out FILE.html and print it to PDF from a browser "
                "(the page is laid out for A4).") from None
        from outreach import safeio

        safeio.write_private(path, HTML(string=html).write_pdf())
        return path
    raise OfficialReportError(f"{path.name}: the official report is written as .html or .pdf")

"""The web application (``outreach web serve``): server-rendered pages in Vietnamese for the
people who follow a campaign, and the maker–checker buttons.

Every figure on a page comes from :func:`outreach.reporting.reports.campaign_report` (the same dict as
``outreach report ID --format json``), never from a count of its own; each is rendered with a
``data-figure`` attribute holding the JSON value, so tests compare them one by one.

Security (issue #23):

- every page but ``/login`` and ``/healthz`` needs a signed-in account (session cookie signed
  with ``secret_key``: HttpOnly, SameSite=Lax, Secure with ``secure_cookies``), reloaded from the
  database on each request so a disabled account is out at once;
- or, when ``trusted_header`` is set (e.g. ``X-Remote-User``), the account named by that header
  on requests coming from ``trusted_proxies`` (default 127.0.0.1, ::1) — the Department's
  single-sign-on proxy authenticates, outreach authorises. The header from any other address is
  ignored;
- every POST carries a CSRF token (Flask-WTF ``CSRFProtect``, one per session);
- roles (:mod:`outreach.users`): viewers see figures and masked numbers; operators launch,
  pause and ask for approval, and may show whole numbers of people not reached (each view goes
  in the audit log as ``view-numbers``); approvers approve someone else's request; admins all.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import ipaddress
import json
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from flask import (Flask, Response, abort, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import func, select

from outreach import i18n, users
from outreach.input import campaigns
from outreach.ledger import states, suppression
from outreach.reporting import audit, official, reports
from outreach.sending import approvals, ops
from outreach.ledger.db import Database
from outreach.gateways import gateway_names_for
from outreach.ledger.models import Campaign, Run, Schedule, Suppression
from outreach.input.phones import mask

ROLE_VI = users.ROLE_VI
RUN_STATUS_VI = {"created": "Đã tạo", "running": "Đang gửi", "waiting": "Chờ khung giờ gửi",
                 "paused": "Tạm dừng", "completed": "Hoàn thành", "cancelled": "Đã hủy",
                 "missed": "Bỏ lỡ", "failed": "Lỗi"}
KIND_VI = {"launch": "Gửi thủ công", "scheduled": "Theo lịch", "resend": "Gửi lại"}
#: Breakdowns shown on the campaign page, in order: (report key, Vietnamese title).
BREAKDOWNS = (("by_day", "Theo ngày", "Ngày"), ("by_district", "Theo quận, huyện", "Quận, huyện"),
              ("by_carrier", "Theo nhà mạng", "Nhà mạng"), ("by_channel", "Theo kênh", "Kênh"))
GROUPS = (("delivered", "Đã đến máy"), ("failures", "Không thành công"),
          ("awaiting", "Chờ kết quả"), ("not_sent", "Chưa gửi"))


def create_app(db: Database, *, secret_key: str | None = None, trusted_header: str | None = None,
               trusted_proxies: Iterable[str] = ("127.0.0.1", "::1"), secure_cookies: bool = False,
               org: str = "Sở Thông tin và Truyền thông", campaigns_dir: str = "campaigns",
               gateway: str | None = None, gateway_options: dict[str, Any] | None = None,
               ) -> Flask:
    """The Flask application over ``db`` (schema already migrated).

    ``secret_key`` signs sessions (default: random per process; sessions then end at a
    restart); ``trusted_header``/``trusted_proxies``: reverse-proxy sign-in (see the module
    docstring); ``gateway`` overrides every channel's gateway for launches from the web and
    ``gateway_options`` are passed to :func:`outreach.gateways.build_gateways` (tests: mock latency).
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_hex(32), SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=secure_cookies,
        SESSION_COOKIE_NAME="outreach_session", WTF_CSRF_TIME_LIMIT=None,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=8))
    CSRFProtect(app)
    proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
    launches: dict[str, threading.Thread] = {}
    app.extensions["outreach"] = {"db": db, "launches": launches}

    def operator_name() -> str:
        return g.user.username

    # -- authentication --------------------------------------------------------------------
    def from_trusted_proxy() -> bool:
        try:
            addr = ipaddress.ip_address(request.remote_addr or "")
        except ValueError:
            return False
        return any(addr in net for net in proxies)

    @app.before_request
    def load_user() -> Any:
        g.user = None
        if trusted_header and from_trusted_proxy() and request.headers.get(trusted_header):
            with db.engine.connect() as conn:
                acc = users.get(conn, request.headers[trusted_header])
            if acc is not None and acc.active:
                g.user = acc
        elif session.get("user"):
            with db.engine.connect() as conn:
                acc = users.get(conn, session["user"])
            if acc is not None and acc.active:
                g.user = acc
            else:
                session.clear()
        if g.user is None and request.endpoint not in ("login", "healthz", "static"):
            if request.path.endswith(".json"):
                return jsonify({"error": "đăng nhập để tiếp tục"}), 401
            return redirect(url_for("login", next=request.full_path))
        return None

    @app.before_request
    def known_campaign() -> Any:
        """A page of a campaign that is not in the database is the Vietnamese 404 naming the
        known campaigns (JSON for ``.json``), for every route with ``<cid>``, before any route
        reads it; only for a signed-in account (registered after :func:`load_user`)."""
        cid = (request.view_args or {}).get("cid")
        if cid is None:
            return None
        from outreach.cli.campaign import unknown_campaign

        with db.engine.connect() as conn:
            if conn.execute(select(Campaign.id).where(Campaign.id == cid)).first() is not None:
                return None
            message = official.in_vietnamese(lambda c: unknown_campaign(conn, c), cid)
        abort(404, description=_sentence(message))

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
        return resp

    def role_required(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def wrapper(*a: Any, **kw: Any) -> Any:
                if not g.user.has(role):
                    abort(403)
                return fn(*a, **kw)
            return wrapper
        return deco

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        return render_template("error.html", code=400, message=(
            "Phiên làm việc đã hết hạn hoặc biểu mẫu không hợp lệ (thiếu mã CSRF). "
            "Tải lại trang và thử lại.")), 400

    @app.errorhandler(403)
    def forbidden(_exc: Any) -> Any:
        return render_template("error.html", code=403, message=(
            "Tài khoản của bạn không có quyền thực hiện thao tác này.")), 403

    def error_page(code: int, message: str) -> Any:
        """The error page (``error.html``), or ``{"error": message}`` for a ``.json`` path."""
        if request.path.endswith(".json"):
            return jsonify({"error": message}), code
        return render_template("error.html", code=code, message=message), code

    @app.errorhandler(404)
    def not_found(exc: Any) -> Any:
        from werkzeug.exceptions import NotFound

        # abort(404, description=...) says why in Vietnamese; Werkzeug's own text is English
        message = getattr(exc, "description", None)
        if not message or message == NotFound.description:
            message = "Không tìm thấy trang."
        return error_page(404, message)

    @app.errorhandler(ops.OperatorError)
    def refused(exc: ops.OperatorError) -> Any:
        """A refusal raised by the code under a page (:class:`outreach.sending.ops.OperatorError`)
        is its message on the error page (400), never an English 500 and a traceback in the
        console; an unknown campaign is answered before (:func:`known_campaign`, 404)."""
        return error_page(400, _sentence(_one_line(exc)))

    @app.context_processor
    def helpers() -> dict[str, Any]:
        return {"n": official.vn_int, "pct": official.vn_pct, "vdate": official.vn_date,
                "vtime": official.vn_datetime, "STATUS_VI": official.STATUS_VI,
                "ROLE_VI": ROLE_VI, "RUN_STATUS_VI": RUN_STATUS_VI, "KIND_VI": KIND_VI,
                "org": org, "user": g.get("user"), "REASON_VI": official.REASON_VI,
                "reason_vi": official.reason_vi, "run_reason_vi": official.run_reason_vi,
                "action_vi": lambda a: official.in_vietnamese(audit.action_label, a),
                "details_vi": lambda d: official.in_vietnamese(audit.describe, d),
                "optout_reason_vi": lambda r: official.in_vietnamese(suppression.reason_label, r),
                "optout_source_vi": lambda r: official.in_vietnamese(suppression.source_label, r)}

    # -- pages -----------------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> Any:
        return {"ok": True}

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = None
        if request.method == "POST":
            name = request.form.get("username", "")
            with db.engine.begin() as conn:
                acc = users.authenticate(conn, name, request.form.get("password", ""))
                audit.record(conn, "login", operator=(acc.username if acc else "-"),
                             details={"user": name.strip().lower()[:64], "ok": acc is not None,
                                      "address": request.remote_addr})
            if acc is None:
                error = "Tên đăng nhập hoặc mật khẩu không đúng, hoặc tài khoản đã bị khóa."
            else:
                session.clear()
                session["user"] = acc.username
                session.permanent = True
                nxt = request.args.get("next") or ""
                return redirect(nxt if nxt.startswith("/") and not nxt.startswith("//")
                                else url_for("index"))
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        with db.engine.begin() as conn:
            audit.record(conn, "logout", operator=operator_name())
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    def index() -> Any:
        rows = []
        with reports.report_connection(db.engine) as conn:
            cams = conn.execute(select(Campaign.id, Campaign.name, Campaign.text_sha256,
                                       Campaign.status).order_by(Campaign.id)).all()
            last_runs = {r.campaign_id: r for r in conn.execute(
                select(Run.campaign_id, Run.id, Run.status, Run.kind, Run.created_at)
                .where(Run.id.in_(select(func.max(Run.id)).group_by(Run.campaign_id))))}
            for c in cams:
                data = reports.campaign_report(conn, c.id)
                rows.append({"c": c, "run": last_runs.get(c.id), "d": data,
                             "approval": approvals.latest(conn, c.id)})
        return render_template("index.html", rows=rows)

    def load_spec(cid: str) -> campaigns.CampaignSpec:
        with db.engine.connect() as conn:
            path = conn.execute(select(Campaign.file_path).where(Campaign.id == cid)).scalar()
        if path is None:
            abort(404)
        try:
            return campaigns.load(path)
        except (campaigns.CampaignError, OSError) as exc:  # the file moved or became invalid
            abort(404, description=f"Không đọc được tệp chiến dịch: {_one_line(exc)}")

    @app.get("/campaigns/<cid>")
    def campaign_page(cid: str) -> Any:
        spec = load_spec(cid)
        with reports.report_connection(db.engine) as conn:
            data = reports.campaign_report(conn, cid)
            run_rows = conn.execute(select(Run.__table__).where(Run.campaign_id == cid)
                                    .order_by(Run.id.desc())).mappings().all()
            sched = conn.execute(select(Schedule.paused).where(Schedule.campaign_id == cid)).first()
            try:
                ap = approvals.state(conn, spec)
                ap_error = None
            except Exception as exc:  # an unreadable list: show why, keep the figures
                ap, ap_error = None, str(exc)
            optouts = conn.execute(select(func.count()).select_from(Suppression)).scalar_one()
        names = gateway_names_for(spec, gateway)
        reaching = approvals.phone_gateways(names)
        breakdowns = []
        for key, title, column in BREAKDOWNS:
            rows = []
            for k, counts in data[key].items():
                o = reports.outcome(counts)
                rows.append({"key": k, **o})
            maximum = max([r["deliveries"] for r in rows] or [1]) or 1
            breakdowns.append({"key": key, "title": title, "column": column, "rows": rows,
                               "max": maximum,
                               "cost": data["cost"].get(key[3:], {})})
        wards = [{"district": dname, "ward": wname, **reports.outcome(counts)}
                 for dname, ws in data["by_ward"].items() for wname, counts in ws.items()]
        return render_template(
            "campaign.html", spec=spec, d=data, wards=wards, runs=run_rows, schedule=sched, ap=ap,
            ap_error=ap_error, breakdowns=breakdowns, groups=GROUPS, gateways=names,
            reaching=reaching, source_reference=official.source_reference(data),
            optouts=optouts, launching=cid in launches and launches[cid].is_alive(),
            progress=progress_data(data, run_rows[0] if run_rows else None))

    def progress_data(data: dict[str, Any], run: Any) -> dict[str, Any]:
        bs = data["by_status"]
        pending = bs.get(states.QUEUED, 0) + bs.get(states.SENDING, 0)
        total = data["deliveries"]
        ratio = (total - pending) / total if total else 0.0
        out = {"deliveries": total, "done": total - pending, "pending": pending,
               "percent": round(100 * ratio, 1),
               # as the page shows it: 100,0% (Vietnamese decimal comma)
               "percent_text": official.in_vietnamese(lambda _x: i18n.percent(ratio), None),
               "by_status": bs, **{k: data[k] for k, _ in GROUPS},
               "recipients": data["recipients"], "reached": data["reached"],
               "not_reached": data["not_reached"], "attempted": data["attempted"],
               "delivery_rate": data["delivery_rate"], "last_send": data["last_send"]}
        if run is not None:
            out["run"] = {"id": run["id"], "status": run["status"],
                          "status_vi": RUN_STATUS_VI.get(run["status"], run["status"]),
                          "reason": run["status_reason"]}
        return out

    @app.get("/campaigns/<cid>/progress.json")
    def progress(cid: str) -> Any:
        with reports.report_connection(db.engine) as conn:
            data = reports.campaign_report(conn, cid)
            run = conn.execute(select(Run.__table__).where(Run.campaign_id == cid)
                               .order_by(Run.id.desc())).mappings().first()
        return jsonify(progress_data(data, run))

    @app.get("/campaigns/<cid>/report.json")
    def report_json(cid: str) -> Any:
        with reports.report_connection(db.engine) as conn:
            data = reports.campaign_report(conn, cid)
        return Response(json.dumps(data, ensure_ascii=False, indent=2),
                        mimetype="application/json")

    def _download(cid: str, kind: str, body: bytes, mimetype: str, filename: str) -> Response:
        with db.engine.begin() as conn:
            audit.record(conn, "download", operator=operator_name(), campaign_id=cid,
                         details={"what": kind})
        resp = Response(body, mimetype=mimetype)
        resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return resp

    @app.get("/campaigns/<cid>/bao-cao.html")
    def official_html(cid: str) -> Any:
        with reports.report_connection(db.engine) as conn:
            html = official.render(reports.campaign_report(conn, cid), org=org)
        return _download(cid, "official-html", html.encode("utf-8"), "text/html",
                         f"bao-cao-{cid}.html")

    @app.get("/campaigns/<cid>/bao-cao.xlsx")
    def report_xlsx(cid: str) -> Any:
        with reports.report_connection(db.engine) as conn:
            data = reports.campaign_report(conn, cid)
        buf = io.BytesIO()
        reports.write_xlsx(data, buf)
        return _download(cid, "xlsx", buf.getvalue(),
                         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                         f"bao-cao-{cid}.xlsx")

    @app.get("/campaigns/<cid>/chua-nhan")
    def not_reached(cid: str) -> Any:
        from outreach.cli.deliveries import not_reached_rows

        whole = request.args.get("whole") == "1"
        if whole and not g.user.has("operator"):
            abort(403)
        with reports.report_connection(db.engine) as conn:
            data = reports.campaign_report(conn, cid)
            rows = not_reached_rows(conn, cid)
        if whole:
            with db.engine.begin() as conn:
                audit.record(conn, "view-numbers", operator=operator_name(), campaign_id=cid,
                             details={"what": "not-reached", "rows": len(rows),
                                      "address": request.remote_addr})
        for r in rows:
            r["shown"] = r["phone"] if whole else mask(r["phone"])
        return render_template("not_reached.html", d=data, rows=rows, whole=whole, cid=cid)

    @app.get("/tu-choi")
    def optouts_page() -> Any:
        with db.engine.connect() as conn:
            # the columns, not the entity: a Core connection's scalars() would give the first
            # column only
            rows = conn.execute(select(Suppression.e164, Suppression.reason, Suppression.source,
                                       Suppression.created_at)
                                .order_by(Suppression.created_at.desc()).limit(500)).all()
            total = conn.execute(select(func.count()).select_from(Suppression)).scalar_one()
        return render_template("optouts.html", rows=[{
            "phone": mask(r.e164) if not r.e164.startswith("h:") else "(đã xóa)",
            "reason": r.reason, "source": r.source, "at": r.created_at} for r in rows],
            total=total)

    @app.get("/nhat-ky")
    @role_required("admin")
    def audit_page() -> Any:
        with db.engine.connect() as conn:
            entries = audit.entries(conn, limit=300)
        return render_template("audit.html", entries=entries)

    # -- actions ---------------------------------------------------------------------------
    def back(cid: str) -> Any:
        return redirect(url_for("campaign_page", cid=cid))

    @app.post("/campaigns/<cid>/submit")
    @role_required("operator")
    def submit(cid: str) -> Any:
        spec = load_spec(cid)
        try:
            with db.engine.begin() as conn:
                a = approvals.prepare(conn, spec, operator=operator_name(),
                                      note=request.form.get("note") or None)
            flash(f"Đã gửi đề nghị phê duyệt số {a.id}: người phê duyệt phải là người khác.", "ok")
        except Exception as exc:
            flash(_one_line(exc), "error")
        return back(cid)

    @app.post("/campaigns/<cid>/approve")
    @role_required("approver")
    def approve(cid: str) -> Any:
        spec = load_spec(cid)
        try:
            with db.engine.begin() as conn:
                a = approvals.approve(conn, spec, approver=operator_name())
            flash(f"Đã phê duyệt (số {a.id}) nội dung {a.text_sha256[:12]}… và {a.rows} dòng "
                  "danh sách.", "ok")
        except approvals.ApprovalError as exc:
            flash(_approval_vi(exc), "error")
        return back(cid)

    @app.post("/campaigns/<cid>/launch")
    @role_required("operator")
    def launch(cid: str) -> Any:
        from outreach.sending.engine import send_run
        from outreach.gateways import build_gateways

        spec = load_spec(cid)
        if cid in launches and launches[cid].is_alive():
            flash("Chiến dịch đang được gửi.", "error")
            return back(cid)
        try:
            names = gateway_names_for(spec, gateway)
            with db.engine.connect() as conn:  # refuse before touching any gateway (read only:
                approvals.require_approval(conn, spec, names)  # ops.launch checks again)
            gws = build_gateways(names, db, **(gateway_options or {}))
            res = ops.launch(db, spec, gateway=gateway, operator=operator_name(), gateways=gws,
                             dispatch=False)
        except approvals.ApprovalError as exc:
            flash(_approval_vi(exc), "error")
            return back(cid)
        except Exception as exc:
            flash(_one_line(exc), "error")
            return back(cid)
        if res.nothing_new or res.plan is None or res.plan.run_id is None:
            flash("Không có gì mới để gửi: mọi người nhận trong danh sách đã có tin của chiến "
                  "dịch này.", "ok")
            return back(cid)
        run_id = res.plan.run_id
        # batches of about one second of sends (the dispatcher records a batch's outcomes
        # together), so the progress on the page moves every second
        ch = spec.channels[0]
        rate = ch.rate_per_second or gws[ch.channel].rate_per_second
        batch = int(min(500, max(10, rate))) if rate else 500

        def send() -> None:
            try:
                send_run(db, spec, run_id, gws, batch_size=batch)
            finally:
                for gw in gws.values():
                    gw.close()

        t = threading.Thread(target=send, name=f"web-launch-{cid}", daemon=True)
        launches[cid] = t
        t.start()
        flash(f"Đã bắt đầu đợt gửi #{run_id} ({res.plan.created} tin).", "ok")
        return back(cid)

    @app.post("/campaigns/<cid>/pause")
    @role_required("operator")
    def pause(cid: str) -> Any:
        try:
            run = ops.set_run_state(db, cid, "pause", operator=operator_name())
            flash(f"Đã tạm dừng đợt gửi #{run.id}.", "ok")
        except Exception as exc:
            flash(_one_line(exc), "error")
        return back(cid)

    return app


def _sentence(message: str) -> str:
    """A message as a sentence of the page: its first letter capitalised, a full stop."""
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?", ")")) else message + "."


def _one_line(exc: BaseException) -> str:
    return unicodedata.normalize("NFC", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _approval_vi(exc: BaseException) -> str:
    """The refusal in Vietnamese, the English detail after it (for the operator's records)."""
    return ("Chưa được phép: việc gửi qua cổng đến máy người dân cần người thứ hai phê duyệt "
            f"(hoặc phê duyệt không còn hiệu lực). Chi tiết: {_one_line(exc)}")


def serve(db: Database, host: str = "127.0.0.1", port: int = 8000, *, threads: int = 8,
          **options: Any) -> None:
    """Serve :func:`create_app` with waitress (blocks)."""
    import waitress

    waitress.serve(create_app(db, **options), host=host, port=port, threads=threads,
                   ident="outreach")

"""The webhook application: Twilio delivery receipts (signed) into the ledger, plus Zalo's blueprint."""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from sqlalchemy import text
from twilio.request_validator import (SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,
                                      RequestValidator, get_signature_algorithm)

from outreach import receipts
from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.db import Database, retry_write
from outreach.gateways.base import StatusUpdate
from outreach.gateways.twilio import error_reason, map_status

log = logging.getLogger(__name__)

STATUS_PATH = "/webhooks/twilio/status"
#: Twilio status callbacks are small forms; anything bigger is not one.
MAX_CONTENT_LENGTH = 64 * 1024
_MASKED_FIELDS = ("To", "From")


def create_app(db: Database, *, twilio_auth_token: str | None = None,
               public_base_url: str | None = None, clock: Clock | None = None) -> Flask:
    """A Flask (WSGI) app receiving delivery receipts.

    Routes:

    - ``POST /webhooks/twilio/status/<delivery_id>``: the StatusCallback URL
      :class:`~outreach.gateways.twilio.TwilioGateway` gives Twilio, so a receipt that arrives
      before the message SID is stored still finds its delivery;
    - ``POST /webhooks/twilio/status``: the same without our id (a Messaging Service's own
      callback URL), matched by ``MessageSid``; unmatched receipts are kept in
      ``pending_receipts`` and replayed by :func:`outreach.receipts.apply_pending`;
    - ``GET /healthz``: 200 ``{"ok": true}`` when the database answers.

    Signatures: ``X-Twilio-Signature`` is checked with the SDK's ``RequestValidator`` over the
    URL Twilio called, which is ``public_base_url + path (+ ?query)``: behind a reverse proxy
    ``request.url`` is the proxy's internal URL and would never match, so set
    ``public_base_url`` (``OUTREACH_PUBLIC_BASE_URL``) to the same base the gateway put in the
    callback URL. Without it ``request.url`` is used (direct exposure only). A missing or bad
    signature answers 403 and changes nothing. Without ``twilio_auth_token`` the Twilio routes
    are not registered (404). Source: https://www.twilio.com/docs/usage/security#validating-requests

    Each receipt is one short write transaction (``receipts.apply_updates``, ``source="webhook"``):
    every receipt is kept as a delivery event and states only move forward, so duplicated and
    out-of-order callbacks are harmless. Answers 204. On SQLite the writes of this process are
    serialised by a lock, so threads queue in memory instead of sleeping in SQLite's busy handler.

    ``app.config["OUTREACH_DB"]`` holds ``db`` for blueprints (``outreach.gateways.zalo_webhook``
    is registered when that module exists and exposes ``blueprint``).
    """
    app = Flask("outreach.webhooks")
    app.config["OUTREACH_DB"] = db
    app.config["OUTREACH_CLOCK"] = clock or SYSTEM_CLOCK
    app.config["OUTREACH_PUBLIC_BASE_URL"] = public_base_url.rstrip("/") if public_base_url else None
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    app.extensions["outreach_write_lock"] = threading.Lock() if db.is_sqlite else None

    @app.get("/healthz")
    def healthz() -> Any:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return jsonify(ok=True)

    if twilio_auth_token:
        validator = RequestValidator(twilio_auth_token)

        @app.post(f"{STATUS_PATH}/<int:delivery_id>")
        @app.post(STATUS_PATH)
        def twilio_status(delivery_id: int | None = None) -> Response:
            return _twilio_status(validator, delivery_id)
    else:
        log.warning("TWILIO_AUTH_TOKEN not given: Twilio receipt routes are disabled")

    _register_zalo(app)
    return app


def _register_zalo(app: Flask) -> None:
    try:
        zalo_webhook = importlib.import_module("outreach.gateways.zalo_webhook")
    except ImportError as exc:
        if getattr(exc, "name", None) != "outreach.gateways.zalo_webhook":
            log.warning("Zalo webhook not available: %s", exc)
        return
    blueprint = getattr(zalo_webhook, "blueprint", None)
    if blueprint is not None:
        app.register_blueprint(blueprint)


def public_url() -> str:
    """The URL Twilio called: configured public base + path + query, else ``request.url``."""
    base = current_app.config.get("OUTREACH_PUBLIC_BASE_URL")
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return base + request.path + (f"?{query}" if query else "")


@contextlib.contextmanager
def write_lock() -> Iterator[None]:
    """The process-wide SQLite write lock of this app (no-op on PostgreSQL)."""
    lock = current_app.extensions.get("outreach_write_lock")
    if lock is None:
        yield
        return
    with lock:
        yield


def _twilio_status(validator: RequestValidator, delivery_id: int | None) -> Response:
    signature = request.headers.get(SIGNATURE_HEADER)
    params = request.form
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not signature or not validator.validate(public_url(), params, signature, algorithm):
        log.warning("rejected a Twilio callback with a %s signature",
                    "missing" if not signature else "bad")
        return Response("invalid signature", status=403, mimetype="text/plain")

    sid = params.get("MessageSid") or params.get("SmsSid")
    twilio_status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not twilio_status:
        return Response("MessageSid and MessageStatus are required", status=400,
                        mimetype="text/plain")
    status = map_status(twilio_status)
    if status is None:  # an inbound message, not a receipt
        return Response(status=204)
    code = params.get("ErrorCode") or None
    if code == "0":
        code = None
    raw = {k: params.get(k) for k in params}
    for name in _MASKED_FIELDS:
        if raw.get(name) and raw[name].startswith("+"):
            from outreach.phones import mask

            raw[name] = mask(raw[name])
    now = current_app.config["OUTREACH_CLOCK"].now()
    update = StatusUpdate(status=status, provider_message_id=sid, delivery_id=delivery_id,
                          provider_status=twilio_status, error_code=code,
                          error_reason=error_reason(code), occurred_at=now, raw=raw)
    key = f"{sid}:{twilio_status}:{code or ''}"
    db: Database = current_app.config["OUTREACH_DB"]
    _record(db, update, key, now)
    return Response(status=204)


@retry_write
def _record(db: Database, update: StatusUpdate, key: str, now: Any) -> None:
    with write_lock(), db.engine.begin() as conn:
        receipts.apply_updates(conn, [update], gateway="twilio", source="webhook", now=now,
                               event_keys=[key])


def serve(db: Database, host: str = "127.0.0.1", port: int = 8080, threads: int = 8, *,
          twilio_auth_token: str | None = None, public_base_url: str | None = None,
          **waitress_options: Any) -> None:
    """Serve :func:`create_app` with waitress (blocks). ``threads``: worker threads."""
    import waitress

    app = create_app(db, twilio_auth_token=twilio_auth_token, public_base_url=public_base_url)
    waitress.serve(app, host=host, port=port, threads=threads, ident="outreach",
                   **waitress_options)

"""The webhook application: signed Twilio delivery receipts into the ledger, plus Zalo's."""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import threading
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
from outreach.phones import mask

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

    Each receipt is applied with ``receipts.apply_updates`` (``source="webhook"``) in a short write
    transaction committed before the 204 answer: every receipt is kept as a delivery event and
    states only move forward, so duplicated and out-of-order callbacks are harmless. Concurrent
    receipts share one transaction (:class:`ReceiptWriter`, group commit).

    ``app.config["OUTREACH_DB"]`` holds ``db`` for blueprints (``outreach.gateways.zalo_webhook``
    is registered when that module exists and exposes ``blueprint``).
    """
    app = Flask("outreach.webhooks")
    app.config["OUTREACH_DB"] = db
    app.config["OUTREACH_CLOCK"] = clock or SYSTEM_CLOCK
    app.config["OUTREACH_PUBLIC_BASE_URL"] = (public_base_url.rstrip("/") if public_base_url
                                              else None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    app.extensions["outreach_receipts"] = ReceiptWriter(db)

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
    for name in _MASKED_FIELDS:  # the ledger already has the number; events need not repeat it
        if raw.get(name) and raw[name].startswith("+"):
            raw[name] = mask(raw[name])
    now = current_app.config["OUTREACH_CLOCK"].now()
    update = StatusUpdate(status=status, provider_message_id=sid, delivery_id=delivery_id,
                          provider_status=twilio_status, error_code=code,
                          error_reason=error_reason(code), occurred_at=now, raw=raw)
    key = f"{sid}:{twilio_status}:{code or ''}"
    current_app.extensions["outreach_receipts"].write(update, key, now)
    return Response(status=204)


class _Item:
    __slots__ = ("update", "key", "now", "done", "error")

    def __init__(self, update: StatusUpdate, key: str, now: dt.datetime) -> None:
        self.update, self.key, self.now = update, key, now
        self.done = False
        self.error: BaseException | None = None


class ReceiptWriter:
    """Group commit for receipts: every caller waits until its receipt is committed, but the
    receipts that arrive while a transaction is running are applied together in the next one.

    SQLite has one writer at a time; instead of each waitress thread opening its own
    ``BEGIN IMMEDIATE`` (and sleeping in SQLite's busy handler), the thread holding the write
    lock applies everything queued so far (at most ``max_batch``), in arrival order, in one
    transaction whose events are stamped with the batch's last arrival time (milliseconds
    apart). If that transaction fails, its receipts are retried one per transaction so a
    single bad receipt fails alone. ``gateway`` is the name stored on pending receipts.
    """

    def __init__(self, db: Database, *, gateway: str = "twilio", max_batch: int = 256) -> None:
        self.db = db
        self.gateway = gateway
        self.max_batch = max_batch
        self._queue: list[_Item] = []
        self._queue_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.transactions = 0  # for tests and benchmarks

    def write(self, update: StatusUpdate, key: str, now: dt.datetime) -> None:
        """Apply one receipt; returns once it is committed. Raises what the database raised."""
        item = _Item(update, key, now)
        with self._queue_lock:
            self._queue.append(item)
        while not item.done:
            with self._write_lock:
                if item.done:
                    break
                with self._queue_lock:
                    batch = self._queue[:self.max_batch]
                    del self._queue[:self.max_batch]
                self._apply(batch)
        if item.error is not None:
            raise item.error

    def _apply(self, batch: list[_Item]) -> None:
        try:
            self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for item in batch:
                    try:
                        self._transaction([item])
                    except Exception as exc:
                        item.error = exc
        finally:
            for item in batch:
                item.done = True

    @retry_write
    def _transaction(self, batch: list[_Item]) -> None:
        with self.db.engine.begin() as conn:
            receipts.apply_updates(conn, [i.update for i in batch], gateway=self.gateway,
                                   source="webhook", now=batch[-1].now,
                                   event_keys=[i.key for i in batch])
        self.transactions += 1


def serve(db: Database, host: str = "127.0.0.1", port: int = 8080, threads: int = 8, *,
          twilio_auth_token: str | None = None, public_base_url: str | None = None,
          **waitress_options: Any) -> None:
    """Serve :func:`create_app` with waitress (blocks). ``threads``: worker threads."""
    import waitress

    app = create_app(db, twilio_auth_token=twilio_auth_token, public_base_url=public_base_url)
    waitress.serve(app, host=host, port=port, threads=threads, ident="outreach",
                   **waitress_options)

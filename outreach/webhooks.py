"""The webhook application: signed Twilio delivery receipts into the ledger, plus Zalo's."""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import re
import threading
import weakref
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask, Response, current_app, jsonify, request
from sqlalchemy import Connection, text
from twilio.request_validator import (SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,
                                      RequestValidator, get_signature_algorithm)
from werkzeug import urls  # noqa: F401 (registers the "werkzeug.url_quote" error handler)
from werkzeug.datastructures import ImmutableMultiDict, MultiDict

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
    receipts share one transaction (:class:`ReceiptWriter`, group commit). With a
    ``public_base_url``, Twilio's form POSTs to the status routes are answered by
    :class:`StatusCallbacks`, a WSGI layer in front of Flask that calls the same :func:`receive`
    without Flask's per-request machinery; any other request goes through Flask.

    ``app.config["OUTREACH_DB"]`` holds ``db`` for blueprints (``outreach.gateways.zalo_webhook``
    is registered when that module exists and exposes ``blueprint``).
    """
    app = Flask("outreach.webhooks")
    app.config["OUTREACH_DB"] = db
    app.config["OUTREACH_CLOCK"] = clock or SYSTEM_CLOCK
    app.config["OUTREACH_PUBLIC_BASE_URL"] = (public_base_url.rstrip("/") if public_base_url
                                              else None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    writer = app.extensions["outreach_receipts"] = ReceiptWriter(db)
    # SQLite has one writer: the Zalo blueprint's writes queue behind the receipt batches
    app.extensions["outreach_write_lock"] = writer.write_lock if db.is_sqlite else None

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

        app.wsgi_app = StatusCallbacks(app, validator, app.wsgi_app)  # type: ignore[method-assign]
    else:
        log.warning("TWILIO_AUTH_TOKEN not given: Twilio receipt routes are disabled")

    _register_zalo(app)
    from outreach.gateways.brandname.esms import blueprint as esms_blueprint

    app.register_blueprint(esms_blueprint)  # GET /webhooks/esms/status/<id>/<token>
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
    code, body = receive(validator, current_app.extensions["outreach_receipts"],
                         current_app.config["OUTREACH_CLOCK"], url=public_url(),
                         params=request.form, signature=request.headers.get(SIGNATURE_HEADER),
                         settings=request.headers.get(SIGNATURE_SETTINGS_HEADER),
                         delivery_id=delivery_id)
    if code == 204:
        return Response(status=204)
    return Response(body, status=code, mimetype="text/plain")


def receive(validator: RequestValidator, writer: ReceiptWriter, clock: Clock, *, url: str,
            params: MultiDict[str, str], signature: str | None, settings: str | None,
            delivery_id: int | None) -> tuple[int, str]:
    """One Twilio status callback: (HTTP status, text body). ``url`` is the URL Twilio called,
    ``params`` the form, ``signature`` and ``settings`` the ``X-Twilio-Signature`` and
    ``X-Twilio-Webhooks-Signature-Settings`` headers. The signature is checked with the SDK's
    ``RequestValidator`` before anything else (403, nothing written); the 204 is only returned
    once the receipt is committed (:meth:`ReceiptWriter.write`)."""
    algorithm = get_signature_algorithm(settings)
    if not signature or not validator.validate(url, params, signature, algorithm):
        log.warning("rejected a Twilio callback with a %s signature",
                    "missing" if not signature else "bad")
        return 403, "invalid signature"

    sid = params.get("MessageSid") or params.get("SmsSid")
    twilio_status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not twilio_status:
        return 400, "MessageSid and MessageStatus are required"
    status = map_status(twilio_status)
    if status is None:  # an inbound message, not a receipt
        return 204, ""
    code = params.get("ErrorCode") or None
    if code == "0":
        code = None
    raw = {k: params.get(k) for k in params}
    for name in _MASKED_FIELDS:  # the ledger already has the number; events need not repeat it
        if raw.get(name) and raw[name].startswith("+"):
            raw[name] = mask(raw[name])
    now = clock.now()
    update = StatusUpdate(status=status, provider_message_id=sid, delivery_id=delivery_id,
                          provider_status=twilio_status, error_code=code,
                          error_reason=error_reason(code), occurred_at=now, raw=raw)
    writer.write(update, f"{sid}:{twilio_status}:{code or ''}", now)
    return 204, ""


_STATUS_ROUTE = re.compile(re.escape(STATUS_PATH) + r"(?:/([1-9][0-9]{0,17}))?")
_FORM = "application/x-www-form-urlencoded"
_NO_CONTENT: list[bytes] = []


class StatusCallbacks:
    """WSGI middleware in front of Flask for the one request Twilio sends: a form ``POST`` to
    ``/webhooks/twilio/status[/<delivery_id>]`` with a ``Content-Length`` within
    ``MAX_CONTENT_LENGTH``, when ``OUTREACH_PUBLIC_BASE_URL`` is set. It parses the form as
    Flask does (``parse_qsl``, blank values kept, UTF-8, an undecodable body read as an empty
    form), builds the signed URL as :func:`public_url` does (base + path + ?query) and calls
    the same :func:`receive`, without Flask's request context, URL map and response objects
    (about 0.1 ms of CPU per callback, a tenth of the whole). Every other request, and any
    callback of another shape (chunked, multipart, other paths, no public base URL), goes to
    the Flask application unchanged, which routes, answers 404/405/413 and handles it.
    """

    def __init__(self, app: Flask, validator: RequestValidator, wsgi_app: Any) -> None:
        self.app = app
        self.validator = validator
        self.wsgi_app = wsgi_app
        self.handled = 0  # callbacks answered here, for tests

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        config = self.app.config
        base = config["OUTREACH_PUBLIC_BASE_URL"]
        path = environ.get("PATH_INFO", "")
        match = _STATUS_ROUTE.fullmatch(path) if base else None
        if (match is None or environ.get("REQUEST_METHOD") != "POST"
                or "HTTP_TRANSFER_ENCODING" in environ
                or environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != _FORM):
            return self.wsgi_app(environ, start_response)
        length_text = environ.get("CONTENT_LENGTH", "")
        limit = config["MAX_CONTENT_LENGTH"]
        if (not (length_text.isascii() and length_text.isdigit())
                or (limit is not None and int(length_text) > limit)):
            return self.wsgi_app(environ, start_response)
        length = int(length_text)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            items = parse_qsl(body.decode(), keep_blank_values=True,
                              errors="werkzeug.url_quote")
        except ValueError:  # not UTF-8: werkzeug's silent form parser gives an empty form
            items = []
        query = environ.get("QUERY_STRING", "")
        url = base + path + (f"?{query}" if query else "")
        delivery_id = int(match.group(1)) if match.group(1) else None
        try:
            code, text = receive(self.validator, self.app.extensions["outreach_receipts"],
                                 config["OUTREACH_CLOCK"], url=url,
                                 params=ImmutableMultiDict(items),
                                 signature=environ.get("HTTP_X_TWILIO_SIGNATURE"),
                                 settings=environ.get(
                                     "HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS"),
                                 delivery_id=delivery_id)
        except Exception:
            propagate = config.get("PROPAGATE_EXCEPTIONS")  # as Flask decides
            if propagate or (propagate is None and (self.app.testing or self.app.debug)):
                raise
            log.exception("a Twilio callback to %s failed", path)
            code, text = 500, "internal server error"
        self.handled += 1
        if code == 204:
            start_response("204 NO CONTENT", [])
            return _NO_CONTENT
        data = text.encode()
        start_response(f"{code} {HTTPStatus(code).phrase.upper()}",
                       [("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(data)))])
        return [data]


class _Item:
    __slots__ = ("update", "key", "now", "done", "error", "lead", "wake")

    def __init__(self, update: StatusUpdate, key: str, now: dt.datetime) -> None:
        self.update, self.key, self.now = update, key, now
        self.done = False  # committed, or failed with ``error``
        self.error: BaseException | None = None
        self.lead = False  # this receipt's caller writes the next batch
        self.wake: threading.Lock | None = None  # released when done or lead is set


class ReceiptWriter:
    """Group commit for receipts: every caller waits until its receipt is committed, but the
    receipts that arrive while a transaction is running are applied together in the next one.

    SQLite has one writer at a time; instead of each waitress thread opening its own
    ``BEGIN IMMEDIATE`` (and sleeping in SQLite's busy handler), one caller at a time (the
    leader) takes everything queued so far (at most ``max_batch``), in arrival order, and
    applies it in one transaction whose events are stamped with the batch's last arrival time
    (milliseconds apart). When it has committed, it wakes the callers of that batch, which
    return at once, and hands the lead to the oldest waiting caller, whose batch holds
    everything that arrived meanwhile: each waiting caller is woken exactly once, when its
    receipt is committed or when it is its turn to write. If a transaction fails, its receipts
    are retried one per transaction so a single bad receipt fails alone. ``gateway`` is the
    name stored on pending receipts.
    """

    def __init__(self, db: Database, *, gateway: str = "twilio", max_batch: int = 256) -> None:
        self.db = db
        self.gateway = gateway
        self.max_batch = max_batch
        self._queue: list[_Item] = []
        self._mutex = threading.Lock()  # guards _queue and _leading
        self._leading = False
        #: held while a batch is written; the Zalo blueprint takes it too, so this process's
        #: SQLite writes queue here instead of in SQLite's busy handler
        self.write_lock = threading.Lock()
        self.transactions = 0  # for tests and benchmarks
        self._conn: Connection | None = None

    def write(self, update: StatusUpdate, key: str, now: dt.datetime) -> None:
        """Apply one receipt; returns once it is committed. Raises what the database raised."""
        item = _Item(update, key, now)
        with self._mutex:
            self._queue.append(item)
            if self._leading:
                item.wake = threading.Lock()
                item.wake.acquire()
            else:
                self._leading = item.lead = True
        if item.wake is not None:
            item.wake.acquire()  # until a leader releases it
        while not item.done:  # this caller leads: write batches until its own is committed
            with self._mutex:
                batch = self._queue[:self.max_batch]
                del self._queue[:self.max_batch]
            try:
                with self.write_lock:
                    self._apply(batch)
            finally:
                for other in batch:
                    if other.wake is not None and other is not item:
                        other.wake.release()
                if item.done:  # hand the lead to the oldest waiting caller, if any
                    with self._mutex:
                        if self._queue:
                            nxt = self._queue[0]
                            nxt.lead = True
                            nxt.wake.release()  # type: ignore[union-attr]
                        else:
                            self._leading = False
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
        if not self.db.is_sqlite:
            with self.db.engine.begin() as conn:
                self._write(conn, batch)
            self.transactions += 1
            return
        # SQLite: one connection kept for the writer (used by one leader at a time, under
        # write_lock), saving a pool checkout and return per batch; it goes back to the pool
        # when the writer is collected, and is replaced after any error
        conn = self._conn
        if conn is None:
            conn = self._conn = self.db.engine.connect()
            weakref.finalize(self, conn.close)
        try:
            with conn.begin():
                self._write(conn, batch)
        except BaseException:
            self._conn = None
            conn.close()
            raise
        self.transactions += 1

    def _write(self, conn: Connection, batch: list[_Item]) -> None:
        receipts.apply_updates(conn, [i.update for i in batch], gateway=self.gateway,
                               source="webhook", now=batch[-1].now,
                               event_keys=[i.key for i in batch])


def serve(db: Database, host: str = "127.0.0.1", port: int = 8080, threads: int = 8, *,
          twilio_auth_token: str | None = None, public_base_url: str | None = None,
          **waitress_options: Any) -> None:
    """Serve :func:`create_app` with waitress (blocks). ``threads``: worker threads."""
    import waitress

    app = create_app(db, twilio_auth_token=twilio_auth_token, public_base_url=public_base_url)
    waitress.serve(app, host=host, port=port, threads=threads, ident="outreach",
                   **waitress_options)

"""The one receipt receiver: the Flask (WSGI) routes for every provider's delivery receipts.

Each provider's signature check and parsing live beside its sender
(:mod:`outreach.gateways.twilio_receipts`, :mod:`outreach.gateways.zalo_webhook`); matching and
writing are :mod:`outreach.receipts.writer`'s (one writer, through :mod:`outreach.ledger.states`). This
module verifies, parses, refuses stale and replayed events, and hands the updates over.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import logging
import threading
import weakref
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import Connection, text
from werkzeug import urls  # noqa: F401 (registers the "werkzeug.url_quote" error handler)
from werkzeug.datastructures import ImmutableMultiDict, MultiDict

from outreach.receipts import inbound
from outreach.receipts import writer as receipts
from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.ledger.db import Database, retry_write
from outreach.gateways import twilio_receipts, zalo_webhook
from outreach.gateways.base import StatusUpdate
from outreach.gateways.twilio_receipts import SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER
from outreach.i18n import _, label, number

if TYPE_CHECKING:  # the SDK is the `twilio` extra, needed only for the Twilio routes
    from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)

STATUS_PATH = twilio_receipts.STATUS_PATH
ZALO_PATH = "/webhooks/zalo"
#: Twilio status callbacks are small forms; anything bigger is not one.
MAX_CONTENT_LENGTH = 64 * 1024


class ReceiptStats:
    """Counts of what the receiver did since it started (thread-safe), by outcome: ``applied``,
    ``pending``, ``rejected`` (a receipt naming another message), ``replayed`` (a Twilio
    callback repeating one already received: a no-op), ``zalo_replayed`` (a Zalo event already
    received: refused), ``zalo_stale`` (outside the timestamp window: refused),
    ``bad_signature``, ``inbound`` (citizens' replies and Zalo unfollows received, repeats
    included: :mod:`outreach.receipts.inbound`). The ledger keeps the same facts (:func:`outreach.receipts.writer.receipt_counts`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._counts[name] += n

    def count(self, outcomes: list[receipts.ReceiptOutcome]) -> None:
        with self._lock:
            for o in outcomes:
                if o.rejected is not None:
                    self._counts["rejected"] += 1
                elif o.pending:
                    self._counts["pending"] += 1
                elif o.replayed:
                    self._counts["replayed"] += 1
                else:
                    self._counts["applied"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def _stats() -> ReceiptStats:
    stats = current_app.extensions.get("outreach_receipt_stats")
    if stats is None:
        stats = current_app.extensions["outreach_receipt_stats"] = ReceiptStats()
    return stats  # type: ignore[no-any-return]


def create_app(db: Database, *, twilio_auth_token: str | None = None,
               public_base_url: str | None = None, clock: Clock | None = None,
               reply_gateways: Mapping[str, Any] | None = None,
               inbound_settings: inbound.InboundSettings | None = None) -> Flask:
    """A Flask (WSGI) app receiving delivery receipts.

    Routes:

    - ``POST /webhooks/twilio/status/<delivery_id>/<receipt_token>``: the StatusCallback URL
      :class:`~outreach.gateways.twilio.TwilioGateway` gives Twilio (``/<delivery_id>`` alone
      for deliveries claimed before receipt tokens);
    - ``POST /webhooks/twilio/status``: the same without our id (a Messaging Service's own
      callback URL), matched by ``MessageSid``; unmatched receipts are kept in
      ``pending_receipts`` and replayed by :func:`outreach.receipts.writer.apply_pending`;
    - ``POST /webhooks/zalo``: Zalo's signed events (:func:`zalo_event`): delivery receipts,
      and citizens' messages and unfollows (:mod:`outreach.receipts.inbound`);
    - ``POST /twilio/inbound`` (also ``/webhooks/twilio/inbound``): a citizen's SMS to our
      Twilio number, signed like the status callbacks, answered with empty TwiML
      (:func:`twilio_inbound`);
    - ``GET|POST /webhooks/esms/mo``: eSMS short-code MO callbacks, when
      ``OUTREACH_ESMS_MO_KEY`` is set (:func:`esms_mo`);
    - ``GET /healthz``: 200 ``{"ok": true}`` when the database answers.

    Twilio signatures: ``X-Twilio-Signature`` is checked with the SDK's ``RequestValidator``
    over the URL Twilio called, which is ``public_base_url + path (+ ?query)``: behind a
    reverse proxy ``request.url`` is the proxy's internal URL and would never match, so set
    ``public_base_url`` (``OUTREACH_PUBLIC_BASE_URL``) to the same base the gateway put in the
    callback URL. Without it ``request.url`` is used (direct exposure only). A missing or bad
    signature answers 403 and changes nothing. Without ``twilio_auth_token`` the Twilio routes
    are not registered (404). Source: https://www.twilio.com/docs/usage/security#validating-requests

    Each Twilio receipt is applied with ``receipts.apply_updates`` (``source="webhook"``) in a
    short write transaction committed before the 204 answer: every matched receipt is kept as
    a delivery event and states only move forward, so duplicated and out-of-order callbacks
    are harmless (a repeat is counted as ``replayed``); one naming another message is stored
    as rejected and counted. Concurrent receipts share one transaction (:class:`ReceiptWriter`,
    group commit). With a ``public_base_url``, Twilio's form POSTs to the status routes are
    answered by :class:`StatusCallbacks`, a WSGI layer in front of Flask that calls the same
    :func:`receive` without Flask's per-request machinery; any other request goes through Flask.

    ``app.config["OUTREACH_DB"]`` and ``OUTREACH_CLOCK`` hold ``db`` and the clock for the Zalo
    route; ``app.extensions["outreach_receipt_stats"]`` the :class:`ReceiptStats`.

    Confirmation replies to keywords go back through the channel's gateway:
    ``reply_gateways`` maps a gateway name (``twilio``, ``zalo``) to a built gateway; a name
    not in it is built once from the environment (:func:`outreach.gateways.make_gateway`), and
    when that fails the confirmation stays ``pending``. They are sent by
    ``app.extensions["outreach_confirmations"]`` (:class:`~outreach.receipts.inbound.Confirmations`)
    after the reply is committed, off the request thread. ``inbound_settings``: the keyword
    table (default :func:`~outreach.receipts.inbound.current_settings`).
    """
    app = Flask("outreach.receipts.receiver")
    app.config["OUTREACH_DB"] = db
    app.config["OUTREACH_CLOCK"] = clock or SYSTEM_CLOCK
    app.config["OUTREACH_PUBLIC_BASE_URL"] = (public_base_url.rstrip("/") if public_base_url
                                              else None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    stats = app.extensions["outreach_receipt_stats"] = ReceiptStats()
    writer = app.extensions["outreach_receipts"] = ReceiptWriter(db, stats=stats)
    app.extensions["outreach_receipts_esms"] = ReceiptWriter(db, gateway="esms", stats=stats,
                                                             check_tokens=False)
    # SQLite has one writer: the Zalo route's writes queue behind the receipt batches
    app.extensions["outreach_write_lock"] = writer.write_lock if db.is_sqlite else None

    @app.get("/healthz")
    def healthz() -> Any:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return jsonify(ok=True)

    if twilio_auth_token:
        from outreach import extras

        validator = extras.require("twilio.request_validator").RequestValidator(
            twilio_auth_token)

        @app.post(f"{STATUS_PATH}/<int:delivery_id>/<string:receipt_token>")
        @app.post(f"{STATUS_PATH}/<int:delivery_id>")
        @app.post(STATUS_PATH)
        def twilio_status(delivery_id: int | None = None,
                          receipt_token: str | None = None) -> Response:
            return _twilio_status(validator, delivery_id, receipt_token)

        app.wsgi_app = StatusCallbacks(app, validator, app.wsgi_app)  # type: ignore[method-assign]
    else:
        log.warning(_("TWILIO_AUTH_TOKEN is not set: the Twilio receipt routes are off"))

    app.config["OUTREACH_INBOUND_SETTINGS"] = inbound_settings or inbound.current_settings()
    app.extensions["outreach_confirmations"] = inbound.Confirmations(
        db, _reply_gateway_factory(db, clock, reply_gateways))
    if twilio_auth_token:
        @app.post(TWILIO_INBOUND_PATH)
        @app.post("/webhooks" + TWILIO_INBOUND_PATH)
        def twilio_inbound_route() -> Response:
            return twilio_inbound(validator)

    app.add_url_rule(ESMS_MO_PATH, "esms_mo", esms_mo, methods=["GET", "POST"])
    app.register_blueprint(zalo_blueprint)
    from outreach.gateways.brandname.esms import blueprint as esms_blueprint

    app.register_blueprint(esms_blueprint)  # GET /webhooks/esms/status/<id>/<token>
    return app


TWILIO_INBOUND_PATH = "/twilio/inbound"
#: Twilio's answer to an inbound message when we reply by the API, not by TwiML: nothing.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _reply_gateway_factory(db: Database, clock: Clock | None,
                           given: Mapping[str, Any] | None) -> Any:
    built: dict[str, Any] = dict(given or {})
    lock = threading.Lock()

    def gateway_for(name: str) -> Any:
        with lock:
            if name not in built:
                from outreach.gateways import build_gateways

                import os

                channel = "zalo" if name == "zalo" else "sms"
                # a confirmation belongs to no delivery: no status callback for it
                options = {"twilio": {"environ": {k: v for k, v in os.environ.items()
                                                  if k != "OUTREACH_PUBLIC_BASE_URL"}}}
                try:
                    built[name] = build_gateways({channel: name}, db, clock,
                                                 **options)[channel]
                except Exception as exc:  # noqa: BLE001 - not configured: confirmations wait
                    log.warning(_("cannot send confirmations through {gateway}: {error}").format(
                        gateway=name, error=exc))
                    built[name] = None
            return built[name]
    return gateway_for


def _record_inbound(msg: inbound.Inbound) -> inbound.InboundResult:
    """Record one inbound message in a short write transaction (the process's SQLite write
    lock held), then queue its confirmation; returns the result."""
    db = current_app.config["OUTREACH_DB"]
    settings = current_app.config.get("OUTREACH_INBOUND_SETTINGS") or inbound.current_settings()
    lock = current_app.extensions.get("outreach_write_lock") or contextlib.nullcontext()
    now = current_app.config.get("OUTREACH_CLOCK", SYSTEM_CLOCK).now()

    @retry_write
    def tx() -> inbound.InboundResult:
        with lock, db.engine.begin() as conn:
            return inbound.record_inbound(conn, msg, settings=settings, now=now)
    result = tx()
    _after_inbound(msg, result)
    return result


def _after_inbound(msg: inbound.Inbound, result: inbound.InboundResult) -> None:
    from outreach.input.phones import mask

    who = mask(msg.sender) if msg.sender.startswith("+") else _("user …{end}").format(
        end=msg.sender[-4:])
    kind = label(f"reply|{result.kind}")
    if result.duplicate:
        line = _("reply through {gateway} from {sender}: {kind}, a repeat (nothing done)")
    elif result.keyword:
        line = _("reply through {gateway} from {sender}: {kind} (keyword {keyword})")
    else:
        line = _("reply through {gateway} from {sender}: {kind}")
    log.info(line.format(gateway=msg.gateway, sender=who, kind=kind, keyword=result.keyword))
    confirmations = current_app.extensions.get("outreach_confirmations")
    if result.confirm and not result.duplicate and confirmations is not None:
        confirmations.put(result.id, msg.gateway)


def twilio_inbound(validator: RequestValidator) -> Response:
    """A citizen's SMS to our Twilio number (Twilio's "A message comes in" webhook).

    The ``X-Twilio-Signature`` is checked first, over :func:`public_url` and the form (403,
    nothing stored, on a missing or bad one). ``MessageSid`` (or ``SmsSid``) and ``From`` are
    required (400); ``Body`` and ``To`` are kept. Recorded once per ``MessageSid``
    (:func:`outreach.receipts.inbound.record_inbound`; Twilio retries a webhook that failed),
    committed before the answer: 200 with empty TwiML, so Twilio sends nothing itself (a
    confirmation goes through the API, once). Source:
    https://www.twilio.com/docs/messaging/guides/webhook-request"""
    params = request.form
    if not twilio_receipts.verify_signature(validator, public_url(), params,
                                            request.headers.get(SIGNATURE_HEADER),
                                            request.headers.get(SIGNATURE_SETTINGS_HEADER)):
        log.warning(_("refused a Twilio inbound message without a signature")
                    if not request.headers.get(SIGNATURE_HEADER)
                    else _("refused a Twilio inbound message with a wrong signature"))
        _stats().add("bad_signature")
        return Response("invalid signature", status=403, mimetype="text/plain")
    sid = params.get("MessageSid") or params.get("SmsSid")
    sender = (params.get("From") or "").strip()
    if not sid or not sender:
        return Response("MessageSid and From are required", status=400, mimetype="text/plain")
    from outreach.input import phones

    norm = phones.normalise(sender)
    if norm.ok and norm.e164:
        sender = norm.e164
    now = current_app.config.get("OUTREACH_CLOCK", SYSTEM_CLOCK).now()
    _record_inbound(inbound.Inbound(channel="sms", gateway="twilio", provider_message_id=sid,
                                    sender=sender, text=params.get("Body") or "",
                                    destination=params.get("To"), received_at=now))
    _stats().add("inbound")
    return Response(EMPTY_TWIML, status=200, mimetype="text/xml")


ESMS_MO_PATH = "/webhooks/esms/mo"


def esms_mo() -> Response:
    """eSMS short-code MO callback (a citizen's SMS to the short code of our contract), GET
    query or POST form: ``smsid``, ``cpid``, ``sender`` (the citizen's number), ``keyword``
    (the short code's service keyword), ``content``, ``receiveTime``, ``sign`` =
    :func:`~outreach.receipts.inbound.esms_mo_signature` with ``OUTREACH_ESMS_MO_KEY`` (and
    ``cpid`` equal to ``OUTREACH_ESMS_CPID`` when set). 503 when the key is not set (no MO in
    the contract), 403 on a bad signature, 400 on a missing field or a sender that is not a
    number; else recorded once per ``smsid`` and answered 200 ``1``. Source: eSMS developer
    docs as summarised in domain-facts "Brandname aggregators" ⚠️ (field names and the
    expected answer are to be checked against the contract's own MO specification)."""
    import hmac
    import os

    key = os.environ.get("OUTREACH_ESMS_MO_KEY") or ""
    if not key:
        return Response("not configured", status=503, mimetype="text/plain")
    q = request.values
    smsid, cpid = (q.get("smsid") or "").strip(), (q.get("cpid") or "").strip()
    sender, content = (q.get("sender") or "").strip(), q.get("content") or ""
    received, sign = q.get("receiveTime") or "", (q.get("sign") or "").strip().lower()
    expected = inbound.esms_mo_signature(cpid, smsid, content, received, key)
    want_cpid = os.environ.get("OUTREACH_ESMS_CPID")
    if not hmac.compare_digest(sign.encode("ascii", "replace"), expected.encode()) or (
            want_cpid and cpid != want_cpid):
        log.warning(_("eSMS reply (MO): wrong signature from {address}").format(
            address=request.remote_addr))
        _stats().add("bad_signature")
        return Response("forbidden", status=403, mimetype="text/plain")
    from outreach.input import phones

    norm = phones.normalise(sender)
    if not smsid or not norm.ok or not norm.e164:
        return Response("smsid and a sender number are required", status=400,
                        mimetype="text/plain")
    now = current_app.config.get("OUTREACH_CLOCK", SYSTEM_CLOCK).now()
    _record_inbound(inbound.Inbound(
        channel="sms", gateway="esms", provider_message_id=smsid, sender=norm.e164,
        text=inbound.esms_mo_text(q.get("keyword") or "", content), received_at=now,
        destination=q.get("keyword") or None))
    _stats().add("inbound")
    return Response("1", status=200, mimetype="text/plain")


def public_url() -> str:
    """The URL Twilio called: configured public base + path + query, else ``request.url``."""
    base = current_app.config.get("OUTREACH_PUBLIC_BASE_URL")
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return base + request.path + (f"?{query}" if query else "")


def _twilio_status(validator: RequestValidator, delivery_id: int | None,
                   receipt_token: str | None) -> Response:
    if receipt_token is not None and twilio_receipts.STATUS_ROUTE.fullmatch(
            f"{STATUS_PATH}/{delivery_id}/{receipt_token}") is None:
        return Response("not found", status=404, mimetype="text/plain")
    code, body = receive(validator, current_app.extensions["outreach_receipts"],
                         current_app.config["OUTREACH_CLOCK"], url=public_url(),
                         params=request.form, signature=request.headers.get(SIGNATURE_HEADER),
                         settings=request.headers.get(SIGNATURE_SETTINGS_HEADER),
                         delivery_id=delivery_id, receipt_token=receipt_token)
    if code == 204:
        return Response(status=204)
    return Response(body, status=code, mimetype="text/plain")


def receive(validator: RequestValidator, writer: ReceiptWriter, clock: Clock, *, url: str,
            params: MultiDict[str, str], signature: str | None, settings: str | None,
            delivery_id: int | None, receipt_token: str | None = None) -> tuple[int, str]:
    """One Twilio status callback: (HTTP status, text body). ``url`` is the URL Twilio called,
    ``params`` the form, ``signature`` and ``settings`` the ``X-Twilio-Signature`` and
    ``X-Twilio-Webhooks-Signature-Settings`` headers, ``delivery_id`` and ``receipt_token``
    from the callback path. The signature is checked
    (:func:`~outreach.gateways.twilio_receipts.verify_signature`) before anything else (403,
    nothing written); the form is parsed by
    :func:`~outreach.gateways.twilio_receipts.parse_receipt` (400 when malformed); the 204 is
    only returned once the receipt is committed (:meth:`ReceiptWriter.write`), whether it was
    applied, kept pending, refused as naming another message or a repeat (all counted)."""
    if not twilio_receipts.verify_signature(validator, url, params, signature, settings):
        log.warning(_("refused a Twilio receipt without a signature") if not signature
                    else _("refused a Twilio receipt with a wrong signature"))
        writer.stats.add("bad_signature")
        return 403, "invalid signature"
    now = clock.now()
    try:
        updates = twilio_receipts.parse_receipt(params, delivery_id=delivery_id,
                                                receipt_token=receipt_token, now=now)
    except twilio_receipts.MalformedReceipt as exc:
        return 400, str(exc)
    for update in updates:
        writer.write(update, twilio_receipts.receipt_key(update), now)
    return 204, ""


_STATUS_ROUTE = twilio_receipts.STATUS_ROUTE
_FORM = "application/x-www-form-urlencoded"
_NO_CONTENT: list[bytes] = []


class StatusCallbacks:
    """WSGI middleware in front of Flask for the one request Twilio sends: a form ``POST`` to
    ``/webhooks/twilio/status[/<delivery_id>[/<receipt_token>]]`` with a ``Content-Length``
    within ``MAX_CONTENT_LENGTH``, when ``OUTREACH_PUBLIC_BASE_URL`` is set. It parses the form
    as Flask does (``parse_qsl``, blank values kept, UTF-8, an undecodable body read as an
    empty form), builds the signed URL as :func:`public_url` does (base + path + ?query) and
    calls the same :func:`receive`, without Flask's request context, URL map and response
    objects (about 0.1 ms of CPU per callback, a tenth of the whole). Every other request, and
    any callback of another shape (chunked, multipart, other paths, no public base URL), goes
    to the Flask application unchanged, which routes, answers 404/405/413 and handles it.
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
                                 delivery_id=delivery_id, receipt_token=match.group(2))
        except Exception:
            propagate = config.get("PROPAGATE_EXCEPTIONS")  # as Flask decides
            if propagate or (propagate is None and (self.app.testing or self.app.debug)):
                raise
            log.exception(_("a Twilio receipt to {path} failed").format(path=path))
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


# -- Zalo ----------------------------------------------------------------------------------------

#: The Zalo route, registered by :func:`create_app`; usable on any Flask app whose config has
#: ``OUTREACH_DB`` (and optionally ``OUTREACH_CLOCK``, ``ZALO_APP_ID``, ``ZALO_WEBHOOK_SECRET``,
#: ``ZALO_WEBHOOK_MAX_SKEW_SECONDS``; else the environment, see
#: :func:`~outreach.gateways.zalo_webhook.webhook_settings`).
zalo_blueprint = Blueprint("zalo_webhook", __name__)


def apply_zalo_event(conn: Connection, event: Mapping[str, Any], *, now: dt.datetime
                     ) -> dict[str, int]:
    """Apply one verified Zalo event in the caller's transaction; returns counts
    ``{"applied", "duplicate", "pending", "ignored", "rejected"}``.

    Parsed by :func:`~outreach.gateways.zalo_webhook.parse_event`, written by
    :func:`outreach.receipts.writer.apply_updates` with Zalo's rules: idempotent on ``msg_id`` + event
    name (an event already recorded for the delivery adds nothing: Zalo retries at 30 s, 5 min,
    15 min, 30 min, 1 h); ``tracking_id`` only a hint (trusted when it names one of our Zalo
    deliveries whose msg_id is the event's or not yet known; another system may share the OA);
    ``delivered_at`` is Zalo's ``delivery_time`` (retries arrive up to ~2 h late). An event
    whose delivery cannot be found yet is kept in ``pending_receipts`` (one row per key) and
    replayed by :func:`outreach.receipts.writer.apply_pending`.
    """
    counts = {"applied": 0, "duplicate": 0, "pending": 0, "ignored": 0, "rejected": 0}
    updates, keys = zalo_webhook.parse_event(event)
    if not updates:
        counts["ignored"] += 1
        return counts
    # one update at a time: a msg_ids list may name one delivery twice
    for upd, key in zip(updates, keys):
        [out] = receipts.apply_updates(conn, [upd], gateway="zalo", source="webhook", now=now,
                                       event_keys=[key], dedupe=True, id_is_hint=True,
                                       provider_time=True)
        if out.rejected is not None:
            counts["rejected"] += 1
        elif out.pending:
            counts["duplicate" if out.duplicate else "pending"] += 1
        else:
            counts["duplicate" if out.duplicate else "applied"] += 1
            receipts.mark_pending_done(conn, gateway="zalo", key=key, now=now)
    return counts


@zalo_blueprint.post(ZALO_PATH)
def zalo_event() -> Response | tuple[str, int]:
    """Receive one Zalo event: 403 on a bad signature or a ``timestamp`` outside the window
    (nothing changes), 400 on an unreadable body, 503 when not configured (or the window
    setting is unreadable), 200 otherwise, including a replayed event (the same signed body
    again, refused: nothing is applied; Zalo stops retrying on a 200). Zalo wants 200 within
    2 s: one short transaction, no network call."""
    raw = request.get_data(cache=False)
    app_id, secret = zalo_webhook.webhook_settings(current_app.config)
    if not app_id or not secret:
        log.error(_("Zalo webhook: ZALO_APP_ID or the webhook secret is not set"))
        return "not configured", 503
    try:
        skew = zalo_webhook.max_skew(current_app.config)
    except ValueError as exc:
        log.error(_("Zalo webhook: {error}").format(error=exc))
        return "not configured", 503
    try:
        event = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "unreadable body", 400
    if not isinstance(event, dict):
        return "unreadable body", 400
    stats = _stats()
    timestamp = str(event.get("timestamp") or "")
    if not zalo_webhook.verify_signature(request.headers.get(zalo_webhook.SIGNATURE_HEADER),
                                         str(app_id), raw, timestamp, str(secret)):
        log.warning(_("Zalo webhook: wrong signature from {address}").format(
            address=request.remote_addr))
        stats.add("bad_signature")
        return "forbidden", 403
    clock = current_app.config.get("OUTREACH_CLOCK", SYSTEM_CLOCK)
    now = clock.now()
    if not zalo_webhook.timestamp_ok(timestamp, now, skew):
        log.warning(_("Zalo webhook: refused an event whose timestamp {timestamp!r} is more than "
                      "{seconds} s from now").format(timestamp=timestamp,
                                                     seconds=number(skew.total_seconds())))
        stats.add("zalo_stale")
        return "stale timestamp", 403
    name = str(event.get("event_name") or "")
    if name in zalo_webhook.LOGGED_EVENTS:
        uid = str((event.get("follower") or event.get("sender") or {}).get("id") or "")
        log.info(_("Zalo webhook: {event} by follower …{end}").format(event=name, end=uid[-4:]))
    settings = current_app.config.get("OUTREACH_INBOUND_SETTINGS") or inbound.current_settings()
    citizen = zalo_webhook.parse_inbound(event, optout_events=settings.zalo_optout_events)
    if citizen is not None and citizen["event"] != "follow":
        return _zalo_inbound(raw, citizen, now, skew, settings, stats)
    if name not in zalo_webhook.DELIVERY_EVENTS:
        return "ok", 200
    db = current_app.config["OUTREACH_DB"]
    # outreach.receipts.receiver.create_app serialises this process's SQLite writes with one lock
    lock = current_app.extensions.get("outreach_write_lock") or contextlib.nullcontext()
    with lock, db.engine.begin() as conn:
        if not receipts.first_sight(conn, gateway="zalo", event_id=zalo_webhook.event_id(raw),
                                    now=now, keep=2 * skew + dt.timedelta(minutes=1)):
            counts = None
        else:
            counts = apply_zalo_event(conn, event, now=now)
    if counts is None:
        log.info(_("Zalo webhook {event}: a replayed event, refused").format(event=name))
        stats.add("zalo_replayed")
        return "ok", 200
    stats.add("applied", counts["applied"])
    stats.add("pending", counts["pending"])
    stats.add("rejected", counts["rejected"])
    log.info(_("Zalo webhook {event}: {applied} applied, {pending} kept pending, {rejected} "
               "refused").format(event=name, applied=number(counts["applied"]),
                                 pending=number(counts["pending"]),
                                 rejected=number(counts["rejected"])))
    return "ok", 200


def _zalo_inbound(raw: bytes, citizen: Mapping[str, Any], now: dt.datetime, skew: dt.timedelta,
                  settings: inbound.InboundSettings, stats: ReceiptStats
                  ) -> tuple[str, int]:
    """A citizen's Zalo text or unfollow (:func:`zalo_webhook.parse_inbound`): refused when
    the same signed body was seen before (replay), else recorded once by its key, in one short
    transaction; the confirmation of a keyword is queued after the commit."""
    db = current_app.config["OUTREACH_DB"]
    lock = current_app.extensions.get("outreach_write_lock") or contextlib.nullcontext()
    msg = inbound.Inbound(channel="zalo", gateway="zalo", provider_message_id=citizen["key"],
                          sender=citizen["user_id"], text=citizen["text"],
                          event=citizen["event"], destination=citizen["oa_id"],
                          received_at=now)
    with lock, db.engine.begin() as conn:
        if not receipts.first_sight(conn, gateway="zalo", event_id=zalo_webhook.event_id(raw),
                                    now=now, keep=2 * skew + dt.timedelta(minutes=1)):
            result = None
        else:
            result = inbound.record_inbound(conn, msg, settings=settings, now=now)
    if result is None:
        stats.add("zalo_replayed")
        return "ok", 200
    stats.add("inbound")
    _after_inbound(msg, result)
    return "ok", 200


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

    def __init__(self, db: Database, *, gateway: str = "twilio", max_batch: int = 256,
                 stats: ReceiptStats | None = None, check_tokens: bool = True) -> None:
        self.db = db
        # Twilio callbacks carry the delivery's receipt token; a provider whose callback URL
        # is authenticated otherwise (eSMS: an HMAC verified by its route) does not
        self.check_tokens = check_tokens
        self.stats = stats or ReceiptStats()
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
                outcomes = self._write(conn, batch)
            self.transactions += 1
            self.stats.count(outcomes)  # counted once committed
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
                outcomes = self._write(conn, batch)
        except BaseException:
            self._conn = None
            conn.close()
            raise
        self.transactions += 1
        self.stats.count(outcomes)

    def _write(self, conn: Connection, batch: list[_Item]) -> list[receipts.ReceiptOutcome]:
        outcomes = receipts.apply_updates(conn, [i.update for i in batch], gateway=self.gateway,
                                          source="webhook", now=batch[-1].now,
                                          event_keys=[i.key for i in batch],
                                          check_tokens=self.check_tokens)
        for item, out in zip(batch, outcomes):
            if out.rejected is not None:
                log.warning(_("refused a {gateway} receipt for delivery {delivery} ({reason}): "
                              "kept in rejected_receipts, not applied").format(
                                  gateway=self.gateway, delivery=item.update.delivery_id,
                                  reason=out.rejected))
        return outcomes


#: Largest request body accepted, bytes. A Twilio status callback is about 1 KB and a Zalo
#: event a few KB; waitress answers 413 and closes the connection as soon as a Content-Length
#: above this arrives (before reading the body), or once a chunked body passes it.
MAX_BODY_BYTES = 256 * 1024
#: Largest request line + headers, bytes (waitress answers 431 past it).
MAX_HEADER_BYTES = 16 * 1024
#: A connection idle this many seconds (a slow sender sending nothing) is closed.
CHANNEL_TIMEOUT_SECONDS = 30


def server_limits(max_body_bytes: int = MAX_BODY_BYTES, max_header_bytes: int = MAX_HEADER_BYTES,
                  channel_timeout: int = CHANNEL_TIMEOUT_SECONDS) -> dict[str, int]:
    """waitress adjustments for the limits above (``max_request_body_size``,
    ``max_request_header_size``, ``channel_timeout``, and ``cleanup_interval``, how often idle
    connections are looked for: half the timeout, 1 to 30 s). Raises ValueError on a limit < 1."""
    for name, value in (("max_body_bytes", max_body_bytes), ("max_header_bytes", max_header_bytes),
                        ("channel_timeout", channel_timeout)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    return {"max_request_body_size": int(max_body_bytes),
            "max_request_header_size": int(max_header_bytes),
            "channel_timeout": int(channel_timeout),
            "cleanup_interval": max(1, min(30, int(channel_timeout) // 2))}


def serve(db: Database, host: str = "127.0.0.1", port: int = 8080, threads: int = 8, *,
          twilio_auth_token: str | None = None, public_base_url: str | None = None,
          max_body_bytes: int = MAX_BODY_BYTES, max_header_bytes: int = MAX_HEADER_BYTES,
          channel_timeout: int = CHANNEL_TIMEOUT_SECONDS, **waitress_options: Any) -> None:
    """Serve :func:`create_app` with waitress (blocks). ``threads``: worker threads.

    Limits (:func:`server_limits`): bodies over ``max_body_bytes`` refused with 413 before they
    are read (chunked ones once they pass it), headers over ``max_header_bytes`` with 431,
    connections idle ``channel_timeout`` seconds closed. ``waitress_options`` override any
    waitress adjustment."""
    import waitress

    app = create_app(db, twilio_auth_token=twilio_auth_token, public_base_url=public_base_url)
    options = {**server_limits(max_body_bytes, max_header_bytes, channel_timeout),
               **waitress_options}
    waitress.serve(app, host=host, port=port, threads=threads, ident="outreach", **options)

"""eSMS.vn (ViHAT) customer-care brandname SMS: request shapes, answers, callback; codes in
``esms_codes.json`` (with the fields relied on and their sources).

Gateway names: ``esms`` (real sends) and ``esms-sandbox`` (``Sandbox=1``: eSMS validates the
request — credentials, brandname, template — and neither stores, bills nor delivers it; a run
through it is a trial in every report, like the outbox). Environment: ``OUTREACH_ESMS_API_KEY``,
``OUTREACH_ESMS_SECRET_KEY``, ``OUTREACH_ESMS_API_URL`` (default ``https://rest.esms.vn``),
``OUTREACH_ESMS_CALLBACK_SECRET`` with ``OUTREACH_PUBLIC_BASE_URL`` (receipts by callback;
without them poll with ``outreach deliveries sync``), ``OUTREACH_ESMS_REQUEST_SALT``; the
campaign channel's ``sender`` is the brandname (``OUTREACH_ESMS_BRANDNAME`` otherwise).
Idempotency and where a maybe-sent request is retried: :mod:`outreach.gateways.brandname.base`.
eSMS answers a repeated ``RequestId`` with 124 and ``SendStatus`` but no ``SMSID`` (send
docs, tab 124), so such a message is recorded as ``rid:<RequestId>`` and its receipt is matched
by the delivery id in the callback URL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar

from flask import Blueprint, Response, current_app, request

from outreach.gateways.base import OutboundMessage, StatusUpdate
from outreach.gateways.brandname.base import (Answer, BrandnameGateway, HttpRequest, load_table,
                                              verify_token)

SEND_PATH = "/MainService.svc/json/SendMultipleMessage_V4_post_json/"
STATUS_PATH = "/MainService.svc/json/GetSendStatus"
BALANCE_PATH = "/MainService.svc/json/GetBalance_json"
#: SmsType 2: customer care (the class a public body's notices are registered in)
SMS_TYPE_CUSTOMER_CARE = "2"
TABLE = ("outreach.gateways.brandname", "esms_codes.json")


def table() -> dict[str, Any]:
    """The parsed ``esms_codes.json``."""
    return load_table(*TABLE)


def national(e164: str) -> str:
    """``+84912345678`` -> ``0912345678`` (the form eSMS's examples use)."""
    return "0" + e164[3:] if e164.startswith("+84") else e164


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def status_of(send_status: Any, success: Any, failed: Any) -> tuple[str, str | None]:
    """(our status, error reason) for eSMS ``SendStatus``/``SendSuccess``/``SendFailed`` of a
    one-recipient request: 4 rejected -> failed; 5 with a success -> delivered, with a failure
    -> undelivered, else sent; 0/1/2/7 and unknown values -> sent (no final claim). Source: the
    callback and GetSendStatus docs (``esms_codes.json`` ``send_status``)."""
    s = str(send_status if send_status is not None else "").strip()
    if s == "4":
        return "failed", "rejected-by-esms"
    if s == "5":
        if _int(success) > 0:
            return "delivered", None
        if _int(failed) > 0:
            return "undelivered", "carrier-failed"
    return "sent", None


def _price(value: Any) -> float | None:
    try:
        return round(float(value), 2) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class ESMSGateway(BrandnameGateway):
    """Customer-care brandname SMS through eSMS.vn's ``SendMultipleMessage_V4_post_json``.

    Class facts: eSMS publishes no send rate limit; 30 messages/s and 32 requests in flight are
    our defaults (a campaign's channel may raise them). Options: see
    :class:`~outreach.gateways.brandname.base.BrandnameGateway`, prefix ``OUTREACH_ESMS_``.
    """

    name: ClassVar[str] = "esms"
    provider: ClassVar[str] = "eSMS"
    env_prefix: ClassVar[str] = "OUTREACH_ESMS_"
    default_api_url: ClassVar[str] = "https://rest.esms.vn"
    table_file: ClassVar[tuple[str, str]] = TABLE
    rate_per_second: ClassVar[float] = 30.0
    concurrency: ClassVar[int] = 32
    sandbox: ClassVar[bool] = False

    def send_request(self, message: OutboundMessage, *, request_id: str, brandname: str,
                     callback_url: str | None) -> HttpRequest:
        body = message.body
        unicode = "0" if body.isascii() else "1"
        payload: dict[str, Any] = {
            "ApiKey": self._api_key, "SecretKey": self._secret_key,
            "Phone": national(message.to), "Content": body, "Brandname": brandname,
            "SmsType": SMS_TYPE_CUSTOMER_CARE, "IsUnicode": unicode,
            "Sandbox": "1" if self.sandbox else "0", "RequestId": request_id,
            "campaignid": message.campaign_id[:64]}
        if callback_url:
            payload["CallbackUrl"] = callback_url
        return HttpRequest("POST", SEND_PATH, json=payload)

    def read_send_answer(self, data: Any) -> Answer:
        code = str(data.get("CodeResult", data.get("CodeResponse", ""))).strip()
        sid = data.get("SMSID") or None
        status = data.get("SendStatus")
        return Answer(code=code, message_id=str(sid) if sid else None,
                      send_status=str(status) if status not in (None, "") else None,
                      detail=str(data.get("ErrorMessage") or "")[:200], raw=data)

    def status_request(self, message_id: str) -> HttpRequest:
        return HttpRequest("GET", STATUS_PATH, params={
            "RefId": message_id, "ApiKey": self._api_key, "SecretKey": self._secret_key})

    def read_status_answer(self, message_id: str, data: Any) -> StatusUpdate | None:
        code = str(data.get("CodeResponse", data.get("CodeResult", ""))).strip()
        if code != "100":
            name, _ = self.classify(code)
            if name in ("AuthenticationError", "StopRunError"):
                raise self._error(code, None, "")
            return None
        status, reason = status_of(data.get("SendStatus"), data.get("SendSuccess"),
                                   data.get("SendFailed"))
        return StatusUpdate(status=status, provider_message_id=message_id,
                            provider_status=str(data.get("SendStatus")), error_reason=reason,
                            price_vnd=_price(data.get("TotalPrice")),
                            raw={k: data.get(k) for k in ("SMSID", "SendStatus", "SendSuccess",
                                                          "SendFailed", "TotalPrice")})

    def check_request(self) -> HttpRequest:
        return HttpRequest("POST", BALANCE_PATH, json={"ApiKey": self._api_key,
                                                       "SecretKey": self._secret_key})

    def read_check_answer(self, data: Any) -> dict[str, Any]:
        code = str(data.get("CodeResponse", data.get("CodeResult", ""))).strip()
        if code != "100":
            raise self._error(code, None, str(data.get("ErrorMessage") or ""))
        return {"balance_vnd": data.get("Balance"), "user_id": data.get("UserID")}


class ESMSSandboxGateway(ESMSGateway):
    """eSMS with ``Sandbox=1``: requests are validated, never stored, billed or delivered
    (eSMS sandbox docs). Reaches no phone, so a run through it is a trial in every report and
    the send window is reported, not enforced; it bills 0 VND."""

    name: ClassVar[str] = "esms-sandbox"
    reaches_phones: ClassVar[bool] = False
    sandbox: ClassVar[bool] = True


# ---------------------------------------------------------------------------------------------
# The callback (HTTP GET from eSMS)


def callback_updates(delivery_id: int, query: Mapping[str, str]) -> list[StatusUpdate]:
    """The receipt of one eSMS callback (already verified) as StatusUpdates for
    ``outreach.receipts.writer.apply_updates``: our status from ``SendStatus``/``SendSuccess``/
    ``SendFailed`` (:func:`status_of`), the carrier from ``telcoid`` (``esms_codes.json``
    ``telco``), the price (``TotalPrice``, VND); the phone number is masked in ``raw``.
    Empty when the query has no ``SMSID`` (not a receipt)."""
    from outreach.input.phones import mask

    sid = (query.get("SMSID") or "").strip()
    if not sid:
        return []
    status, reason = status_of(query.get("SendStatus"), query.get("SendSuccess"),
                               query.get("SendFailed"))
    telco = table()["telco"].get(str(query.get("telcoid") or "").strip())
    raw = {k: query.get(k) for k in ("SMSID", "SendStatus", "SendSuccess", "SendFailed",
                                     "TotalPrice", "RequestId", "TypeId", "telcoid")}
    phone = query.get("phonenumber")
    if phone:
        raw["phonenumber"] = mask("+84" + phone[1:] if phone.startswith("0") else phone)
    return [StatusUpdate(status=status, provider_message_id=sid, delivery_id=int(delivery_id),
                         provider_status=str(query.get("SendStatus") or ""), error_reason=reason,
                         carrier=telco, price_vnd=_price(query.get("TotalPrice")),
                         occurred_at=dt.datetime.now(dt.timezone.utc), raw=raw)]


def event_key(query: Mapping[str, str]) -> str:
    """A key per distinct receipt, so a repeated callback stored as pending is stored once."""
    return "esms:" + ":".join(str(query.get(k) or "") for k in
                              ("SMSID", "SendStatus", "SendSuccess", "SendFailed"))


blueprint = Blueprint("esms_webhook", __name__)


@blueprint.get("/webhooks/esms/status/<int:delivery_id>/<token>")
def esms_status(delivery_id: int, token: str) -> Response:
    """eSMS's GET callback: 403 unless the token is this delivery's (HMAC of the callback
    secret, ``OUTREACH_ESMS_CALLBACK_SECRET``), 400 without ``SMSID``, else the receipt is
    applied (group commit, forward only: repeated and shuffled callbacks change nothing) and
    the answer is 200 ``ok`` once it is committed."""
    import os

    secret = (current_app.config.get("OUTREACH_ESMS_CALLBACK_SECRET")
              or os.environ.get("OUTREACH_ESMS_CALLBACK_SECRET"))
    if not verify_token(secret, ESMSGateway.name, delivery_id, token):
        return Response("forbidden", status=403, mimetype="text/plain")
    updates = callback_updates(delivery_id, request.args)
    if not updates:
        return Response("no SMSID", status=400, mimetype="text/plain")
    writer = current_app.extensions["outreach_receipts_esms"]
    now = current_app.config["OUTREACH_CLOCK"].now()
    writer.write(updates[0], event_key(request.args), now)
    return Response("ok", status=200, mimetype="text/plain")


__all__ = ["ESMSGateway", "ESMSSandboxGateway", "blueprint", "callback_updates", "national",
           "status_of", "table"]

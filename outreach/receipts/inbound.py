"""Citizens' replies on every channel (issue #20): one idempotent :func:`record_inbound` that
every channel's receiver calls, the keyword table, opt-outs by channel, the inbox and the
confirmation reply sent once.

Channels and who calls :func:`record_inbound`:

- Twilio inbound SMS: ``POST /twilio/inbound`` of :mod:`outreach.receipts.receiver` (signed,
  answered with empty TwiML), keyed by ``MessageSid``;
- SMPP mobile-originated ``deliver_sm``: stored raw in ``smpp_inbound`` by
  :mod:`outreach.gateways.smpp`, then recorded here by :func:`ingest_smpp` (called in the same
  transaction through the gateway's inbound hook, and again by ``outreach smpp listen`` and
  ``outreach inbox list`` for anything stored without it), keyed by ``<account>#<row id>``;
- eSMS short-code MO callbacks: ``/webhooks/esms/mo`` (:func:`esms_mo_signature`), keyed by
  ``smsid``;
- Zalo Official Account events ``user_send_text`` (keyed by ``message.msg_id``), ``unfollow``
  and the configured opt-out events (keyed by event name, user and signed timestamp): the
  Zalo route of :mod:`outreach.receipts.receiver`.

Keyword matching (:func:`normalise_keyword`): NFC → diacritics removed (NFD, marks of
category Mn dropped, đ→d; :func:`outreach.input.text.unaccent`) → case folded → everything but
letters and digits dropped; the whole reply must equal a keyword so normalised ("T.C",
"tu  choi", "Từ chối", "HUỶ" all match; "không nhận được tin" does not). The table
(:class:`InboundSettings`) has Vietnamese defaults and can be replaced from a TOML file
(``OUTREACH_INBOUND_FILE``, :func:`load_settings`).

An opt-out adds the sender to the suppression list (:mod:`outreach.ledger.suppression`) with
the reply as evidence: an SMS (or Zalo) keyword stops every channel by default, a Zalo
unfollow only Zalo (``[scope]`` in the file). Because the engine checks the list at every
claim (:data:`outreach.ledger.models.SUPPRESSED_SQL`), queued deliveries of a running campaign
to that person become ``opted_out`` and are never sent. Peers: Twilio Advanced Opt-Out and
RapidPro turn STOP/START into a stopped/active contact (reference/peers.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import os
import queue
import threading
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, func, select, true, update
from sqlalchemy.dialects import postgresql, sqlite

from outreach.i18n import N_, _, label
from outreach.input import text as textmod
from outreach.ledger import suppression
from outreach.ledger.db import Database, retry_write
from outreach.ledger.models import Delivery, InboundMessage, Recipient, SmppInbound, Suppression
from outreach.gateways import base as gw

log = logging.getLogger(__name__)

OPTOUT, OPTIN, UNFOLLOW, MESSAGE = "optout", "optin", "unfollow", "message"
KINDS = (OPTOUT, OPTIN, UNFOLLOW, MESSAGE)
#: Suppression ``source`` of entries made by a citizen's own reply (``reply:<gateway>``);
#: only these are lifted by an opt-in keyword.
REPLY_SOURCE_PREFIX = "reply:"

#: Default opt-out keywords: Vietnamese as typed on a keypad (with or without accents) and
#: the English ones carriers and Twilio honour. "TC"/"TU CHOI" (từ chối), "HUY" (huỷ),
#: "DUNG" (dừng), "KHONG NHAN" (không nhận), "HUY DK"; Decree 91/2020's do-not-call service
#: uses "DK" and "HUY" (domain-facts "Documents and rules").
DEFAULT_OPTOUT = ("TC", "TU CHOI", "HUY", "HUY DK", "HUY DANG KY", "DUNG", "DUNG LAI",
                  "KHONG NHAN", "KHONG", "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END",
                  "QUIT")
#: Default opt-in keywords: "DK" (đăng ký), "DANG KY", "START", "YES", "UNSTOP".
DEFAULT_OPTIN = ("DK", "DANG KY", "NHAN", "START", "UNSTOP", "YES")
DEFAULT_CONFIRM_OPTOUT = ("Đã ghi nhận: số của bạn sẽ không nhận tin nhắn thông báo này nữa. "
                          "Nhắn DK để nhận lại.")
DEFAULT_CONFIRM_OPTIN = "Đã ghi nhận: bạn sẽ nhận lại tin nhắn thông báo."
#: Zalo events that withdraw a follower: ``unfollow`` is Zalo OA's documented event. Other
#: block/opt-out events can be added in the file's ``[zalo] optout_events`` ⚠️ (their names
#: could not be confirmed from the documentation available when this was written).
DEFAULT_ZALO_OPTOUT_EVENTS = ("unfollow",)
#: Gateways a confirmation can go back through: the one the reply came in on. An eSMS
#: short-code MO is not confirmed (a brandname message must match a registered template;
#: the short code's own answer is the contract's).
CONFIRMING_GATEWAYS = frozenset({"twilio", "smpp", "zalo"})
#: An SMPP ``deliver_sm`` repeated by the SMSC (its response was lost) within this window, same
#: source, destination and text: the same message.
SMPP_REPEAT_WINDOW = dt.timedelta(minutes=10)


def normalise_keyword(text: str) -> str:
    """A reply reduced for keyword matching: NFC, diacritics removed (đ→d), case folded,
    everything but letters and digits dropped. ``"Từ chối"`` → ``"tuchoi"``, ``"T.C"`` →
    ``"tc"``, ``"HUỶ"`` → ``"huy"``. Source: the issue's rule (#20)."""
    plain = textmod.unaccent(unicodedata.normalize("NFC", text or "")).casefold()
    return "".join(ch for ch in plain if ch.isalnum())


class InboundConfigError(ValueError):
    """The inbound settings file is unreadable; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class InboundSettings:
    """The keyword table and what replies do.

    ``optout``/``optin``: keywords (any spelling; matched by :func:`normalise_keyword`).
    ``confirm_optout``/``confirm_optin``: the confirmation reply's text ("" sends none).
    ``sms_keyword_scope``/``zalo_keyword_scope``/``zalo_unfollow_scope``: ``"all"`` (every
    channel) or a channel name (``"sms"``, ``"zalo"``): which channels an opt-out stops.
    ``zalo_optout_events``: Zalo event names treated as an unfollow."""

    optout: tuple[str, ...] = DEFAULT_OPTOUT
    optin: tuple[str, ...] = DEFAULT_OPTIN
    confirm_optout: str = DEFAULT_CONFIRM_OPTOUT
    confirm_optin: str = DEFAULT_CONFIRM_OPTIN
    sms_keyword_scope: str = "all"
    zalo_keyword_scope: str = "all"
    zalo_unfollow_scope: str = "zalo"
    zalo_optout_events: tuple[str, ...] = DEFAULT_ZALO_OPTOUT_EVENTS

    def __post_init__(self) -> None:
        table: dict[str, tuple[str, str]] = {}
        for kind, words in ((OPTOUT, self.optout), (OPTIN, self.optin)):
            for w in words:
                key = normalise_keyword(w)
                if not key:
                    raise InboundConfigError(_("keyword {word!r} ({kind}) has no letter or "
                                                           "digit").format(word=w, kind=kind))
                other = table.get(key)
                if other is not None and other[0] != kind:
                    raise InboundConfigError(_("keyword {word!r} is both {first} and "
                                                           "{second}").format(
                                                               word=w, first=other[0], second=kind))
                table[key] = (kind, w)
        object.__setattr__(self, "_table", table)

    def match(self, text: str | None) -> tuple[str, str] | None:
        """``(kind, keyword)`` when the whole reply is a keyword (``optout``/``optin``), else None."""
        return self._table.get(normalise_keyword(text or ""))  # type: ignore[attr-defined,no-any-return]

    def scope(self, channel: str, kind: str) -> str | None:
        """The suppression channel of an opt-out on ``channel``: None (every channel) or one."""
        value = (self.zalo_unfollow_scope if kind == UNFOLLOW else
                 self.zalo_keyword_scope if channel == "zalo" else self.sms_keyword_scope)
        return None if value == "all" else value

    def confirmation(self, kind: str) -> str | None:
        text = self.confirm_optout if kind == OPTOUT else self.confirm_optin if kind == OPTIN else ""
        return textmod.nfc(text) if text else None


def _os_error(exc: OSError) -> str:
    """The system's reason (``strerror``, English) in English; in Vietnamese for the usual
    ones (no such file, permission denied, a folder)."""
    import errno

    from outreach import i18n

    words = {errno.ENOENT: N_("no such file"), errno.EACCES: N_("permission denied"),
             errno.EISDIR: N_("it is a folder")}
    if i18n.current() == "en" or exc.errno not in words:
        return str(exc.strerror or exc)
    return _(words[exc.errno])


def _toml_error(exc: Exception) -> str:
    """The parser's message (English) in English; in Vietnamese only where it stopped (the
    parser's own words cannot be translated): ``dòng 3, cột 7``."""
    import re

    from outreach import i18n

    m = re.search(r"line (\d+), column (\d+)", str(exc))
    if i18n.current() == "en" or m is None:
        return str(exc)
    return _("line {line}, column {column}").format(line=m[1], column=m[2])


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None
                  ) -> InboundSettings:
    """The settings: ``path`` or ``$OUTREACH_INBOUND_FILE`` (TOML), else the defaults.

    File shape (every table and key optional)::

        [keywords]
        optout = ["TC", "TU CHOI", "HUY", "STOP"]
        optin = ["DK", "START"]
        [confirm]
        optout = "Đã ghi nhận ..."      # "" sends no confirmation
        optin = "..."
        [scope]
        sms_keyword = "all"            # or "sms"
        zalo_keyword = "all"           # or "zalo"
        zalo_unfollow = "zalo"         # or "all": an unfollow also stops SMS
        [zalo]
        optout_events = ["unfollow"]

    Raises :class:`InboundConfigError` naming the file and field."""
    env = os.environ if environ is None else environ
    path = path or env.get("OUTREACH_INBOUND_FILE") or None
    if not path:
        return InboundSettings()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InboundConfigError(_("{file}: cannot read the inbound settings ({error})").format(
            file=p, error=_os_error(exc))) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InboundConfigError(_("{file}: not valid TOML ({error})").format(
            file=p, error=_toml_error(exc))) from None
    kw: dict[str, Any] = {}

    def words(table: str, key: str, field: str) -> None:
        value = (data.get(table) or {}).get(key)
        if value is None:
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InboundConfigError(_("{file}: {field} must be a list of strings").format(
                file=p, field=f"{table}.{key}"))
        kw[field] = tuple(textmod.nfc(v) for v in value)

    def one(table: str, key: str, field: str, allowed: Iterable[str] | None = None) -> None:
        value = (data.get(table) or {}).get(key)
        if value is None:
            return
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            msg = (_("{file}: {field} must be one of {choices}, got {value!r}")
                   if allowed is not None else _("{file}: {field} must be a string, got {value!r}"))
            raise InboundConfigError(msg.format(file=p, field=f"{table}.{key}", value=value,
                                                choices=", ".join(allowed or ())))
        kw[field] = textmod.nfc(value)

    for t in ("keywords", "confirm", "scope", "zalo"):
        if t in data and not isinstance(data[t], dict):
            raise InboundConfigError(_("{file}: {table} must be a table").format(file=p, table=t))
    words("keywords", "optout", "optout")
    words("keywords", "optin", "optin")
    one("confirm", "optout", "confirm_optout")
    one("confirm", "optin", "confirm_optin")
    one("scope", "sms_keyword", "sms_keyword_scope", ("all", "sms"))
    one("scope", "zalo_keyword", "zalo_keyword_scope", ("all", "zalo"))
    one("scope", "zalo_unfollow", "zalo_unfollow_scope", ("all", "zalo"))
    words("zalo", "optout_events", "zalo_optout_events")
    try:
        return InboundSettings(**kw)
    except InboundConfigError as exc:
        raise InboundConfigError(_("{file}: keywords: {error}").format(file=p, error=exc)) from None


@dataclasses.dataclass(frozen=True)
class Inbound:
    """One inbound message as a channel's receiver parsed it.

    ``channel``: ``sms`` or ``zalo``; ``gateway``: ``twilio``, ``smpp``, ``esms``, ``zalo``;
    ``provider_message_id``: the provider's id of the message (the idempotency key, ≤ 160
    characters); ``sender``: E.164 number (SMS) or Zalo user id (digits); ``text``: the reply
    (made NFC here); ``event``: a Zalo event name for events that are not text
    (``unfollow``); ``received_at``: aware datetime."""

    channel: str
    gateway: str
    provider_message_id: str
    sender: str
    text: str | None
    received_at: dt.datetime
    destination: str | None = None
    event: str | None = None


@dataclasses.dataclass
class InboundResult:
    """What :func:`record_inbound` did: ``id`` of the stored row; ``duplicate`` when the
    message was already stored (nothing else was done); ``kind``, ``keyword``;
    ``suppressed``: addresses added to (or widened on) the suppression list; ``lifted``:
    addresses removed by an opt-in; ``confirm``: the row has a confirmation waiting to be
    sent (:func:`send_confirmation`)."""

    id: int
    duplicate: bool
    kind: str
    keyword: str | None = None
    suppressed: list[str] = dataclasses.field(default_factory=list)
    lifted: list[str] = dataclasses.field(default_factory=list)
    confirm: bool = False


def _numbers_of_zalo_user(conn: Connection, uid: str) -> list[tuple[int, str]]:
    return [(r.id, r.e164) for r in conn.execute(
        select(Recipient.id, Recipient.e164).where(Recipient.zalo_user_id == uid)
        .order_by(Recipient.id))]


def latest_delivery(conn: Connection, addresses: Iterable[str]) -> tuple[str, int] | None:
    """``(campaign_id, delivery_id)`` of the latest delivery to any of ``addresses`` (by the
    time its request left, else its queueing): the campaign a reply most likely answers."""
    addrs = [a for a in addresses if a]
    if not addrs:
        return None
    row = conn.execute(
        select(Delivery.campaign_id, Delivery.id).where(Delivery.address.in_(addrs))
        .order_by(func.coalesce(Delivery.sending_at, Delivery.queued_at).desc(),
                  Delivery.id.desc()).limit(1)).first()
    return (row[0], row[1]) if row else None


def record_inbound(conn: Connection, msg: Inbound, *, settings: InboundSettings | None = None,
                   now: dt.datetime | None = None) -> InboundResult:
    """Store one inbound message once and act on it, in the caller's transaction.

    Idempotent on ``(gateway, provider_message_id)``: the same message delivered again returns
    the stored row with ``duplicate=True`` and changes nothing (no second opt-out, no second
    confirmation). Otherwise:

    - a keyword opt-out (or, on Zalo, an event of ``zalo_optout_events``: kind ``unfollow``)
      adds the sender, and for a Zalo user the numbers of recipients with that
      ``zalo_user_id``, to the suppression list on the channels of :meth:`InboundSettings.scope`,
      reason ``reply-keyword``/``zalo-unfollow``, source ``reply:<gateway>``, evidence the reply;
    - an opt-in keyword removes the sender's entries that came from its own replies
      (source ``reply:…``); operator and provider entries stay;
    - anything else is kept for the inbox (kind ``message``).

    The row carries the campaign the reply most likely answers (:func:`latest_delivery`) and,
    for a keyword with a configured confirmation text, ``confirmation = "pending"``: sent later,
    at most once, by :func:`send_confirmation`. Raises ValueError for an empty sender or id.
    """
    settings = settings or InboundSettings()
    now = now or dt.datetime.now(dt.timezone.utc)
    if not msg.sender or not msg.provider_message_id:
        raise ValueError("an inbound message needs a sender and a provider message id")
    text = textmod.nfc(msg.text) if msg.text is not None else None
    key = msg.provider_message_id[:160]
    stored = select(InboundMessage.id, InboundMessage.kind, InboundMessage.keyword).where(
        InboundMessage.gateway == msg.gateway, InboundMessage.provider_message_id == key)
    row = conn.execute(stored).first()
    if row is not None:
        return InboundResult(id=row.id, duplicate=True, kind=row.kind, keyword=row.keyword)
    kind, keyword = MESSAGE, None
    if msg.channel == "zalo" and msg.event:
        if msg.event in settings.zalo_optout_events:
            kind, keyword = UNFOLLOW, msg.event
    else:
        hit = settings.match(text)
        if hit is not None:
            kind, keyword = hit
    zalo_uid = msg.sender if msg.channel == "zalo" else None
    linked = _numbers_of_zalo_user(conn, zalo_uid) if zalo_uid else []
    addresses = [msg.sender] + [e for _, e in linked]
    recipient_id = linked[0][0] if linked else conn.execute(
        select(Recipient.id).where(Recipient.e164 == msg.sender)).scalar()
    answers = latest_delivery(conn, addresses)
    confirm_text = (settings.confirmation(kind) if kind in (OPTOUT, OPTIN)
                    and msg.gateway in CONFIRMING_GATEWAYS else None)
    values = dict(channel=msg.channel, gateway=msg.gateway, provider_message_id=key,
                  sender=msg.sender, zalo_user_id=zalo_uid, recipient_id=recipient_id,
                  destination=msg.destination, text=text if text is not None else msg.event,
                  kind=kind, keyword=keyword, campaign_id=answers[0] if answers else None,
                  delivery_id=answers[1] if answers else None, received_at=msg.received_at,
                  confirmation="pending" if confirm_text else None,
                  confirmation_text=confirm_text)
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(InboundMessage)
    res = conn.execute(ins.values(**values).on_conflict_do_nothing().returning(InboundMessage.id))
    new_id = res.scalar()
    if new_id is None:  # another receiver stored it meanwhile
        row = conn.execute(stored).one()
        return InboundResult(id=row.id, duplicate=True, kind=row.kind, keyword=row.keyword)
    result = InboundResult(id=new_id, duplicate=False, kind=kind, keyword=keyword,
                           confirm=bool(confirm_text))
    source = f"{REPLY_SOURCE_PREFIX}{msg.gateway}"
    if kind in (OPTOUT, UNFOLLOW):
        evidence = (f"{msg.channel} {'event' if kind == UNFOLLOW else 'reply'} "
                    f"{(text or msg.event or '')[:200]!r} at {msg.received_at.isoformat()} "
                    f"(inbound #{new_id})")
        scope = settings.scope(msg.channel, kind)
        suppression.add(conn, addresses, reason="zalo-unfollow" if kind == UNFOLLOW
                        else "reply-keyword", source=source, now=now, channel=scope,
                        evidence=evidence, inbound_id=new_id, operator=f"inbound:{msg.gateway}",
                        action="optout-reply")
        result.suppressed = addresses
    elif kind == OPTIN:
        lifted = list(conn.execute(select(Suppression.e164).where(
            Suppression.e164.in_(addresses),
            Suppression.source.like(f"{REPLY_SOURCE_PREFIX}%"))).scalars())
        if lifted:
            suppression.remove(conn, lifted, operator=f"inbound:{msg.gateway}", now=now)
        result.lifted = lifted
    return result


# -- SMPP ----------------------------------------------------------------------------------------

def ingest_smpp(conn: Connection, *, settings: InboundSettings | None = None,
                now: dt.datetime | None = None, ids: Iterable[int] | None = None
                ) -> list[InboundResult]:
    """Record the ``smpp_inbound`` rows not yet recorded (or only ``ids``), in the caller's
    transaction; returns the results of the messages recorded.

    A one-part reply is recorded at once; the parts of a concatenated reply (same account,
    source and reference) once all ``parts`` are stored, joined in part order. The key is
    ``<account>#<id of the first part's row>``. A row repeating one recorded within
    :data:`SMPP_REPEAT_WINDOW` (same account, source, destination, text, part: the SMSC sent
    the ``deliver_sm`` again because our response was lost) is linked to that message and
    records nothing new."""
    now = now or dt.datetime.now(dt.timezone.utc)
    q = select(SmppInbound).where(SmppInbound.inbound_id.is_(None)).order_by(SmppInbound.id)
    if ids is not None:
        q = q.where(SmppInbound.id.in_(list(ids)))
    rows = list(conn.execute(q))
    out: list[InboundResult] = []
    messages: list[tuple[list[Any], list[Any]]] = []  # (parts in order, repeated parts)
    groups: dict[tuple[str, str, int], list[Any]] = {}
    for r in rows:
        if r.ref is not None and (r.parts or 1) > 1:
            groups.setdefault((r.account, r.source, r.ref), []).append(r)
        else:
            messages.append(([r], []))
    for (account, source, ref), parts in groups.items():
        earlier = conn.execute(select(SmppInbound.inbound_id).where(
            SmppInbound.account == account, SmppInbound.source == source,
            SmppInbound.ref == ref, SmppInbound.inbound_id.is_not(None),
            SmppInbound.received_at >= parts[0].received_at - SMPP_REPEAT_WINDOW)).scalar()
        if earlier is not None:  # parts sent again after the message was recorded
            conn.execute(update(SmppInbound).where(SmppInbound.id.in_([p.id for p in parts]))
                         .values(inbound_id=earlier))
            continue
        first_of: dict[int, Any] = {}
        for p in parts:
            first_of.setdefault(p.part, p)
        if len(first_of) < parts[0].parts:
            continue  # the other parts have not arrived yet
        ordered = [first_of[i] for i in sorted(first_of)]
        messages.append((ordered, [p for p in parts if p not in ordered]))
    for group, repeats in sorted(messages, key=lambda m: m[0][0].id):
        first = group[0]
        text = "".join(p.text for p in group)
        ids = [p.id for p in group + repeats]
        repeat = conn.execute(select(InboundMessage.id).where(
            InboundMessage.gateway == "smpp", InboundMessage.sender == first.source,
            InboundMessage.destination == first.destination, InboundMessage.text == text,
            InboundMessage.received_at >= first.received_at - SMPP_REPEAT_WINDOW,
            InboundMessage.provider_message_id.like(f"{first.account}#%"))).scalar()
        if repeat is not None:
            conn.execute(update(SmppInbound).where(SmppInbound.id.in_(ids))
                         .values(inbound_id=repeat))
            continue
        res = record_inbound(conn, Inbound(
            channel="sms", gateway="smpp", provider_message_id=f"{first.account}#{first.id}",
            sender=first.source, text=text, destination=first.destination,
            received_at=first.received_at), settings=settings, now=now)
        conn.execute(update(SmppInbound).where(SmppInbound.id.in_(ids)).values(inbound_id=res.id))
        out.append(res)
    return out


# -- eSMS short-code MO --------------------------------------------------------------------------

def esms_mo_signature(cpid: str, smsid: str, content: str, receive_time: str, key: str) -> str:
    """``MD5(cpid + smsid + content + receiveTime + key)`` as lowercase hex: the signature of
    eSMS's short-code MO callback (domain-facts "Brandname aggregators": "Short-code MO
    callback: sender, keyword, content, sign = MD5(cpid+smsid+content+receiveTime+key)")."""
    return hashlib.md5((cpid + smsid + content + receive_time + key).encode("utf-8")).hexdigest()


def esms_mo_text(keyword: str, content: str) -> str:
    """The citizen's words of an eSMS MO: ``content`` without the short code's service
    ``keyword`` in front, when it starts with it ("UBND TC" with keyword "UBND" → "TC")."""
    content = textmod.nfc(content or "").strip()
    kw = textmod.nfc(keyword or "").strip()
    if kw and normalise_keyword(content[:len(kw)]) == normalise_keyword(kw) and \
            normalise_keyword(content) != normalise_keyword(kw):
        return content[len(kw):].strip()
    return content


# -- confirmations -------------------------------------------------------------------------------

#: campaign id carried by confirmation messages (they belong to no campaign)
CONFIRMATION_CAMPAIGN = "inbound-confirmation"


def _claim_confirmation(db: Database, inbound_id: int) -> Any:
    @retry_write
    def tx() -> Any:
        with db.engine.begin() as conn:
            n = conn.execute(update(InboundMessage).where(
                InboundMessage.id == inbound_id, InboundMessage.confirmation == "pending")
                .values(confirmation="sending")).rowcount
            if n != 1:
                return None
            return conn.execute(select(
                InboundMessage.sender, InboundMessage.zalo_user_id, InboundMessage.channel,
                InboundMessage.confirmation_text).where(InboundMessage.id == inbound_id)).one()
    return tx()


def send_confirmation(db: Database, inbound_id: int, gateway: gw.Gateway,
                      now: Callable[[], dt.datetime] | None = None) -> str | None:
    """Send the confirmation of inbound message ``inbound_id`` through ``gateway`` (the
    channel's own: the reply goes back the way it came), at most once.

    The row moves ``pending → sending`` in its own committed compare-and-set before the
    request leaves, so two receivers (or a retry of the same webhook) never both send; then
    ``sent`` (with the provider id), ``failed`` (refused: never resent), ``unknown`` (the
    request may have arrived: never resent automatically) or back to ``pending`` (not sent,
    transient: tried again). Returns the new state, or None when there was nothing to send
    (already sent, being sent, or none configured)."""
    row = _claim_confirmation(db, inbound_id)
    if row is None:
        return None
    clock = now or (lambda: dt.datetime.now(dt.timezone.utc))
    to = row.sender
    uid = row.zalo_user_id
    message = gw.OutboundMessage(delivery_id=0, campaign_id=CONFIRMATION_CAMPAIGN,
                                 channel=row.channel, to=to, body=row.confirmation_text or "",
                                 segments=textmod.analyse(row.confirmation_text or "").segments,
                                 zalo_user_id=uid)
    state, provider_id, detail = "sent", None, None
    try:
        result = gateway.send(message)
        provider_id = result.provider_message_id
    except gw.TransientError as exc:
        state, detail = "pending", f"{exc.reason}: {exc.detail}"[:255]
    except gw.OutcomeUnknownError as exc:
        state, detail = "unknown", f"{exc.reason}: {exc.detail}"[:255]
    except gw.GatewayError as exc:
        state, detail = "failed", f"{exc.reason}: {exc.detail}"[:255]

    @retry_write
    def tx() -> None:
        with db.engine.begin() as conn:
            conn.execute(update(InboundMessage).where(InboundMessage.id == inbound_id).values(
                confirmation=state, confirmation_id=provider_id, confirmation_detail=detail,
                confirmed_at=clock() if state == "sent" else None))
    tx()
    if state != "sent":
        log.warning(_("confirmation of reply #{id}: {state} ({detail})").format(
            id=inbound_id, state=label(f"confirmation|{state}"), detail=detail))
    return state


class Confirmations:
    """Sends confirmations off the request thread (Zalo wants its 200 within 2 s): one
    thread, a queue of inbound ids. ``gateway_for(gateway_name)`` returns the gateway to
    answer through (built once, lazily), or None when that channel cannot answer (the row
    stays ``pending``). :meth:`flush` waits until everything queued so far is done."""

    def __init__(self, db: Database, gateway_for: Callable[[str], gw.Gateway | None]) -> None:
        self.db = db
        self.gateway_for = gateway_for
        self._q: queue.Queue[tuple[int, str] | threading.Event | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0

    def put(self, inbound_id: int, gateway: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="outreach-confirmations")
                self._thread.start()
        self._q.put((inbound_id, gateway))

    def flush(self, timeout: float = 30) -> None:
        if self._thread is None:
            return
        done = threading.Event()
        self._q.put(done)
        done.wait(timeout)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            inbound_id, name = item
            try:
                gateway = self.gateway_for(name)
                if gateway is None:
                    log.warning(_("no {gateway} gateway to confirm reply #{id}; left "
                                  "pending").format(gateway=name, id=inbound_id))
                    continue
                if send_confirmation(self.db, inbound_id, gateway) == "sent":
                    self.sent += 1
            except Exception:  # noqa: BLE001 - one failed confirmation must not stop the rest
                log.exception(_("confirmation of reply #{id} failed").format(id=inbound_id))


def pending_confirmations(conn: Connection) -> list[tuple[int, str]]:
    """``(id, gateway)`` of inbound messages whose confirmation is still to send."""
    return [(r.id, r.gateway) for r in conn.execute(
        select(InboundMessage.id, InboundMessage.gateway).where(
            InboundMessage.confirmation == "pending").order_by(InboundMessage.id))]


# -- inbox and reports ---------------------------------------------------------------------------

def inbox(conn: Connection, *, campaign_id: str | None = None, since: dt.datetime | None = None,
          kinds: Iterable[str] | None = None) -> list[InboundMessage]:
    """Inbound messages, oldest first: every kind unless ``kinds`` (the inbox proper is
    ``["message"]``), of one campaign (the one each most likely answers), received at or after
    ``since``."""
    from sqlalchemy.orm import Session

    conds = []
    if campaign_id:
        conds.append(InboundMessage.campaign_id == campaign_id)
    if since:
        conds.append(InboundMessage.received_at >= since)
    if kinds is not None:
        conds.append(InboundMessage.kind.in_(list(kinds)))
    with Session(bind=conn) as s:
        return list(s.scalars(select(InboundMessage).where(and_(true(), *conds))
                              .order_by(InboundMessage.received_at, InboundMessage.id)))


def reply_counts(conn: Connection, campaign_id: str | None = None, *,
                 since: dt.datetime | None = None, until: dt.datetime | None = None
                 ) -> dict[str, Any]:
    """Replies counted: ``{"total", "by_kind", "by_keyword", "by_campaign", "by_day",
    "by_channel", "optouts"}``; days are Asia/Ho_Chi_Minh days of ``received_at``. With
    ``campaign_id`` only the replies that most likely answer that campaign."""
    from outreach.clock import VN_TZ

    conds = []
    if campaign_id is not None:
        conds.append(InboundMessage.campaign_id == campaign_id)
    if since is not None:
        conds.append(InboundMessage.received_at >= since)
    if until is not None:
        conds.append(InboundMessage.received_at < until)
    rows = conn.execute(select(InboundMessage.kind, InboundMessage.keyword,
                               InboundMessage.campaign_id, InboundMessage.channel,
                               InboundMessage.received_at).where(and_(true(), *conds))).all()
    out: dict[str, Any] = {"total": len(rows), "by_kind": {k: 0 for k in KINDS},
                           "by_keyword": {}, "by_campaign": {}, "by_day": {}, "by_channel": {}}
    for kind, keyword, camp, channel, at in rows:
        out["by_kind"][kind] = out["by_kind"].get(kind, 0) + 1
        if keyword:
            out["by_keyword"][keyword] = out["by_keyword"].get(keyword, 0) + 1
        c = camp or "(none)"
        out["by_campaign"][c] = out["by_campaign"].get(c, 0) + 1
        day = at.astimezone(VN_TZ).date().isoformat()
        d = out["by_day"].setdefault(day, {k: 0 for k in KINDS})
        d[kind] += 1
        out["by_channel"][channel] = out["by_channel"].get(channel, 0) + 1
    out["by_day"] = dict(sorted(out["by_day"].items()))
    out["by_keyword"] = dict(sorted(out["by_keyword"].items()))
    out["optouts"] = out["by_kind"][OPTOUT] + out["by_kind"][UNFOLLOW]
    return out


# -- settings in effect, and the SMPP hooks ------------------------------------------------------

_settings_cache: dict[str, InboundSettings] = {}


def current_settings() -> InboundSettings:
    """:func:`load_settings` of ``$OUTREACH_INBOUND_FILE`` (read once per path and process)."""
    path = os.environ.get("OUTREACH_INBOUND_FILE") or ""
    got = _settings_cache.get(path)
    if got is None:
        got = _settings_cache[path] = load_settings(path or None)
    return got


def _smpp_hook(conn: Connection, ids: list[int], now: dt.datetime) -> list[int]:
    results = ingest_smpp(conn, settings=current_settings(), now=now)
    return [r.id for r in results if r.confirm and not r.duplicate]


def _smpp_confirm(gateway: Any, inbound_ids: list[int]) -> None:
    sender = getattr(gateway, "_inbound_confirmations", None)
    if sender is None:
        sender = Confirmations(gateway.db, lambda _name: gateway)
        gateway._inbound_confirmations = sender
    for i in inbound_ids:
        sender.put(i, "smpp")


def _register_smpp_hooks() -> None:
    from outreach.gateways import smpp

    smpp.INBOUND_HOOK = _smpp_hook
    smpp.CONFIRM_HOOK = _smpp_confirm


_register_smpp_hooks()


__all__ = ["current_settings", "Inbound", "InboundResult", "InboundSettings", "InboundConfigError", "record_inbound",
           "normalise_keyword", "load_settings", "ingest_smpp", "send_confirmation",
           "Confirmations", "pending_confirmations", "inbox", "reply_counts", "latest_delivery",
           "esms_mo_signature", "esms_mo_text"]

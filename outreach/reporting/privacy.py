"""Personal-data retention: replace the phone numbers of finished campaigns with keyed hashes.

Phone numbers (with names) are basic personal data under Decree 13/2023/NĐ-CP, superseded from
1 January 2026 by the Personal Data Protection Law 91/2025/QH15: keep them no longer than the
purpose needs. Once a campaign is finished and its report delivered, the purpose is spent, so
:func:`purge` replaces every number of that campaign with ``h:`` + HMAC-SHA256(key, E.164)
(hex, first 32 digits = 128 bits) and clears names and Zalo user ids. The key comes from the
environment and is never stored: without it nobody can test a guessed number against the hashes
(there are only about 10^9 Vietnamese mobile numbers, so a plain hash would be reversible); with
it, ``outreach deliveries lookup PHONE --key-env OUTREACH_PURGE_KEY`` still finds a number's
history for a citizen's complaint.

Citizens' replies (``inbound_messages``, and the raw SMPP ``smpp_inbound`` rows) are purged
the same way: those that most likely answer an eligible campaign, and those answering none
received more than ``older_than_days`` days ago, keep their channel, kind, keyword, campaign and
time (the reports count them) but get the hashed sender, no text and no Zalo user id.

Counts and reports are untouched: reports count rows and distinct ``recipient_id``, never the
number. The suppression (opt-out) list is NOT purged: it must keep matching the plain number so
the person is never messaged again, which is the purpose the citizen gave it for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, select, true, update

from outreach.i18n import N_, _, number
from outreach.ledger import runstates, states
from outreach.reporting import audit
from outreach.clock import vn_today
from outreach.ledger.db import Database
from outreach.ledger.models import (Campaign, Delivery, DeliveryEvent, ListMember, PendingReceipt,
                             Recipient, Run, Schedule)
from outreach.sending.ops import OperatorError

DEFAULT_KEY_ENV = "OUTREACH_PURGE_KEY"
HASH_PREFIX = "h:"
HASH_HEX_DIGITS = 32
MIN_KEY_BYTES = 16
#: Deliveries in these states may still be sent or need an operator's decision: their campaign
#: is not finished.
OPEN_DELIVERY_STATES = (states.QUEUED, states.SENDING, states.UNKNOWN)


class PrivacyError(OperatorError):
    """A refused purge (no key, key too short): shown to the operator as one line."""


def key_from_env(var: str = DEFAULT_KEY_ENV) -> bytes:
    """The purge key from environment variable ``var`` (UTF-8 bytes).

    Raises PrivacyError when it is unset or shorter than :data:`MIN_KEY_BYTES` bytes (a short
    key can be guessed, and then every hash with it).
    """
    value = os.environ.get(var)
    if not value:
        raise PrivacyError(_(
            "no purge key: set {var} to a secret of at least {n} characters (for example "
            "`export {var}=$(openssl rand -hex 32)`) and keep it in the Department's password "
            "safe; the same key must be used for every purge").format(var=var, n=MIN_KEY_BYTES))
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise PrivacyError(_("the purge key in {var} is {n} bytes; at least {min} are "
                             "needed").format(var=var, n=len(key), min=MIN_KEY_BYTES))
    return key


def hash_number(key: bytes, e164: str) -> str:
    """``h:`` + the first 32 hex digits of HMAC-SHA256(key, e164) (34 characters)."""
    digest = hmac.new(key, e164.encode("utf-8"), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:HASH_HEX_DIGITS]


def key_id(key: bytes) -> str:
    """A short fingerprint of the key for the audit log (tells keys apart, reveals nothing)."""
    return hmac.new(key, b"outreach purge key id", hashlib.sha256).hexdigest()[:12]


def is_hashed(value: str | None) -> bool:
    return bool(value) and value.startswith(HASH_PREFIX)  # type: ignore[union-attr]


def number_variants(e164: str) -> list[str]:
    """The ways a Vietnamese E.164 number appears in raw provider payloads, longest first:
    ``+84…``, URL-encoded ``%2B84…``, ``84…`` (Zalo), ``0…`` (national)."""
    if not e164.startswith("+84"):
        return [e164]
    digits = e164[1:]
    return [f"%2B{digits}", e164, digits, "0" + digits[2:]]


@dataclass
class PurgeResult:
    """What a purge did (or, with ``dry_run``, would do). Counts are rows."""

    dry_run: bool
    older_than_days: int
    campaigns: list[str] = field(default_factory=list)
    not_eligible: dict[str, str] = field(default_factory=dict)
    deliveries: int = 0
    recipients: int = 0
    recipients_kept: int = 0
    list_memberships: int = 0
    events_scrubbed: int = 0
    receipts_scrubbed: int = 0
    inbound_messages: int = 0
    smpp_inbound: int = 0
    key_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def campaign_eligibility(conn: Connection, older_than_days: int, now: dt.datetime,
                         ) -> tuple[list[str], dict[str, str]]:
    """Campaigns whose numbers may be purged, and the others with the reason why not.

    Eligible: no run in an active state (created, running, paused, waiting, expired); no
    delivery queued, sending or unknown; no unpaused schedule while the campaign's window has
    not ended; and the last activity (delivery update, run end, campaign update) older than
    ``older_than_days`` days before ``now``.
    """

    cutoff = now - dt.timedelta(days=older_than_days)
    today = vn_today(now)
    eligible: list[str] = []
    refused: dict[str, str] = {}
    camps = conn.execute(select(Campaign.id, Campaign.updated_at, Campaign.definition)
                         .order_by(Campaign.id)).all()
    for cid, updated_at, definition in camps:
        active = conn.execute(select(Run.id, Run.status).where(
            Run.campaign_id == cid, Run.status.in_(runstates.ACTIVE))).first()
        if active:
            refused[cid] = _("run #{id} is {status}").format(id=active.id,
                                                             status=_(active.status))
            continue
        open_n = conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id == cid, Delivery.status.in_(OPEN_DELIVERY_STATES))).scalar_one()
        if open_n:
            refused[cid] = _("{n} deliveries are still queued, sending or unknown (send, "
                             "cancel or resolve them first)").format(n=open_n)
            continue
        sched = conn.execute(select(Schedule.paused).where(Schedule.campaign_id == cid)).first()
        end = ((definition or {}).get("window") or {}).get("end_date")
        if sched is not None and not sched.paused and end and dt.date.fromisoformat(end) >= today:
            refused[cid] = _("scheduled daily sends until {end}").format(end=end)
            continue
        last = max(x for x in (
            updated_at,
            _aware(conn.execute(select(func.max(Delivery.updated_at))
                                .where(Delivery.campaign_id == cid)).scalar()),
            _aware(conn.execute(select(func.max(func.coalesce(Run.finished_at, Run.created_at)))
                                .where(Run.campaign_id == cid)).scalar()),
        ) if x is not None)
        if last >= cutoff:
            from outreach import i18n

            shown = (last.isoformat(timespec="seconds") if i18n.current() == "en"
                     else i18n.when(last))
            refused[cid] = i18n._("last activity {when} is less than {n} days ago").format(
                when=shown, n=older_than_days)
            continue
        eligible.append(cid)
    return eligible, refused


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _list_names(conn: Connection, campaign_ids: Iterable[str]) -> set[str]:
    ids = list(campaign_ids)
    if not ids:
        return set()
    return {(d or {}).get("list_name") for d in conn.execute(
        select(Campaign.definition).where(Campaign.id.in_(ids))).scalars()} - {None}


def _chunks(seq: Sequence[Any], n: int = 900) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def purge(db: Database, *, older_than_days: int, key: bytes | None, dry_run: bool = False,
          operator: str | None = None, now: dt.datetime | None = None) -> PurgeResult:
    """Replace the phone numbers of finished campaigns with keyed hashes, in one transaction.

    For every eligible campaign (:func:`campaign_eligibility`): each delivery's ``address`` becomes
    :func:`hash_number` of it and its personalised ``body`` is cleared; the number is scrubbed
    from its events' raw payloads and from matched pending receipts. Each recipient of those
    campaigns (a delivery in one, or a member of one's list) who is in no other campaign (no
    delivery in, and no membership of the list of, a campaign that is not eligible) gets the
    hashed ``e164``, no name and no Zalo user id, and leaves its lists so no later campaign can
    address a hash. Counts, statuses, districts, carriers, costs and recipient ids are
    untouched, so every report is the same before and after. One ``purge`` audit entry per
    campaign and one summary entry.

    ``key`` is required unless ``dry_run`` (PrivacyError otherwise); ``older_than_days`` >= 0.
    """
    if older_than_days < 0:
        raise PrivacyError(_("--older-than must be 0 days or more"))
    if key is None and not dry_run:
        raise PrivacyError(_("a purge needs a key (see --key-env)"))
    now = now or dt.datetime.now(dt.timezone.utc)
    res = PurgeResult(dry_run=dry_run, older_than_days=older_than_days,
                      key_id=key_id(key) if key else None)
    with db.engine.begin() as conn:
        eligible, refused = campaign_eligibility(conn, older_than_days, now)
        res.not_eligible = refused
        res.campaigns = eligible
        inbound_ids = _inbound_to_purge(conn, eligible, now - dt.timedelta(days=older_than_days),
                                        record_smpp=not dry_run)
        res.inbound_messages = len(inbound_ids)
        if not dry_run and inbound_ids:
            assert key is not None
            res.smpp_inbound = _purge_inbound(conn, inbound_ids, key, now)
        if not eligible:
            if not dry_run:
                audit.record(conn, "purge", operator=operator, now=now, details=res.to_dict())
            return res
        all_ids = [c for c in conn.execute(select(Campaign.id)).scalars()]
        others = [c for c in all_ids if c not in eligible]
        purge_lists = _list_names(conn, eligible) - _list_names(conn, others)

        # recipients: candidates minus those still in another campaign or another list
        candidates = set(conn.execute(select(Delivery.recipient_id).where(
            Delivery.campaign_id.in_(eligible)).distinct()).scalars())
        if purge_lists:
            candidates |= set(conn.execute(select(ListMember.recipient_id).where(
                ListMember.list_name.in_(purge_lists))).scalars())
        protected = set(conn.execute(select(Delivery.recipient_id).where(
            Delivery.campaign_id.in_(others)).distinct()).scalars()) if others else set()
        protected |= set(conn.execute(select(ListMember.recipient_id).where(
            ListMember.list_name.not_in(purge_lists) if purge_lists else true())).scalars())
        to_purge = sorted(candidates - protected)
        rec_rows = []
        for chunk in _chunks(to_purge):
            rec_rows += conn.execute(select(Recipient.id, Recipient.e164).where(
                Recipient.id.in_(chunk))).all()
        rec_rows = [r for r in rec_rows if not is_hashed(r.e164)]
        res.recipients = len(rec_rows)
        res.recipients_kept = len(candidates & protected)

        # deliveries: distinct plain addresses of the eligible campaigns
        addresses = [a for a in conn.execute(select(Delivery.address).where(
            Delivery.campaign_id.in_(eligible), ~Delivery.address.startswith(HASH_PREFIX))
            .distinct()).scalars()]
        res.deliveries = conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id.in_(eligible),
            ~Delivery.address.startswith(HASH_PREFIX))).scalar_one()
        ids_by_addr: dict[str, list[int]] = {}
        per_campaign: dict[str, int] = {}
        for did, cid, addr in conn.execute(select(Delivery.id, Delivery.campaign_id,
                                                  Delivery.address).where(
                Delivery.campaign_id.in_(eligible), ~Delivery.address.startswith(HASH_PREFIX))):
            ids_by_addr.setdefault(addr, []).append(did)
            per_campaign[cid] = per_campaign.get(cid, 0) + 1
        if rec_rows:
            res.list_memberships = sum(conn.execute(select(func.count()).select_from(ListMember)
                                                    .where(ListMember.recipient_id.in_(chunk)))
                                       .scalar_one() for chunk in _chunks([r.id for r in rec_rows]))
        if dry_run:
            return res
        assert key is not None

        for addr in addresses:
            conn.execute(update(Delivery).where(Delivery.campaign_id.in_(eligible),
                                                Delivery.address == addr)
                         .values(address=hash_number(key, addr), body=None)
                         .execution_options(synchronize_session=False))
        res.events_scrubbed, res.receipts_scrubbed = _scrub_payloads(conn, ids_by_addr, key)

        taken = set()
        for r in rec_rows:
            h = hash_number(key, r.e164)
            clash = conn.execute(select(Recipient.id).where(Recipient.e164 == h)).first()
            if clash is not None or h in taken:
                h = f"{h}:{r.id}"  # the same number purged before under another recipient row
            taken.add(h)
            conn.execute(update(Recipient).where(Recipient.id == r.id)
                         .values(e164=h, name=None, zalo_user_id=None))
        for chunk in _chunks([r.id for r in rec_rows]):
            conn.execute(delete(ListMember).where(ListMember.recipient_id.in_(chunk)))
        # not updated_at: a purge is not campaign activity (a later purge must still see it old)
        conn.execute(update(Campaign).where(Campaign.id.in_(eligible)).values(status="purged"))
        for cid in eligible:
            if per_campaign.get(cid):
                audit.record(conn, "purge", operator=operator, campaign_id=cid, now=now,
                             details={"older_than_days": older_than_days,
                                      "deliveries": per_campaign[cid], "key_id": res.key_id})
        audit.record(conn, "purge", operator=operator, now=now, details=res.to_dict())
    return res


def _inbound_to_purge(conn: Connection, eligible: Sequence[str], cutoff: dt.datetime, *,
                      record_smpp: bool = True) -> list[int]:
    """Ids of inbound messages still holding a sender: those of eligible campaigns, and those
    of no campaign received before ``cutoff``."""
    from sqlalchemy import and_, inspect, or_

    from outreach.ledger.models import InboundMessage

    if "inbound_messages" not in set(inspect(conn).get_table_names()):
        return []
    # SMPP replies not recorded yet are recorded first, so none escapes the purge
    from outreach.receipts import inbound

    if record_smpp:
        inbound.ingest_smpp(conn, settings=inbound.current_settings())
    cond = and_(InboundMessage.campaign_id.is_(None), InboundMessage.received_at < cutoff)
    if eligible:
        cond = or_(InboundMessage.campaign_id.in_(list(eligible)), cond)
    return list(conn.execute(select(InboundMessage.id).where(
        InboundMessage.purged_at.is_(None), cond).order_by(InboundMessage.id)).scalars())


def _purge_inbound(conn: Connection, ids: Sequence[int], key: bytes, now: dt.datetime) -> int:
    """Hash the sender and clear the text of inbound messages ``ids`` and of their raw SMPP
    parts; returns the SMPP rows changed."""
    from outreach.ledger.models import InboundMessage, SmppInbound

    smpp = 0
    for chunk in _chunks(list(ids)):
        for iid, sender in conn.execute(select(InboundMessage.id, InboundMessage.sender)
                                        .where(InboundMessage.id.in_(chunk))).all():
            hashed = sender if is_hashed(sender) else hash_number(key, sender)
            conn.execute(update(InboundMessage).where(InboundMessage.id == iid).values(
                sender=hashed, text=None, zalo_user_id=None, confirmation_text=None,
                purged_at=now))
            smpp += conn.execute(update(SmppInbound).where(SmppInbound.inbound_id == iid)
                                 .values(source=hashed[:32], text="")).rowcount
    return smpp


def _scrub_payloads(conn: Connection, ids_by_addr: dict[str, list[int]],
                    key: bytes) -> tuple[int, int]:
    """Replace the number in the raw payloads kept with events and pending receipts of the
    purged deliveries; returns (events changed, receipts changed)."""
    addr_of: dict[int, str] = {i: a for a, ids in ids_by_addr.items() for i in ids}
    ids = sorted(addr_of)
    events = receipts = 0
    for chunk in _chunks(ids):
        for eid, did, detail in conn.execute(select(DeliveryEvent.id, DeliveryEvent.delivery_id,
                                                    DeliveryEvent.detail)
                                             .where(DeliveryEvent.delivery_id.in_(chunk),
                                                    DeliveryEvent.detail.is_not(None))).all():
            new = _scrub(detail, addr_of[did], key)
            if new != detail:
                conn.execute(update(DeliveryEvent).where(DeliveryEvent.id == eid)
                             .values(detail=new))
                events += 1
        for pid, did, payload in conn.execute(select(PendingReceipt.id, PendingReceipt.delivery_id,
                                                     PendingReceipt.payload)
                                              .where(PendingReceipt.delivery_id.in_(chunk))).all():
            raw = json.dumps(payload, ensure_ascii=False)
            new = _scrub(raw, addr_of[did], key)
            if new != raw:
                conn.execute(update(PendingReceipt).where(PendingReceipt.id == pid)
                             .values(payload=json.loads(new)))
                receipts += 1
    return events, receipts


def _scrub(text: str, e164: str, key: bytes) -> str:
    h = hash_number(key, e164)
    for v in number_variants(e164):
        text = text.replace(v, h)
    return text


# -- what the installation holds (``outreach privacy check``) ----------------------------------

#: Tables holding personal data, what they hold, and the count query of rows that still hold
#: it (a purged number is a keyed hash, not personal data to whoever lacks the key).
PERSONAL_TABLES = (
    ("recipients", N_("number, name, district, ward, carrier, Zalo user id")),
    ("deliveries", N_("number per message, personalised text, provider ids, status, cost")),
    ("delivery_events", N_("provider receipts (may contain the number)")),
    ("pending_receipts", N_("receipts not yet matched (may contain the number)")),
    ("suppressions", N_("opt-outs: number, reason, source, evidence, date (kept on purpose)")),
    ("inbound_messages", N_("citizens' replies: number or Zalo user id, text")),
    ("smpp_inbound", N_("raw SMPP replies: number, text")),
    ("list_members", N_("who is on which list")),
    ("import_issues", N_("rejected rows: file, line, masked value")),
    ("audit_log", N_("operator actions (numbers masked)")),
    ("gateway_tokens", N_("provider OAuth tokens (secrets, encrypted)")),
)


#: What a person reads for each kind of file (translated where shown, see :func:`kind_label`).
FILE_KINDS = {"database": N_("file|database"), "database folder": N_("file|database folder"),
              "outbox folder": N_("file|outbox folder"), "outbox": N_("file|outbox"),
              "recipient-list": N_("file|recipient-list"), "reject-file": N_("file|reject-file"),
              "deliveries": N_("file|deliveries"), "inbox": N_("file|inbox"),
              "export": N_("file|export")}


def kind_label(kind: str) -> str:
    """A file kind code (``database folder``, ``reject-file``...) as a person reads it in the
    current language; English and unknown kinds: the code itself."""
    from outreach.i18n import label

    key = FILE_KINDS.get(kind)
    return kind if key is None else label(key)


def _file_fact(path: str | os.PathLike[str], kind: str, **extra: Any) -> dict[str, Any]:
    from outreach import safeio

    p = Path(path)
    mode = safeio.mode_of(p)
    try:
        size = p.stat().st_size if mode is not None and p.is_file() else None
    except OSError:
        size = None
    return {"kind": kind, "path": str(p), "exists": mode is not None,
            "mode": None if mode is None else f"{mode:04o}", "size": size,
            "too_open": safeio.too_open(mode), **extra}


def _table_counts(conn: Connection) -> list[dict[str, Any]]:
    from sqlalchemy import inspect

    from outreach.ledger.models import AuditEntry, GatewayToken, ImportIssue, Suppression

    present = set(inspect(conn).get_table_names())

    def n(stmt: Any) -> int:
        return int(conn.execute(stmt).scalar_one())

    count = select(func.count())
    personal: dict[str, tuple[int, str]] = {}
    if "recipients" in present:
        personal["recipients"] = (
            n(count.select_from(Recipient).where(~Recipient.e164.startswith(HASH_PREFIX))),
            _("{named} with a name, {zalo} with a Zalo user id").format(
                named=number(n(count.select_from(Recipient).where(Recipient.name.is_not(None)))),
                zalo=number(n(count.select_from(Recipient).where(
                    Recipient.zalo_user_id.is_not(None))))))
    if "deliveries" in present:
        personal["deliveries"] = (
            n(count.select_from(Delivery).where(~Delivery.address.startswith(HASH_PREFIX))),
            _("{n} with a personalised text").format(
                n=number(n(count.select_from(Delivery).where(Delivery.body.is_not(None))))))
    from outreach.ledger.models import InboundMessage, SmppInbound

    if "inbound_messages" in present:
        personal["inbound_messages"] = (
            n(count.select_from(InboundMessage).where(InboundMessage.purged_at.is_(None))),
            _("not purged"))
    if "smpp_inbound" in present:
        personal["smpp_inbound"] = (
            n(count.select_from(SmppInbound).where(SmppInbound.text != "")), _("with a text"))
    rows = []
    models = {"inbound_messages": InboundMessage, "smpp_inbound": SmppInbound,
              "recipients": Recipient, "deliveries": Delivery, "delivery_events": DeliveryEvent,
              "pending_receipts": PendingReceipt, "suppressions": Suppression,
              "list_members": ListMember, "import_issues": ImportIssue, "audit_log": AuditEntry,
              "gateway_tokens": GatewayToken}
    for table, what in PERSONAL_TABLES:
        if table not in present:
            continue
        total = n(count.select_from(models[table]))
        plain, note = personal.get(table, (None, None))
        if table == "delivery_events":
            plain = n(count.select_from(DeliveryEvent).where(DeliveryEvent.detail.is_not(None)))
            note = _("with a stored provider payload")
        if table == "gateway_tokens":
            from outreach import secretstore

            sealed = sum(1 for v in conn.execute(select(GatewayToken.refresh_token)).scalars()
                         if secretstore.is_sealed(v))
            note = _("{sealed} encrypted, {plain} in plaintext").format(sealed=sealed,
                                                                        plain=total - sealed)
            plain = total - sealed  # plaintext tokens: the only secret rows that matter
        rows.append({"table": table, "holds": what, "rows": total,
                     "with_personal_data": total if plain is None else plain, "note": note})
    return rows


def _recorded_files(conn: Connection) -> list[dict[str, Any]]:
    """Files written with personal data, from the audit log (``export`` entries), newest
    record of each path, and the recipient lists imported (``imports.files``)."""
    from outreach.ledger.models import AuditEntry, Import

    seen: dict[str, dict[str, Any]] = {}
    for at, operator, details in conn.execute(
            select(AuditEntry.at, AuditEntry.operator, AuditEntry.details)
            .where(AuditEntry.action == "export").order_by(AuditEntry.id)):
        path = (details or {}).get("file")
        if path:
            seen[path] = {"kind": (details or {}).get("what", "export"), "written_at": at,
                          "operator": operator, "rows": (details or {}).get("rows")}
    out = [_file_fact(p, f["kind"], written_at=_iso(f["written_at"]), operator=f["operator"],
                      rows=f["rows"]) for p, f in seen.items()]
    lists: dict[str, Any] = {}
    for at, files in conn.execute(select(Import.created_at, Import.files).order_by(Import.id)):
        for f in files or []:
            path = f if isinstance(f, str) else (f or {}).get("path")
            if path:
                lists[str(path)] = at
    out += [_file_fact(p, "recipient-list", written_at=_iso(at), operator=None, rows=None)
            for p, at in lists.items()]
    return out


def _iso(value: Any) -> str | None:
    value = _aware(value)
    return value.isoformat(timespec="seconds") if value else None


def check(db: Database, *, older_than_days: int = 90, outbox_dir: str | os.PathLike[str] | None
          = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """What personal data this installation holds, where, with what permissions, and what a
    purge would remove. Reads only (the purge part is :func:`purge` with ``dry_run``).

    Returns ``{"database": {"url", "files": [file fact]}, "tables": [{"table", "holds",
    "rows", "with_personal_data", "note"}], "folders": [file fact], "outbox": [file fact],
    "files": [file fact], "purge": PurgeResult dict, "warnings": [str]}``; a file fact is
    ``{"kind", "path", "exists", "mode" ("0600"), "size" (bytes), "too_open"}`` plus
    ``written_at``/``operator``/``rows`` for recorded files. ``files`` lists the exports and
    reject files recorded in the audit log and the recipient lists named by imports (relative
    paths are relative to the directory the import ran in). Sources: Decree 13/2023/NĐ-CP and
    the Personal Data Protection Law 91/2025/QH15 (the data subject's and the auditor's right
    to know what is processed and where).
    """
    from outreach import config, safeio

    url = db.url
    db_files: list[dict[str, Any]] = []
    folders: list[dict[str, Any]] = []
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):].split("?", 1)[0])
        db_files = [_file_fact(f, "database") for f in safeio.sqlite_files(path)]
        db_files = [f for f in db_files if f["exists"]]
        folders.append(_file_fact(path.parent, "database folder"))
    box = Path(outbox_dir) if outbox_dir else config.outbox_dir()
    outbox = []
    if box.is_dir():
        folders.append(_file_fact(box, "outbox folder"))
        outbox = [_file_fact(p, "outbox") for p in sorted(box.glob("*.jsonl"))]
    with db.engine.connect() as conn:
        tables = _table_counts(conn)
        files = _recorded_files(conn)
    purge_res = purge(db, older_than_days=older_than_days, key=None, dry_run=True, now=now)
    warnings = []
    loose: dict[str, list[dict[str, Any]]] = {}
    for f in db_files + folders + outbox + files:
        if f["exists"] and f["too_open"]:
            loose.setdefault(f["kind"], []).append(f)
    for kind, fs in loose.items():
        fix = "chmod 700" if kind.endswith("folder") else "chmod 600"
        if len(fs) == 1:
            warnings.append(_("{path} ({kind}) is readable by others (mode {mode}): {fix} "
                              "it").format(path=fs[0]["path"], kind=kind_label(kind),
                                           mode=fs[0]["mode"],
                                           fix=fix))
        else:
            warnings.append(_("{n} {kind} files are readable by others (e.g. {path}, mode "
                              "{mode}): {fix} them").format(n=len(fs), kind=kind_label(kind),
                                                            path=fs[0]["path"],
                                                            mode=fs[0]["mode"], fix=fix))
    on_disk = [f for f in files if f["exists"] and f["kind"] != "recipient-list"]
    if on_disk:
        warnings.append(_("{n} export or reject file(s) with personal data are still on disk: "
                          "delete them when no longer needed").format(n=len(on_disk)))
    tokens = next((t for t in tables if t["table"] == "gateway_tokens"), None)
    if tokens and tokens["with_personal_data"]:
        warnings.append(_("provider tokens stored in plaintext: run `outreach secrets rotate`"))
    return {"database": {"url": config.redact_url(url), "files": db_files}, "tables": tables,
            "folders": folders, "outbox": outbox, "files": files, "purge": purge_res.to_dict(),
            "warnings": warnings}

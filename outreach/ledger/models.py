"""SQLAlchemy 2 typed models: campaigns, recipients, runs, deliveries and their events."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from sqlalchemy import (JSON, BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Index,
                        Integer, MetaData, String, Text, UniqueConstraint)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc)


IntPK = Annotated[int, mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=True)]
Timestamp = Annotated[dt.datetime, mapped_column(UTCDateTime())]
OptTimestamp = Annotated[dt.datetime | None, mapped_column(UTCDateTime(), nullable=True)]
CampaignFK = Annotated[str, mapped_column(String(64), ForeignKey("campaigns.id"), index=True)]
Str64 = Annotated[str, mapped_column(String(64))]
OptStr = Annotated[str | None, mapped_column(String(255), nullable=True)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Campaign(Base):
    """A campaign as last loaded from its file; ``text_sha256`` is the hash of the NFC text sent."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    source_ref: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    file_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class Recipient(Base):
    """One person, identified by E.164 number (or a keyed hash ``h:...`` once purged)."""

    __tablename__ = "recipients"

    id: Mapped[IntPK]
    e164: Mapped[str] = mapped_column(String(80), unique=True)
    carrier: Mapped[OptStr]
    name: Mapped[OptStr]
    district: Mapped[OptStr]
    ward: Mapped[OptStr]
    zalo_user_id: Mapped[OptStr]
    source_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_line: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[Timestamp]
    # Administrative units (outreach.input.adminunits): district and ward above are the list's
    # (pre-2025 when it has districts); province and the codes are the official pre-2025 ones;
    # new_* are the units since the 1 July 2025 reform (34 provinces, no district level).
    province: Mapped[OptStr]
    district_code: Mapped[OptStr]
    ward_code: Mapped[OptStr]
    new_province: Mapped[OptStr]
    new_ward: Mapped[OptStr]
    new_ward_code: Mapped[OptStr]


class ListMember(Base):
    """Membership of a recipient in a named list (``cantho-2024/ninh-kieu``)."""

    __tablename__ = "list_members"
    __table_args__ = (UniqueConstraint("list_name", "recipient_id"),)

    id: Mapped[IntPK]
    #: no index of its own: the unique constraint's index leads with it (migration 0013)
    list_name: Mapped[str] = mapped_column(String(255))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id"), index=True)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"), nullable=True)


class Import(Base):
    """One import of one or more files; the counts always add up:
    ``rows_read = imported + rejected + duplicates``."""

    __tablename__ = "imports"

    id: Mapped[IntPK]
    list_name: Mapped[str] = mapped_column(String(255))
    files: Mapped[list[Any]] = mapped_column(JSON)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    operator: Mapped[OptStr]
    created_at: Mapped[Timestamp]


class ImportIssue(Base):
    """A rejected or duplicate row: file, line, masked raw value and a reason code."""

    __tablename__ = "import_issues"

    id: Mapped[IntPK]
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # rejected | duplicate
    file: Mapped[str] = mapped_column(Text)
    line: Mapped[int | None] = mapped_column(Integer, nullable=True)
    raw_masked: Mapped[OptStr]
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id"), nullable=True)
    sheet: Mapped[str | None] = mapped_column(Text, nullable=True)


class Suppression(Base):
    """The opt-out (suppression) list: numbers (E.164) or Zalo user ids (digits, no ``+``) that
    must never be sent to. ``channel`` None stops every channel; ``"zalo"`` (a Zalo unfollow)
    or ``"sms"`` stops only that channel (migration 0010). ``evidence`` is what the citizen
    sent (the reply's text, the Zalo event name) and ``inbound_id`` the
    :class:`InboundMessage` it came from, for opt-outs made by a reply (issue #20)."""

    __tablename__ = "suppressions"

    e164: Mapped[str] = mapped_column(String(80), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[Timestamp]
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)
    evidence: Mapped[str | None] = mapped_column(Text, nullable=True)
    inbound_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Run(Base):
    """One send of a campaign: a manual launch, a scheduled daily run or a resend.

    Scheduled runs are unique per (campaign, run date in Asia/Ho_Chi_Minh): two scheduler
    processes on one database create one run.
    """

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("campaign_id", "run_key"),)

    id: Mapped[IntPK]
    campaign_id: Mapped[CampaignFK]
    run_key: Mapped[str] = mapped_column(String(64))  # "launch:<id>", "day:2024-07-30", "resend:<n>"
    kind: Mapped[str] = mapped_column(String(16))  # launch | scheduled | resend
    run_date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="created", index=True)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    gateway: Mapped[str] = mapped_column(String(32))
    text_sha256: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[Timestamp]
    created_at: Mapped[Timestamp]
    started_at: Mapped[OptTimestamp]
    finished_at: Mapped[OptTimestamp]
    operator: Mapped[OptStr]
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


#: The predicates of the partial delivery indexes, as SQL text. A query that should use one of
#: these indexes repeats its text word for word (SQLite uses a partial index only when the
#: query's WHERE contains the index's terms as written). Written with ``<>`` rather than
#: ``NOT IN (...)``: SQLite tests an IN list through an ephemeral table built for every row
#: written, which made an unmatched partial index cost as much as a full one.
#: Deliveries that have left the queue: neither ``queued`` nor ``sending``.
SETTLED_SQL = "status <> 'queued' AND status <> 'sending'"
#: Deliveries listed in the failure reasons (failed, undelivered, unknown, skipped, opted_out).
REASON_SQL = SETTLED_SQL + " AND status <> 'sent' AND status <> 'delivered'"
#: Deliveries that reached the phone.
REACHED_SQL = "status = 'delivered'"
#: A ``deliveries`` row whose address has a suppression entry stopping its channel (an
#: every-channel entry or one for that channel): a correlated EXISTS on the suppressions'
#: primary key, one index probe per row. The claim sends only rows where it is false.
#: Deliveries waiting to be claimed (the partial index ``ix_deliveries_queue``).
QUEUED_SQL = "status = 'queued'"
SUPPRESSED_SQL = ("EXISTS (SELECT 1 FROM suppressions s WHERE s.e164 = deliveries.address "
                  "AND (s.channel IS NULL OR s.channel = deliveries.channel))")
#: Deliveries a provider has given an id (receipts are matched on it).
HAS_PROVIDER_ID_SQL = "provider_message_id IS NOT NULL"


class Delivery(Base):
    """One message to one recipient on one channel in one run: the ledger row.

    The unique key (campaign, recipient, channel, dedupe_key) is what makes a double send
    impossible: ``dedupe_key`` is ``once`` for a once-per-campaign send, ``day:YYYY-MM-DD`` for
    repeating campaigns and ``resend:<run id>`` for an explicit resend. Address, district, ward
    and carrier are copied from the recipient so reports read one table.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "recipient_id", "channel", "dedupe_key"),
        Index("ix_deliveries_run_status", "run_id", "status"),
        # The queue: a run's queued rows in id order, which is how a claim takes them
        # (states.claim: ... WHERE run_id = ? AND status = 'queued' ORDER BY id LIMIT n). On
        # PostgreSQL, without it the claim walked the primary key past every row already sent,
        # so each batch cost more than the last (a million-row run: quadratic). Partial: a row
        # enters it once, when queued, and leaves it when claimed.
        Index("ix_deliveries_queue", "run_id", "id",
              sqlite_where=sql_text(QUEUED_SQL), postgresql_where=sql_text(QUEUED_SQL)),
        # Report indexes (outreach/reports.py; benchmarks/report_1m.py): covering, each in the
        # order of its GROUP BY, so the report over 1,000,000 deliveries reads no table row and
        # sorts nothing. They are partial: only deliveries that have left the queue
        # (SETTLED_SQL), so the dispatcher's two moves per message (queued -> sending -> sent)
        # touch none of them until the outcome, which roughly halves the cost of recording a
        # send (benchmarks/dispatch_throughput.py). Queued and in-flight rows are counted from
        # ix_deliveries_run_status.
        Index("ix_deliveries_report", "campaign_id", "district", "ward", "carrier", "channel",
              "gateway", "status", "segments", "cost_vnd",
              sqlite_where=sql_text(SETTLED_SQL), postgresql_where=sql_text(SETTLED_SQL)),
        Index("ix_deliveries_reached", "campaign_id", "recipient_id",
              sqlite_where=sql_text(REACHED_SQL), postgresql_where=sql_text(REACHED_SQL)),
        Index("ix_deliveries_campaign_status_time", "campaign_id", "status", "sending_at",
              "queued_at", sqlite_where=sql_text(SETTLED_SQL), postgresql_where=sql_text(SETTLED_SQL)),
        Index("ix_deliveries_campaign_status_reason", "campaign_id", "status", "gateway",
              "error_code", "error_reason",
              sqlite_where=sql_text(REASON_SQL), postgresql_where=sql_text(REASON_SQL)),
        Index("ix_deliveries_address", "address"),
        Index("ix_deliveries_provider_message_id", "provider_message_id",
              sqlite_where=sql_text(HAS_PROVIDER_ID_SQL), postgresql_where=sql_text(HAS_PROVIDER_ID_SQL)),
    )

    id: Mapped[IntPK]
    campaign_id: Mapped[str] = mapped_column(String(64), ForeignKey("campaigns.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id"), index=True)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    gateway: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(80))
    district: Mapped[OptStr]
    ward: Mapped[OptStr]
    carrier: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    body: Mapped[str | None] = mapped_column(Text, nullable=True)  # only when personalised
    #: the ZNS template data rendered for this recipient (JSON object of NFC strings), only
    #: when the channel's ``template_fields`` use personalisation (migration 0011)
    template_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    encoding: Mapped[str | None] = mapped_column(String(8), nullable=True)
    segments: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cost_vnd: Mapped[float | None] = mapped_column(Float, nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    #: 24 random hex characters (96 bits) set when the delivery is first claimed
    #: (:func:`outreach.ledger.states.claim`) and carried in its status-callback URL: a receipt names
    #: the delivery by id *and* token, so one meant for another install, an earlier database or
    #: a delivery id that does not exist yet can never attach here (issue #15). None for rows
    #: claimed before migration 0004: their receipts are matched as before.
    receipt_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    provider_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[OptTimestamp]
    queued_at: Mapped[Timestamp]
    sending_at: Mapped[OptTimestamp]
    sent_at: Mapped[OptTimestamp]
    delivered_at: Mapped[OptTimestamp]
    final_at: Mapped[OptTimestamp]
    updated_at: Mapped[Timestamp]


class DeliveryEvent(Base):
    """Append-only history of a delivery: every state change and every receipt, raw payload kept."""

    __tablename__ = "delivery_events"

    id: Mapped[IntPK]
    #: the delivery's id. Not a foreign key (migration 0014): events are written only by
    #: :mod:`outreach.ledger.states`, each from the statement that moved its row, and no delivery
    #: is ever deleted; on PostgreSQL the key's check locked the delivery row once more for every
    #: event (four workers: 17,234-19,120 -> 19,267-22,430 msg/s). ``outreach db check`` finds an
    #: orphan.
    delivery_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                             index=True)
    at: Mapped[Timestamp]
    source: Mapped[str] = mapped_column(String(16))  # dispatcher | webhook | sync | reconcile | operator
    old_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    new_status: Mapped[str] = mapped_column(String(16))
    applied: Mapped[bool] = mapped_column(Boolean, default=True)
    provider_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class PendingReceipt(Base):
    """A receipt that arrived before its delivery row (or provider id) was stored.

    Kept until the row appears; :func:`outreach.receipts.writer.apply_pending` replays it.
    """

    __tablename__ = "pending_receipts"
    __table_args__ = (UniqueConstraint("gateway", "event_key"),)

    id: Mapped[IntPK]
    gateway: Mapped[str] = mapped_column(String(32))
    event_key: Mapped[str] = mapped_column(String(255))
    provider_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    delivery_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[Timestamp]
    applied_at: Mapped[OptTimestamp]


class RejectedReceipt(Base):
    """A signed receipt that was refused and never applied: it names a delivery whose provider
    message id or receipt token is another (``provider-id-mismatch``, ``token-mismatch``), or
    it cannot be tied to our provider id at all (``unverifiable``). Counted per ``reason`` by
    :func:`outreach.receipts.writer.receipt_counts`. ``payload`` is the receipt as parsed (numbers
    masked, as in delivery events)."""

    __tablename__ = "rejected_receipts"

    id: Mapped[IntPK]
    gateway: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32), index=True)
    delivery_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[Timestamp]


class WebhookEvent(Base):
    """A signed provider event already received (Zalo: the SHA-256 of its body), kept for the
    replay window so the same event is refused when it comes again (issue #17)."""

    __tablename__ = "webhook_events"

    gateway: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[Timestamp] = mapped_column(UTCDateTime(), index=True)


class GatewayToken(Base):
    """OAuth tokens of a gateway (Zalo): the single-use refresh token is stored before use.

    ``version`` increases on every refresh so concurrent workers refresh exactly once
    (compare-and-swap on the version).
    """

    __tablename__ = "gateway_tokens"

    gateway: Mapped[str] = mapped_column(String(32), primary_key=True)
    access_token: Mapped[str] = mapped_column(Text)
    refresh_token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[Timestamp]
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[Timestamp]


class RateLimit(Base):
    """A gateway's rate limit shared by all workers: the theoretical arrival time of its next
    free slot (GCRA, :class:`outreach.sending.ratelimit.SharedRateLimiter`), epoch microseconds."""

    __tablename__ = "rate_limits"

    gateway: Mapped[str] = mapped_column(String(32), primary_key=True)
    tat_us: Mapped[int] = mapped_column(BigInteger, default=0)


class Schedule(Base):
    """A campaign's daily schedule as registered with ``outreach schedule add``."""

    __tablename__ = "schedules"

    campaign_id: Mapped[str] = mapped_column(String(64), ForeignKey("campaigns.id"), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class AuditEntry(Base):
    """An operator action: who, when, what, with the campaign text hash."""

    __tablename__ = "audit_log"

    id: Mapped[IntPK]
    at: Mapped[Timestamp]
    operator: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32), index=True)
    campaign_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    text_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class User(Base):
    """A web application account (``outreach users add``; outreach/users.py).

    ``role`` is one of ``viewer``, ``operator``, ``approver``, ``admin`` (outreach.users.ROLES);
    ``password_hash`` is an Argon2id hash (argon2-cffi), None for an account that signs in only
    through the trusted reverse-proxy header. A disabled account cannot sign in and cannot approve.
    """

    __tablename__ = "users"

    id: Mapped[IntPK]
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[OptStr]
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    last_login_at: Mapped[OptTimestamp]


class Approval(Base):
    """A maker–checker approval of a campaign (outreach/approvals.py).

    Prepared (``prepared_by``) against the NFC text hash and the recipient list files (name,
    SHA-256 of the bytes, data rows: ``lists``; ``lists_sha256`` over them; ``rows`` their sum),
    then approved by another person (``approved_by``). ``status``: ``pending``, ``approved``,
    ``withdrawn``. An approval whose text or lists no longer match the campaign is void.
    """

    __tablename__ = "approvals"

    id: Mapped[IntPK]
    campaign_id: Mapped[CampaignFK]
    text_sha256: Mapped[str] = mapped_column(String(64))
    lists: Mapped[list[Any]] = mapped_column(JSON)
    lists_sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    prepared_by: Mapped[str] = mapped_column(String(128))
    prepared_at: Mapped[Timestamp]
    approved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    approved_at: Mapped[OptTimestamp]
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class Setting(Base):
    """A setting changed only by an audited command (``outreach approvals relax|require``)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[Timestamp]


class CarrierRequest(Base):
    """One operator asked to broadcast a campaign (outreach.carriers): the letter (number, date,
    text hashes offered) and the follow-up, each step with its day (Asia/Ho_Chi_Minh)."""

    __tablename__ = "carrier_requests"
    __table_args__ = (UniqueConstraint("campaign_id", "carrier"),)

    id: Mapped[IntPK]
    campaign_id: Mapped[CampaignFK]
    carrier: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    letter_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    letter_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    text_sha256: Mapped[str] = mapped_column(String(64))
    short_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    drafted_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    requested_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    requested_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    confirmed_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    broadcast_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    results_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    declined_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class CarrierResult(Base):
    """A figure an operator reported: subscribers messaged on one day in one area (``area_code``
    ``""`` when the operator gave no area). Counts, not per-person receipts: never part of reach."""

    __tablename__ = "carrier_results"
    __table_args__ = (UniqueConstraint("campaign_id", "carrier", "day", "area_code"),)

    id: Mapped[IntPK]
    campaign_id: Mapped[CampaignFK]
    carrier: Mapped[str] = mapped_column(String(32))
    day: Mapped[dt.date] = mapped_column(Date)
    area_code: Mapped[str] = mapped_column(String(16), default="")
    area_name: Mapped[str] = mapped_column(String(255), default="")
    sent: Mapped[int] = mapped_column(BigInteger)
    delivered: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    source: Mapped[str] = mapped_column(String(255))
    recorded_at: Mapped[Timestamp]


class SmppSegment(Base):
    """One ``submit_sm`` of a concatenated SMS sent over SMPP (:mod:`outreach.gateways.smpp`)
    and its delivery receipt: a message of several segments is ``delivered`` only when every
    segment's receipt says so. ``delivery_id`` and ``part``/``parts`` are None for a receipt
    that arrived before its segment was recorded (kept until it is)."""

    __tablename__ = "smpp_segments"
    __table_args__ = (UniqueConstraint("account", "message_id"),)

    id: Mapped[IntPK]
    account: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(65))
    delivery_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    first_message_id: Mapped[str | None] = mapped_column(String(65), nullable=True)
    part: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stat: Mapped[str | None] = mapped_column(String(16), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[Timestamp]
    receipt_at: Mapped[OptTimestamp]


class SmppInbound(Base):
    """A mobile-originated ``deliver_sm`` (a citizen's reply) received on an SMPP session, kept
    for the inbound-message features. ``source`` is E.164; ``text`` is NFC; ``ref``/``part``/
    ``parts`` come from the UDH or SAR TLVs of a concatenated reply (None for one part)."""

    __tablename__ = "smpp_inbound"

    id: Mapped[IntPK]
    account: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32), index=True)
    destination: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    data_coding: Mapped[int] = mapped_column(Integer)
    ref: Mapped[int | None] = mapped_column(Integer, nullable=True)
    part: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    received_at: Mapped[Timestamp]
    #: the :class:`InboundMessage` this part was recorded as (None until it is; migration 0010)
    inbound_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class InboundMessage(Base):
    """A citizen's reply or Zalo event, on any channel, stored once per provider message
    (:mod:`outreach.receipts.inbound`, issue #20; migration 0010).

    ``gateway`` + ``provider_message_id`` is unique (Twilio ``MessageSid``, Zalo ``msg_id`` or
    the event's own key, eSMS ``smsid``, SMPP ``<account>#<smpp_inbound id>``): a repeated
    delivery of the same message adds nothing. ``sender`` is the E.164 number, or for Zalo the
    user id (digits); once purged a keyed hash ``h:…``. ``kind``: ``optout``, ``optin``,
    ``unfollow`` or ``message`` (the inbox); ``keyword`` the keyword of the table that matched.
    ``campaign_id``/``delivery_id``: the latest delivery to that person, the campaign the
    reply most likely answers. ``confirmation``: None (none to send), ``pending``,
    ``sending``, ``sent``, ``failed`` or ``unknown`` (sent at most once)."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("gateway", "provider_message_id"),
                      Index("ix_inbound_messages_received_at", "received_at"))

    id: Mapped[IntPK]
    channel: Mapped[str] = mapped_column(String(16))
    gateway: Mapped[str] = mapped_column(String(32))
    provider_message_id: Mapped[str] = mapped_column(String(160))
    sender: Mapped[str] = mapped_column(String(80), index=True)
    zalo_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    recipient_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    destination: Mapped[str | None] = mapped_column(String(64), nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    keyword: Mapped[str | None] = mapped_column(String(64), nullable=True)
    campaign_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    delivery_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    received_at: Mapped[Timestamp]
    confirmation: Mapped[str | None] = mapped_column(String(16), nullable=True)
    confirmation_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    confirmation_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    confirmation_detail: Mapped[str | None] = mapped_column(String(255), nullable=True)
    confirmed_at: Mapped[OptTimestamp]
    purged_at: Mapped[OptTimestamp]

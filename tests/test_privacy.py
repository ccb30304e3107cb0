"""Personal-data purge: numbers of finished campaigns hashed, counts and reports unchanged."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from sqlalchemy import func, insert, select

from outreach.reporting import privacy, reports
from outreach.ledger.db import Database
from outreach.ledger.models import (AuditEntry, Campaign, Delivery, DeliveryEvent, ListMember,
                             PendingReceipt, Recipient, Run, Suppression)
from tests.test_reports import (CID, D29, QUEUED_1, ROWS, _spec, cli, db, phone,  # noqa: F401
                                seed, vn)

KEY = "k" * 20 + "-test-purge-key"
OTHER = "hanoi-2025"
HASH = re.compile(r"^h:[0-9a-f]{32}$")
#: A's ledger without the rows that keep a campaign open (queued, unknown).
FINISHED_ROWS = [r for r in ROWS if r.status not in ("queued", "unknown")]


@pytest.fixture
def two_campaigns(db: Database) -> Database:  # noqa: F811
    """Campaign A (cantho, finished on 31 July 2024) and campaign B (running), sharing people:
    r1 has a delivery in B, r2 is a member of B's list, r19 is only in B."""
    seed(db, FINISHED_ROWS)
    spec_b = dataclasses.replace(_spec(), id=OTHER, list_name=OTHER)
    with db.engine.begin() as conn:
        from outreach.ledger import runs

        runs.sync_campaign(conn, spec_b, now=QUEUED_1)
        conn.execute(insert(Recipient).values(id=19, e164=phone(19), name="Người 19",
                                              district="Ba Đình", created_at=QUEUED_1))
        for r in (1, 2, 19):
            conn.execute(insert(ListMember).values(list_name=OTHER, recipient_id=r))
        run_b = conn.execute(insert(Run).values(
            campaign_id=OTHER, run_key="launch:b", kind="launch", run_date=QUEUED_1.date(),
            status="running", gateway="twilio", text_sha256=spec_b.text_sha256, due_at=QUEUED_1,
            created_at=QUEUED_1, options={})).inserted_primary_key[0]
        for r in (1, 19):
            conn.execute(insert(Delivery).values(
                campaign_id=OTHER, run_id=run_b, recipient_id=r, dedupe_key="once",
                channel="sms", gateway="twilio", address=phone(r), status="queued", segments=4,
                cost_vnd=3200.0, attempts=0, queued_at=QUEUED_1, updated_at=QUEUED_1))
        # raw payloads keep the number: a Twilio receipt and a Zalo one (84… without +)
        d3 = conn.execute(select(Delivery.id).where(Delivery.address == phone(3))).scalar_one()
        conn.execute(insert(DeliveryEvent).values(
            delivery_id=d3, at=D29, source="webhook", old_status="sent", new_status="delivered",
            applied=True, detail=json.dumps({"To": phone(3), "MessageStatus": "delivered"})))
        conn.execute(insert(DeliveryEvent).values(
            delivery_id=d3, at=D29, source="webhook", old_status="delivered",
            new_status="delivered", applied=False,
            detail='{"recipient": {"id": "84905550003"}, "raw": "To=%2B84905550003"}'))
        conn.execute(insert(PendingReceipt).values(
            gateway="twilio", event_key="SM1", provider_message_id="SM1", delivery_id=d3,
            payload={"To": phone(3), "national": "0905550003"}, received_at=D29, applied_at=D29))
        conn.execute(insert(Suppression).values(e164=phone(12), reason="citizen-request",
                                                source="test", created_at=D29))
    return db


def _report(db: Database, cid: str = CID) -> dict:
    with reports.report_connection(db.engine) as conn:
        data = reports.campaign_report(conn, cid)
    data.pop("generated_at")
    return data


def _purge(db: Database, **kw: object) -> privacy.PurgeResult:
    args = dict(older_than_days=90, key=KEY.encode(), operator="thu.pham",
                now=vn(31, 12, month=12))
    args.update(kw)
    return privacy.purge(db, **args)  # type: ignore[arg-type]


def test_purge_hashes_numbers_and_keeps_every_count(two_campaigns: Database) -> None:
    db = two_campaigns
    before_a, before_b = _report(db), _report(db, OTHER)
    res = _purge(db)
    assert res.campaigns == [CID]
    assert res.not_eligible == {OTHER: "run #3 is running"}
    assert res.deliveries == len(FINISHED_ROWS) == 18
    # A's 18 people (deliveries or A's list); r1 and r2 are still in campaign B
    assert res.recipients == 16 and res.recipients_kept == 2
    assert _report(db) == before_a and _report(db, OTHER) == before_b

    key = KEY.encode()
    with db.engine.connect() as conn:
        a = conn.execute(select(Delivery.recipient_id, Delivery.address, Delivery.body)
                         .where(Delivery.campaign_id == CID)).all()
        b = dict(conn.execute(select(Delivery.recipient_id, Delivery.address)
                              .where(Delivery.campaign_id == OTHER)).all())
        people = {r.id: r for r in conn.execute(select(Recipient.id, Recipient.e164,
                                                       Recipient.name))}
        members = set(conn.execute(select(ListMember.list_name, ListMember.recipient_id)).all())
        status = dict(conn.execute(select(Campaign.id, Campaign.status)).all())
        suppressed = list(conn.execute(select(Suppression.e164)).scalars())
        details = list(conn.execute(select(DeliveryEvent.detail)).scalars())
        receipt = conn.execute(select(PendingReceipt.payload)).scalar_one()
    assert all(HASH.match(addr) and body is None for _, addr, body in a)
    assert {(r, addr) for r, addr, _ in a} == {(r, privacy.hash_number(key, phone(r)))
                                               for r, _, _ in a}
    assert b == {1: phone(1), 19: phone(19)}  # the running campaign is untouched
    assert people[1].e164 == phone(1) and people[1].name == "Người 1"  # delivery in B
    assert people[2].e164 == phone(2) and people[2].name == "Người 2"  # member of B's list
    assert people[19].e164 == phone(19)
    for r in (3, 4, 5, 8, 9, 12, 16, 18):  # 8 and 16: in A's list, no delivery left
        assert people[r].e164 == privacy.hash_number(key, phone(r)) and people[r].name is None
    # purged people leave A's list (no later campaign can address a hash); B's list is intact
    assert members == {("hanoi-2025", 1), ("hanoi-2025", 2), ("hanoi-2025", 19),
                       ("cantho-2024", 1), ("cantho-2024", 2)}
    assert status == {CID: "purged", OTHER: "active"}
    assert suppressed == [phone(12)]  # the opt-out list keeps working on the plain number
    assert not any("0905550003" in d or "84905550003" in d for d in details)
    assert json.dumps(receipt).count(privacy.hash_number(key, phone(3))) == 2

    with db.engine.connect() as conn:
        entries = conn.execute(select(AuditEntry.operator, AuditEntry.campaign_id,
                                      AuditEntry.text_sha256, AuditEntry.details)
                               .where(AuditEntry.action == "purge")
                               .order_by(AuditEntry.id)).all()
    assert [(e.operator, e.campaign_id) for e in entries] == [("thu.pham", CID), ("thu.pham", None)]
    assert entries[0].text_sha256 == _spec().text_sha256
    assert entries[0].details["deliveries"] == 18
    assert entries[1].details["key_id"] == privacy.key_id(key) and KEY not in json.dumps(
        entries[1].details)


def test_lookup_by_the_old_number_finds_nothing_without_the_key(
        two_campaigns: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    db = two_campaigns
    code, out, _ = cli(db, "deliveries", "lookup", "0905550003", "--format", "json")
    assert len(json.loads(out)["deliveries"]) == 1
    _purge(db)
    code, out, err = cli(db, "deliveries", "lookup", "0905550003", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["deliveries"] == []
    monkeypatch.setenv("OUTREACH_PURGE_KEY", KEY)
    code, out, err = cli(db, "deliveries", "lookup", "0905550003", "--key-env",
                         "OUTREACH_PURGE_KEY", "--format", "json")
    found = json.loads(out)["deliveries"]
    assert [(d["campaign"], d["status"], d["purged"]) for d in found] == [
        (CID, "delivered", True)]
    # r1 is still in campaign B: its number finds B's delivery, A's only with the key
    code, out, _ = cli(db, "deliveries", "lookup", "0905550001", "--format", "json")
    assert [d["campaign"] for d in json.loads(out)["deliveries"]] == [OTHER]


def test_recipient_still_in_an_unfinished_campaign_is_not_purged(two_campaigns: Database) -> None:
    db = two_campaigns
    _purge(db)
    with db.engine.connect() as conn:
        kept = dict(conn.execute(select(Recipient.id, Recipient.e164)
                                 .where(Recipient.id.in_([1, 2, 19]))).all())
    assert kept == {1: phone(1), 2: phone(2), 19: phone(19)}


def test_dry_run_changes_nothing_and_needs_no_key(two_campaigns: Database,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = two_campaigns
    monkeypatch.delenv("OUTREACH_PURGE_KEY", raising=False)
    code, out, err = cli(db, "privacy", "purge", "--older-than", "90", "--dry-run")
    assert code == 0, err
    assert f"would purge 1 campaign: {CID}" in out
    assert "deliveries: 18 numbers" in out and "recipients: 16 numbers" in out
    assert f"kept {OTHER}: run #3 is running" in out
    assert "a real purge needs the key in $OUTREACH_PURGE_KEY" in out
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)
                            .where(Delivery.address.startswith("h:"))).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one() == 0


def test_refuses_without_a_key_or_with_a_short_one(two_campaigns: Database,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = two_campaigns
    monkeypatch.delenv("OUTREACH_PURGE_KEY", raising=False)
    code, out, err = cli(db, "privacy", "purge", "--older-than", "90")
    assert code == 1 and "no purge key: set OUTREACH_PURGE_KEY" in err
    assert "Traceback" not in err
    monkeypatch.setenv("MY_KEY", "short")
    code, _, err = cli(db, "privacy", "purge", "--older-than", "90", "--key-env", "MY_KEY")
    assert code == 1 and "is 5 bytes; at least 16" in err
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)
                            .where(Delivery.address.startswith("h:"))).scalar_one() == 0


def test_cli_purge_then_again_is_idempotent(two_campaigns: Database,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    db = two_campaigns
    monkeypatch.setenv("PURGE_SECRET", KEY)
    code, out, err = cli(db, "--operator", "thu.pham", "privacy", "purge", "--older-than", "90",
                         "--key-env", "PURGE_SECRET")
    assert code == 0, err
    assert f"purged 1 campaign: {CID}" in out
    assert "raw payloads scrubbed: 2 events, 1 pending receipts" in out
    code, out, err = cli(db, "privacy", "purge", "--older-than", "90", "--key-env",
                         "PURGE_SECRET", "--format", "json")
    again = json.loads(out)
    assert again["campaigns"] == [CID] and again["deliveries"] == 0 and again["recipients"] == 0


def test_recent_or_open_campaigns_are_kept(db: Database) -> None:  # noqa: F811
    seed(db)  # has a queued and an unknown delivery
    res = _purge(db)
    assert res.campaigns == []
    assert "2 deliveries are still queued, sending or unknown" in res.not_eligible[CID]
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)
                            .where(Delivery.address.startswith("h:"))).scalar_one() == 0


def test_not_old_enough(db: Database) -> None:  # noqa: F811
    seed(db, FINISHED_ROWS)
    res = _purge(db, older_than_days=90, now=vn(1, 12, month=9))  # a month after the last send
    assert res.campaigns == []
    assert "less than 90 days ago" in res.not_eligible[CID]
    res = _purge(db, older_than_days=30, now=vn(1, 12, month=9))
    assert res.campaigns == [CID]


def test_hash_is_keyed_and_stable() -> None:
    k1, k2 = b"a" * 16, b"b" * 16
    h = privacy.hash_number(k1, "+84905550003")
    assert HASH.match(h) and h == privacy.hash_number(k1, "+84905550003")
    assert h != privacy.hash_number(k2, "+84905550003")
    assert h != privacy.hash_number(k1, "+84905550004")
    assert privacy.number_variants("+84905550003") == [
        "%2B84905550003", "+84905550003", "84905550003", "0905550003"]


def test_same_number_purged_twice_gets_a_distinct_recipient_value(db: Database) -> None:  # noqa: F811
    seed(db, FINISHED_ROWS)
    _purge(db)
    with db.engine.begin() as conn:  # the number is imported again later as a new recipient
        conn.execute(insert(Recipient).values(id=50, e164=phone(3), name="Người 3",
                                              created_at=vn(1, 8, month=12)))
        conn.execute(insert(ListMember).values(list_name="cantho-2024", recipient_id=50))
    res = _purge(db, now=vn(1, 12, month=12))
    assert res.recipients == 1
    with db.engine.connect() as conn:
        values = dict(conn.execute(select(Recipient.id, Recipient.e164)
                                   .where(Recipient.id.in_([3, 50]))).all())
    h = privacy.hash_number(KEY.encode(), phone(3))
    assert values == {3: h, 50: f"{h}:50"}

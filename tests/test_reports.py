"""Delivery reports against a seeded ledger with known outcomes; exports, resend selection, audit."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import insert, select, update

from outreach import i18n
from outreach.input import campaigns
from outreach.ledger import runs, states
from outreach.reporting import reports
from outreach.cli import main
from outreach.clock import VN_TZ, FakeClock
from outreach.ledger.db import Database
from outreach.ledger.models import (AuditEntry, Delivery, DeliveryEvent, ListMember, Recipient, Run,
                             Suppression)
from tests.conftest import CAMPAIGN_FILE, PLAN_TEXT
from tests.pg import pg_db, pg_url  # noqa: F401

CID = "cantho-2024-pcmbn"
LIST = "cantho-2024"
UTC = dt.timezone.utc


def vn(day: int, hour: int, minute: int = 0, month: int = 7) -> dt.datetime:
    """An instant given in Cần Thơ's time (2024)."""
    return dt.datetime(2024, month, day, hour, minute, tzinfo=VN_TZ)


QUEUED_1 = vn(29, 7, 30)
D29 = vn(29, 8, 0)
D30 = vn(30, 6, 30)  # 29 July 23:30 UTC: a UTC day would count it on the 29th
D31 = vn(31, 9, 0)
QUEUED_2 = vn(31, 8, 55)

NK, CR, PD = "Ninh Kiều", "Cái Răng", "Phong Điền"
#: recipient -> (district, ward, carrier). Numbers are +8490555 0001.. (synthetic).
RECIPIENTS: dict[int, tuple[str | None, str | None, str | None]] = {
    1: (NK, "An Hòa", "Viettel"), 2: (NK, "An Hòa", "Viettel"), 3: (NK, "An Hòa", "MobiFone"),
    4: (NK, "An Hòa", "MobiFone"), 5: (NK, "An Hòa", "VinaPhone"), 6: (NK, "An Khánh", "Viettel"),
    7: (NK, "An Khánh", "Viettel"), 8: (NK, "An Khánh", "MobiFone"), 9: (CR, "Ba Láng", "Viettel"),
    10: (CR, "Ba Láng", "Viettel"), 11: (CR, "Ba Láng", "VinaPhone"),
    12: (CR, "Ba Láng", "VinaPhone"), 13: (CR, "Ba Láng", "Vietnamobile"),
    14: (PD, "Nhơn Ái", "Viettel"), 15: (PD, "Nhơn Ái", "MobiFone"),
    16: (PD, "Nhơn Ái", "MobiFone"), 17: (PD, None, None), 18: (None, None, "Viettel"),
}


def phone(r: int) -> str:
    return f"+8490555{r:04d}"


@dataclass(frozen=True)
class Row:
    """One seeded delivery: recipient, state, when it went to the gateway (None: never)."""

    r: int
    status: str
    at: dt.datetime | None
    code: str | None = None
    reason: str | None = None
    run: int = 1
    channel: str = "sms"
    gateway: str = "twilio"


#: The ledger. Every expected figure in this file is counted by hand from this table.
ROWS = [
    Row(1, "delivered", D29), Row(2, "delivered", D29), Row(3, "delivered", D29),
    Row(4, "failed", D29, "21211", "invalid-number"),
    Row(5, "failed", D29, "21211", "invalid-number"),
    Row(5, "delivered", D31, run=2),  # resent, then reached
    Row(6, "delivered", D30), Row(7, "undelivered", D30, "30005", "unknown-handset"),
    Row(8, "unknown", D30, None, "outcome-unknown"),
    Row(9, "failed", D29, "-118", "no-zalo-account", channel="zalo", gateway="zalo"),
    Row(9, "delivered", D29),  # SMS fallback after Zalo failed
    Row(10, "sent", D29), Row(11, "sent", D30),
    Row(12, "opted_out", None, None, "suppressed"),
    Row(13, "failed", D29, "30007", "carrier-filtered"),
    Row(14, "delivered", D30), Row(15, "skipped", None, None, "cancelled"),
    Row(16, "queued", None), Row(17, "undelivered", D30, "30003", "unreachable"),
    Row(18, "delivered", D29),
]


def _spec() -> campaigns.CampaignSpec:
    return campaigns.load(CAMPAIGN_FILE)


def seed(db: Database, rows: list[Row] = ROWS, *, cid: str = CID,
         recipients: dict[int, tuple[str | None, str | None, str | None]] = RECIPIENTS,
         run_status: str = "completed", spec: campaigns.CampaignSpec | None = None,
         ) -> dict[tuple[int, int, str], int]:
    """Write the campaign row (from its file), recipients, list members, runs and deliveries.

    Segments 4 and 3,200 VND on every SMS row, 1 and 300 VND on Zalo rows, as create_run plans
    them (the report must bill accepted rows only). Returns (recipient, run, channel) -> delivery id.
    """
    spec = spec or _spec()
    ids: dict[tuple[int, int, str], int] = {}
    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=QUEUED_1)
        existing = set(conn.execute(select(Recipient.id)).scalars())
        for r, (district, ward, carrier) in recipients.items():
            if r in existing:
                continue
            conn.execute(insert(Recipient).values(id=r, e164=phone(r), carrier=carrier,
                                                  name=f"Người {r}", district=district, ward=ward,
                                                  created_at=QUEUED_1))
            conn.execute(insert(ListMember).values(list_name=spec.list_name, recipient_id=r))
        run_ids = {}
        for n, (kind, queued) in {1: ("launch", QUEUED_1), 2: ("resend", QUEUED_2)}.items():
            run_ids[n] = conn.execute(insert(Run).values(
                campaign_id=cid, run_key=f"{kind}:{n}", kind=kind, run_date=queued.date(),
                status=run_status, gateway="twilio", text_sha256=spec.text_sha256, due_at=queued,
                created_at=queued, finished_at=queued + dt.timedelta(hours=2),
                options={})).inserted_primary_key[0]
        for row in rows:
            district, ward, carrier = recipients[row.r]
            queued = QUEUED_1 if row.run == 1 else QUEUED_2
            segs, cost = (1, 300.0) if row.channel == "zalo" else (4, 3200.0)
            at = row.at
            ids[(row.r, row.run, row.channel)] = conn.execute(insert(Delivery).values(
                campaign_id=cid, run_id=run_ids[row.run], recipient_id=row.r,
                dedupe_key="once" if row.run == 1 else f"resend:{run_ids[2]}",
                channel=row.channel, gateway=row.gateway, address=phone(row.r),
                district=district, ward=ward, carrier=carrier, status=row.status, segments=segs,
                cost_vnd=cost, error_code=row.code, error_reason=row.reason,
                attempts=1 if at else 0, queued_at=queued, sending_at=at,
                sent_at=at if row.status in states.ACCEPTED_STATES else None,
                delivered_at=at + dt.timedelta(seconds=7) if row.status == "delivered" else None,
                final_at=(at or queued) if row.status in states.FINAL_STATES else None,
                updated_at=(at or queued) + dt.timedelta(seconds=7),
                provider_message_id=f"SM{row.r:04d}{row.run}{row.channel}" if at else None,
            )).inserted_primary_key[0]
    return ids


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'reports.db'}")
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


def cli(db: Database, *args: str, operator: str | None = None) -> tuple[int, str, str]:
    base = ["--database-url", db.url]
    if operator:
        base += ["--operator", operator]
    r = CliRunner().invoke(main, [*base, *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def report_of(db: Database, **kw: Any) -> dict[str, Any]:
    with reports.report_connection(db.engine) as conn:
        return reports.campaign_report(conn, CID, **kw)


# --- the numbers -------------------------------------------------------------------------------

EXPECTED_BY_STATUS = {"queued": 1, "sending": 0, "sent": 2, "delivered": 8, "undelivered": 2,
                      "failed": 4, "skipped": 1, "opted_out": 1, "unknown": 1}
EXPECTED_BY_DISTRICT = {
    NK: {"delivered": 5, "failed": 2, "undelivered": 1, "unknown": 1},
    CR: {"delivered": 1, "failed": 2, "sent": 2, "opted_out": 1},
    PD: {"delivered": 1, "skipped": 1, "queued": 1, "undelivered": 1},
    "(không rõ)": {"delivered": 1},
}
EXPECTED_BY_DAY = {
    "2024-07-29": {"delivered": 5, "failed": 4, "sent": 1, "opted_out": 1, "skipped": 1,
                   "queued": 1},
    "2024-07-30": {"delivered": 2, "undelivered": 2, "unknown": 1, "sent": 1},
    "2024-07-31": {"delivered": 1},
}


def test_totals_and_outcome_groups(seeded: Database) -> None:
    check_totals(seeded)


def test_the_same_ledger_gives_the_same_report_on_postgres(pg_db: Database) -> None:
    """Every query of the report (DISTINCT subqueries, the resend condition, partial-index
    predicates) means the same on PostgreSQL: the hand-counted figures, again."""
    seed(pg_db)
    check_totals(pg_db)
    rep = report_of(pg_db)
    assert rep["by_district"] == EXPECTED_BY_DISTRICT
    assert rep["by_day"] == EXPECTED_BY_DAY


def check_totals(db: Database) -> None:
    rep = report_of(db)
    assert rep["campaign"] == CID
    assert rep["by_status"] == EXPECTED_BY_STATUS
    assert rep["deliveries"] == 20
    assert rep["recipients"] == 18  # r5 resent and r9 reached by fallback: 20 rows, 18 people
    assert rep["reached"] == 8 and rep["not_reached"] == 10
    assert rep["reach_rate"] == round(8 / 18, 4)
    assert (rep["attempted"], rep["delivered"], rep["failures"], rep["awaiting"],
            rep["not_sent"]) == (17, 8, 6, 3, 3)
    assert rep["delivery_rate"] == round(8 / 17, 4) == 0.4706
    assert rep["sent"] == 12  # accepted: sent 2 + delivered 8 + undelivered 2
    assert rep["resends"] == sum(1 for r in ROWS if r.run == 2) == 1  # r5, dedupe "resend:<run>"
    # billed: accepted rows only (12 SMS x 4 segments x 800 VND); the failed Zalo row is not
    assert rep["segments"] == 48 and rep["cost_vnd"] == 38400.0
    assert rep["first_send"] == "2024-07-29T08:00:00+07:00"
    assert rep["last_send"] == "2024-07-31T09:00:00+07:00"
    assert rep["text"] == PLAN_TEXT
    assert rep["source"] == ("126/KH-UBND ngày 25/06/2024 của Ủy ban nhân dân thành phố Cần Thơ, "
                             "mục II.6.b")
    assert rep["window"] == {"start_date": "2024-07-01", "end_date": "2024-09-30"}


def test_every_breakdown_counts_every_delivery_once(seeded: Database) -> None:
    rep = report_of(seeded)
    assert rep["by_district"] == EXPECTED_BY_DISTRICT
    assert rep["by_ward"] == {
        NK: {"An Hòa": {"delivered": 4, "failed": 2},
             "An Khánh": {"delivered": 1, "undelivered": 1, "unknown": 1}},
        CR: {"Ba Láng": EXPECTED_BY_DISTRICT[CR]},
        PD: {"Nhơn Ái": {"delivered": 1, "skipped": 1, "queued": 1},
             "(không rõ)": {"undelivered": 1}},
        "(không rõ)": {"(không rõ)": {"delivered": 1}},
    }
    assert rep["by_carrier"] == {
        "Viettel": {"delivered": 6, "undelivered": 1, "failed": 1, "sent": 1},
        "MobiFone": {"delivered": 1, "failed": 1, "unknown": 1, "skipped": 1, "queued": 1},
        "VinaPhone": {"failed": 1, "delivered": 1, "sent": 1, "opted_out": 1},
        "Vietnamobile": {"failed": 1},
        "(không rõ)": {"undelivered": 1},
    }
    assert rep["by_channel"]["zalo"] == {"failed": 1}
    assert sum(rep["by_channel"]["sms"].values()) == 19
    assert rep["by_gateway"] == {"zalo": {"failed": 1},
                                 "twilio": {k: v - (k == "failed") for k, v in
                                            EXPECTED_BY_STATUS.items() if v}}
    # the Vietnamese day, not the UTC day: the 06:30 sends of 30 July are on the 30th
    assert rep["by_day"] == EXPECTED_BY_DAY
    for key in ("by_district", "by_carrier", "by_channel", "by_gateway", "by_day"):
        assert sum(sum(c.values()) for c in rep[key].values()) == 20, key
    assert sum(sum(c.values()) for w in rep["by_ward"].values() for c in w.values()) == 20
    assert rep["cost"]["carrier"] == {
        "(không rõ)": {"segments": 4, "cost_vnd": 3200.0},
        "MobiFone": {"segments": 4, "cost_vnd": 3200.0},
        "Vietnamobile": {"segments": 0, "cost_vnd": 0.0},
        "VinaPhone": {"segments": 8, "cost_vnd": 6400.0},
        "Viettel": {"segments": 32, "cost_vnd": 25600.0},
    }
    assert sum(c["cost_vnd"] for c in rep["cost"]["district"].values()) == 38400.0


def test_failure_reasons_with_provider_codes(seeded: Database) -> None:
    reasons = report_of(seeded)["failure_reasons"]
    as_tuples = [(r["status"], r["gateway"], r["error_code"], r["error_reason"], r["count"])
                 for r in reasons]
    assert as_tuples[0] == ("failed", "twilio", "21211", "invalid-number", 2)
    assert sorted(as_tuples[1:]) == sorted([
        ("failed", "zalo", "-118", "no-zalo-account", 1),
        ("failed", "twilio", "30007", "carrier-filtered", 1),
        ("undelivered", "twilio", "30005", "unknown-handset", 1),
        ("undelivered", "twilio", "30003", "unreachable", 1),
        ("unknown", "twilio", None, "outcome-unknown", 1),
        ("opted_out", "twilio", None, "suppressed", 1),
        ("skipped", "twilio", None, "cancelled", 1),
    ])
    # every failed, undelivered, unknown, skipped and opted-out delivery, once
    assert sum(r["count"] for r in reasons) == 4 + 2 + 1 + 1 + 1


def test_since_and_until_split_the_ledger_by_vietnamese_day(seeded: Database) -> None:
    late = report_of(seeded, since=vn(30, 0))
    early = report_of(seeded, until=vn(30, 0))
    assert late["deliveries"] == 7 and early["deliveries"] == 13
    assert {k: early["by_status"][k] + late["by_status"][k] for k in EXPECTED_BY_STATUS} == \
        EXPECTED_BY_STATUS
    assert late["by_day"] == {d: v for d, v in EXPECTED_BY_DAY.items() if d >= "2024-07-30"}
    assert early["by_day"] == {"2024-07-29": EXPECTED_BY_DAY["2024-07-29"]}
    assert late["recipients"] == 7  # 5 (resend), 6, 7, 8, 11, 14, 17
    assert late["reached"] == 3  # 5, 6, 14
    assert late["first_send"] == "2024-07-30T06:30:00+07:00"
    assert late["segments"] == 4 * 6  # accepted: delivered 3 + undelivered 2 + sent 1


def test_empty_campaign_and_unknown_campaign(db: Database) -> None:
    with db.engine.begin() as conn:
        runs.sync_campaign(conn, _spec(), now=QUEUED_1)
    rep = report_of(db)
    assert rep["deliveries"] == rep["recipients"] == rep["reached"] == 0
    assert rep["by_day"] == {} and rep["delivery_rate"] is None and rep["first_send"] is None
    code, out, err = cli(db, "report", "no-such-campaign")
    assert code == 1 and "Traceback" not in err
    assert ("no campaign no-such-campaign in this database; campaigns: cantho-2024-pcmbn"
            in err)


# --- formats -----------------------------------------------------------------------------------

def test_json_format(seeded: Database) -> None:
    code, out, err = cli(seeded, "report", CID, "--format", "json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["by_status"] == EXPECTED_BY_STATUS and rep["by_district"] == EXPECTED_BY_DISTRICT
    assert rep["recipients"] == 18 and rep["by_day"] == EXPECTED_BY_DAY
    code, out, _ = cli(seeded, "report", CID, "--format", "json", "--since", "2024-07-30",
                       "--until", "2024-07-30")  # a bare --until date includes that day
    rep = json.loads(out)
    assert rep["deliveries"] == 6 and list(rep["by_day"]) == ["2024-07-30"]


def test_csv_default_is_the_district_table(seeded: Database) -> None:
    code, out, err = cli(seeded, "report", CID, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[:4] == ["district", "queued", "sending", "sent"]
    by = {r["district"]: r for r in rows}
    assert int(by[NK]["total"]) == 9 and int(by[NK]["delivered"]) == 5
    assert int(by[NK]["failures"]) == 3 and int(by[NK]["awaiting"]) == 1
    assert int(by[CR]["total"]) == 6 and int(by[CR]["sent"]) == 2
    assert by[CR]["cost_vnd"] == "9600.0"  # delivered 1 + sent 2, SMS only
    assert rows[-1]["district"] == "TOTAL" and int(rows[-1]["total"]) == 20
    assert float(rows[-1]["delivery_rate"]) == 0.4706
    assert sum(int(r["total"]) for r in rows[:-1]) == 20


def test_csv_all_breakdowns_long_format(seeded: Database, tmp_path: Path) -> None:
    out_file = tmp_path / "report.csv"
    code, _, err = cli(seeded, "report", CID, "--format", "csv", "--by", "all", "--out",
                       str(out_file))
    assert code == 0, err
    text = out_file.read_text("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    for dim in reports.DIMENSIONS:
        part = [r for r in rows if r["breakdown"] == dim]
        assert part[-1]["key"] == "TOTAL" and int(part[-1]["deliveries"]) == 20, dim
        assert sum(int(r["deliveries"]) for r in part[:-1]) == 20, dim
    day = {r["key"]: r for r in rows if r["breakdown"] == "day"}
    assert int(day["2024-07-30"]["deliveries"]) == 6 and int(day["2024-07-30"]["unknown"]) == 1
    ward = [r for r in rows if r["breakdown"] == "ward" and r["subkey"] == "An Khánh"]
    assert ward[0]["key"] == NK and int(ward[0]["deliveries"]) == 3
    reasons = [r for r in rows if r["breakdown"] == "failure_reason"]
    assert sum(int(r["deliveries"]) for r in reasons) == 9
    # "-118: …" starts with "-": neutralised with a leading ' (OWASP CSV injection, safeio)
    assert any(r["key"] == "zalo" and r["subkey"] == "'-118: no-zalo-account" and r["failed"] == "1"
               for r in reasons)
    code, out, _ = cli(seeded, "report", CID, "--format", "csv", "--by", "reasons")
    first = list(csv.DictReader(io.StringIO(out)))[0]
    assert (first["error_code"], first["count"]) == ("21211", "2")


def test_xlsx_one_sheet_per_breakdown(seeded: Database, tmp_path: Path) -> None:
    code, _, err = cli(seeded, "report", CID, "--format", "xlsx")
    assert code != 0 and "--out" in err
    path = tmp_path / "r.xlsx"
    code, out, err = cli(seeded, "report", CID, "--format", "xlsx", "--out", str(path))
    assert code == 0, err
    wb = load_workbook(path)
    assert wb.sheetnames == ["summary", *reports.DIMENSIONS, "failure_reasons"]
    failures = list(wb["failure_reasons"].iter_rows(values_only=True))
    assert failures[0] == ("status", "gateway", "error_code", "error_reason", "count",
                           "description")
    # the code kept, and beside it the reason in words
    assert ("failed", "twilio", "30007", "carrier-filtered", 1, "filtered by the carrier") \
        in failures[1:]
    from outreach import i18n

    i18n.set_language("vi")
    try:
        reports.write_xlsx(report_of(seeded), tmp_path / "vi.xlsx")
    finally:
        i18n.set_language("en")
    rows = list(load_workbook(tmp_path / "vi.xlsx").worksheets[-1].iter_rows(values_only=True))
    assert rows[0][-1] == "mô tả"
    assert ("30007", "carrier-filtered", "bị nhà mạng chặn lọc") in [
        (r[2], r[3], r[5]) for r in rows[1:]]
    summary = {r[0]: r[1] for r in wb["summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["recipients"] == 18 and summary["reached"] == 8
    assert summary["deliveries"] == 20 and summary["cost_vnd"] == 38400
    assert summary["text"] == PLAN_TEXT
    for dim in reports.DIMENSIONS:
        rows = list(wb[dim].iter_rows(values_only=True))
        header, body = rows[0], rows[1:]
        col = header.index("deliveries")
        assert body[-1][0] == "TOTAL" and body[-1][col] == 20, dim
        assert sum(r[col] for r in body[:-1]) == 20, dim
    district = {r[0]: r for r in wb["district"].iter_rows(min_row=2, values_only=True)}
    header = next(wb["district"].iter_rows(max_row=1, values_only=True))
    assert district[PD][header.index("queued")] == 1
    assert district[PD][header.index("cost_vnd")] == 6400  # delivered + undelivered
    reasons = list(wb["failure_reasons"].iter_rows(min_row=2, values_only=True))
    assert reasons[0] == ("failed", "twilio", "21211", "invalid-number", 2,
                          "not a valid phone number")
    assert sum(r[4] for r in reasons) == 9


def test_vietnamese_files_read_as_the_console(seeded: Database, tmp_path: Path) -> None:
    """A Vietnamese workbook and CSV: the total row is TỔNG CỘNG, the states in words, days
    and times are Excel dates shown dd/mm/yyyy (the JSON keeps codes and ISO times)."""
    data = report_of(seeded)
    i18n.set_language("vi")
    try:
        reports.write_xlsx(data, tmp_path / "vi.xlsx")
        rows = list(csv.reader(io.StringIO(reports.to_csv(data, ("status",)))))
    finally:
        i18n.set_language("en")
    assert rows[-1][0] == "TỔNG CỘNG" and rows[-1][rows[0].index("tổng")] == "20"
    assert [r[0] for r in rows[1:4]] == ["đang chờ", "đang gửi", "đã gửi"]
    wb = load_workbook(tmp_path / "vi.xlsx")
    status = list(wb["theo trạng thái"].iter_rows(values_only=True))
    assert [r[0] for r in status[1:]] == [
        "đang chờ", "đang gửi", "đã gửi", "đã đến", "không đến được", "lỗi", "bỏ qua",
        "từ chối nhận tin", "chưa rõ", "TỔNG CỘNG"]
    day = wb["theo ngày"]
    first_day = dt.datetime.fromisoformat(next(iter(data["by_day"])))
    assert day.cell(2, 1).value == first_day and day.cell(2, 1).number_format == "DD/MM/YYYY"
    assert first_day == dt.datetime(2024, 7, 29)
    assert day.cell(day.max_row, 1).value == "TỔNG CỘNG"
    summary = {r[0].value: r[1] for r in wb["Tổng hợp"].iter_rows(min_row=2)}
    first = summary["gửi đầu tiên"]
    assert isinstance(first.value, dt.datetime) and first.number_format == "HH:MM DD/MM/YYYY"
    assert first.value == dt.datetime.fromisoformat(data["first_send"]).astimezone(
        VN_TZ).replace(tzinfo=None, microsecond=0)
    assert data["by_status"]["queued"] == 1 and "T" in data["first_send"]  # data unchanged


def test_table_format_shows_the_figures(seeded: Database) -> None:
    code, out, err = cli(seeded, "report", CID)
    assert code == 0, err
    assert "recipients 18 (reached 8, 44.4%; not reached 10)" in out
    assert "deliveries 20" in out and "delivered 8 (47.1% of attempted)" in out
    assert "cost 38,400 VND" in out
    for title in ("by status", "by district", "by carrier", "by channel", "by gateway", "by day",
                  "Failure reasons"):
        assert title in out
    assert "by ward" not in out
    code, out, _ = cli(seeded, "report", CID, "--by", "ward")
    assert "by ward" in out and "An Khánh" in out and "by district" not in out


# --- deliveries list, export, lookup -------------------------------------------------------------

def test_list_by_status_masks_numbers(seeded: Database) -> None:
    code, out, err = cli(seeded, "deliveries", "list", CID, "--status", "failed", "--format",
                         "json")
    assert code == 0, err
    rows = json.loads(out)
    assert sorted((r["recipient_id"], r["channel"]) for r in rows) == [
        (4, "sms"), (5, "sms"), (9, "zalo"), (13, "sms")]
    assert {r["phone"] for r in rows} == {"090****004", "090****005", "090****009", "090****013"}
    code, out, _ = cli(seeded, "deliveries", "list", CID, "--status", "unknown", "--status",
                       "undelivered", "--format", "json")
    assert sorted(r["recipient_id"] for r in json.loads(out)) == [7, 8, 17]


def test_export_of_recipients_not_reached(seeded: Database, tmp_path: Path) -> None:
    with seeded.engine.begin() as conn:  # 12 opted out; 13 asked to opt out after the failure
        for r in (12, 13):
            conn.execute(insert(Suppression).values(e164=phone(r), reason="citizen-request",
                                                    source="test", created_at=D31))
    path = tmp_path / "not-reached.csv"
    code, out, err = cli(seeded, "deliveries", "list", CID, "--not-reached", "--export", str(path))
    assert code == 0, err
    assert "5 recipients not reached written" in out
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads the BOM as UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    # never delivered, latest failed/undelivered/unknown/skipped; not r10/r11 (sent, awaiting
    # a receipt), r12 (opted out), r13 (suppressed), r16 (queued), r5 and r9 (reached later)
    got = {int(r["recipient_id"]): r for r in rows}
    assert set(got) == {4, 7, 8, 15, 17}
    assert got[4]["phone"] == "+84905550004"  # whole numbers in the file
    assert (got[4]["status"], got[4]["error_code"], got[4]["error_reason"]) == \
        ("failed", "21211", "invalid-number")
    assert got[7]["district"] == NK and got[7]["ward"] == "An Khánh"
    assert got[15]["status"] == "skipped" and got[15]["deliveries"] == "1"
    assert got[8]["last_attempt_at"].startswith("2024-07-29T23:30:00")
    with seeded.engine.connect() as conn:
        export = conn.execute(select(AuditEntry.campaign_id, AuditEntry.details)
                              .where(AuditEntry.action == "export")).one()
    assert export.campaign_id == CID and export.details["rows"] == 5
    assert export.details["what"] == "not-reached" and "+849" not in json.dumps(export.details)
    code, out, _ = cli(seeded, "deliveries", "list", CID, "--status", "not-reached", "--format",
                       "json")
    shown = json.loads(out)
    assert {r["recipient_id"] for r in shown} == {4, 7, 8, 15, 17}
    assert all("****" in r["phone"] for r in shown)  # masked on screen


def test_lookup_history_across_campaigns(seeded: Database) -> None:
    with seeded.engine.begin() as conn:
        first = min(conn.execute(select(Delivery.id).where(Delivery.address == phone(5)))
                    .scalars())
        conn.execute(insert(DeliveryEvent).values(delivery_id=first, at=D29, source="webhook",
                                                  old_status="sent", new_status="failed",
                                                  applied=True, error_code="21211"))
    code, out, err = cli(seeded, "deliveries", "lookup", "090 555 0005", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["phone"] == "090****005"
    assert [(d["campaign"], d["status"]) for d in data["deliveries"]] == [
        (CID, "failed"), (CID, "delivered")]
    assert data["deliveries"][0]["events"][0]["status"] == "failed"
    assert data["deliveries"][0]["error_code"] == "21211"
    code, out, _ = cli(seeded, "--show-numbers", "deliveries", "lookup", "0905550005")
    assert "+84905550005" in out and "2 deliveries" in out
    code, out, _ = cli(seeded, "deliveries", "lookup", "0905550005")
    assert "+84905550005" not in out and "090****005" in out
    code, _, err = cli(seeded, "deliveries", "lookup", "02923555123")
    assert code == 2 and "not a mobile number" in err
    with seeded.engine.connect() as conn:  # every lookup is audited, the number masked
        looked = [d for (d,) in conn.execute(select(AuditEntry.details)
                                             .where(AuditEntry.action == "lookup"))]
    assert len(looked) == 3 and looked[0] == {"phone": "090****005", "deliveries": 2,
                                              "with_key": False, "shown_whole": False}
    assert looked[1]["shown_whole"] is True


# --- resend selection -----------------------------------------------------------------------------

RESEND_ROWS = [
    Row(1, "delivered", D29),                      # reached: never again
    Row(2, "failed", D29, "21211", "invalid-number"),  # yes
    Row(3, "undelivered", D29, "30003", "unreachable"),  # yes
    Row(4, "opted_out", None, None, "suppressed"),  # opted out: never
    Row(5, "sent", D29),                           # in flight (no receipt yet): no
    Row(7, "unknown", D29, None, "outcome-unknown"),  # maybe sent: only with --include-unknown
    Row(9, "failed", D29, "-118", "no-zalo-account", channel="zalo", gateway="zalo"),
    Row(9, "delivered", D29),                      # Zalo failed, SMS delivered: reached
    Row(10, "failed", D29, "30005", "unknown-handset"),
    Row(10, "failed", D31, "30005", "unknown-handset", run=2),  # failed twice: yes
    Row(11, "failed", D29, "30007", "carrier-filtered"),  # suppressed since: an opted_out row
    Row(13, "skipped", None, None, "cancelled"),    # not a failure: no
    Row(14, "failed", D29, "30003", "unreachable"),
    Row(14, "queued", None, run=2),                # a resend still queued: no
]


def _resend(db: Database, statuses: tuple[str, ...] = (states.FAILED, states.UNDELIVERED)) -> Any:
    from outreach.sending import ops
    from outreach.gateways.mock import MockGateway

    seed(db, RESEND_ROWS)
    with db.engine.begin() as conn:
        conn.execute(insert(Suppression).values(e164=phone(11), reason="citizen-request",
                                                source="test", created_at=D31))
        # the second run's queued row belongs to a run that was cancelled, not an active one
        conn.execute(update(Run).values(status="cancelled"))
    gw = MockGateway()
    clock = FakeClock(vn(31, 10, 0))
    res = ops.resend(db, _spec(), statuses=statuses, operator="chi.nguyen", clock=clock,
                     gateways={"sms": gw})
    return res, gw


def test_resend_selects_only_the_failures(db: Database) -> None:
    res, gw = _resend(db)
    assert sorted(m.to for m in gw.outbox) == [phone(2), phone(3), phone(10)]
    with db.engine.connect() as conn:
        new = conn.execute(select(Delivery.recipient_id, Delivery.status, Delivery.dedupe_key)
                           .where(Delivery.run_id == res.plan.run_id)
                           .order_by(Delivery.recipient_id)).all()
        entry = conn.execute(select(AuditEntry.operator, AuditEntry.text_sha256,
                                    AuditEntry.details).where(AuditEntry.action == "resend")).one()
    assert [(r, s) for r, s, _ in new] == [(2, "sent"), (3, "sent"), (10, "sent"),
                                            (11, "opted_out")]
    assert all(k == f"resend:{res.plan.run_id}" for _, _, k in new)
    assert entry.operator == "chi.nguyen" and entry.text_sha256 == _spec().text_sha256
    assert entry.details["deliveries"] == 4
    # a second resend right away finds nobody new to send to (their latest is now 'sent')
    from outreach.sending import ops

    again = ops.resend(db, _spec(), operator="chi.nguyen", clock=FakeClock(vn(31, 11)),
                       gateways={"sms": gw})
    assert again.nothing_new and len(gw.outbox) == 3


def test_resend_include_unknown_adds_the_unknown(db: Database) -> None:
    """``campaign resend --include-unknown``: the operator accepts a possible double send."""
    _res, gw = _resend(db, (states.FAILED, states.UNDELIVERED, states.UNKNOWN))
    assert sorted(m.to for m in gw.outbox) == [phone(2), phone(3), phone(7), phone(10)]


# --- audit log -----------------------------------------------------------------------------------

def test_operator_actions_are_audited_with_who_and_text_hash(seeded: Database,
                                                             tmp_path: Path) -> None:
    from outreach.sending import ops

    sha = _spec().text_sha256
    with seeded.engine.begin() as conn:  # an active run to pause and cancel
        conn.execute(update(Run).where(Run.id == 2).values(status="running"))
    ops.set_run_state(seeded, CID, "pause", operator="lan.tran", now=D31)
    code, _, err = cli(seeded, "campaign", "cancel", CID, "--yes", operator="minh.le")
    assert code == 0, err
    with seeded.engine.connect() as conn:
        unknown_id = conn.execute(select(Delivery.id)
                                  .where(Delivery.status == "unknown")).scalar_one()
    code, out, err = cli(seeded, "deliveries", "resolve", str(unknown_id), "--skip",
                         operator="minh.le")
    assert code == 0 and "1 delivery: skipped" in out, err
    code, _, err = cli(seeded, "optout", "add", "0905550099", operator="lan.tran")
    assert code == 0, err
    code, _, err = cli(seeded, "optout", "remove", "0905550099", operator="lan.tran")
    assert code == 0, err

    code, out, err = cli(seeded, "audit", "list", "--format", "json")
    assert code == 0, err
    entries = json.loads(out)
    by_action = {e["action"]: e for e in entries}
    assert [e["action"] for e in entries] == ["optout-remove", "optout-add", "resolve-unknown",
                                              "cancel", "pause"]  # newest first
    assert by_action["pause"]["operator"] == "lan.tran" and by_action["pause"]["text_sha256"] == sha
    assert by_action["cancel"]["operator"] == "minh.le" and by_action["cancel"]["text_sha256"] == sha
    resolve = by_action["resolve-unknown"]
    assert resolve["campaign"] == CID and resolve["text_sha256"] == sha
    assert resolve["details"] == {"deliveries": [unknown_id], "action": "skip",
                                  "changed": [unknown_id]}
    assert by_action["optout-add"]["details"]["added"] == 1
    assert by_action["pause"]["at"].endswith("+07:00")

    code, out, _ = cli(seeded, "audit", "list", "--operator", "minh.le", "--format", "json")
    assert [e["action"] for e in json.loads(out)] == ["resolve-unknown", "cancel"]
    code, out, _ = cli(seeded, "audit", "list", "--action", "pause", "--action", "cancel",
                       "--campaign", CID, "--format", "json")
    assert [e["action"] for e in json.loads(out)] == ["cancel", "pause"]
    code, out, _ = cli(seeded, "audit", "list", "--until", "2024-07-31", "--format", "json")
    assert [e["action"] for e in json.loads(out)] == ["pause"]  # the others happen "now"
    code, out, _ = cli(seeded, "audit", "list", "--since", "2024-08-01", "--format", "json")
    assert len(json.loads(out)) == 4
    code, out, _ = cli(seeded, "audit", "list")
    assert "Audit log: 5 entries" in out and "lan.tran" in out


def test_default_operator_is_the_os_user(seeded: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    monkeypatch.delenv("OUTREACH_OPERATOR", raising=False)
    code, _, err = cli(seeded, "optout", "add", "0905550099")
    assert code == 0, err
    with seeded.engine.connect() as conn:
        who = conn.execute(select(AuditEntry.operator)).scalar_one()
    assert who == getpass.getuser()


def test_queued_and_in_flight_rows_are_counted_outside_the_partial_indexes(
        seeded: Database) -> None:
    """The report indexes hold settled rows only (models.SETTLED_SQL): rows queued or being sent
    are read through the run index, and still land in every breakdown, day and send bound."""
    with seeded.engine.begin() as conn:
        ids = conn.execute(select(Delivery.id).where(Delivery.status == "delivered")
                           .order_by(Delivery.id).limit(2)).scalars().all()
        conn.execute(update(Delivery).where(Delivery.id.in_(ids))
                     .values(status="sending", sending_at=vn(31, 10, 15), delivered_at=None,
                             final_at=None))
        raw = conn.execute(select(Delivery.district, Delivery.status)).all()
    rep = report_of(seeded)
    expected_status = dict(EXPECTED_BY_STATUS, delivered=6, sending=2)
    assert rep["by_status"] == expected_status
    by_district: dict[str, dict[str, int]] = {}
    for district, status in raw:  # recomputed from the rows themselves
        row = by_district.setdefault(district or "(không rõ)", {})
        row[status] = row.get(status, 0) + 1
    assert rep["by_district"] == by_district
    assert rep["by_day"]["2024-07-31"].get("sending") == 2
    assert rep["last_send"] == "2024-07-31T10:15:00+07:00"  # an in-flight row sent last
    assert rep["awaiting"] == 3 + 2 and rep["reached"] == 6
    for key in ("by_district", "by_carrier", "by_channel", "by_gateway", "by_day"):
        assert sum(sum(c.values()) for c in rep[key].values()) == 20, key


def test_report_queries_use_the_partial_indexes(seeded: Database) -> None:
    """SQLite uses a partial index only if the query repeats its predicate: the plans say so."""
    from sqlalchemy import func
    from sqlalchemy import text as sql_text

    from outreach.ledger.models import REACHED_SQL, REASON_SQL, SETTLED_SQL

    def plan(stmt: Any) -> str:
        sql = str(stmt.compile(seeded.engine, compile_kwargs={"literal_binds": True}))
        with seeded.engine.connect() as conn:
            return " | ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))

    cols = (Delivery.district, Delivery.ward, Delivery.carrier, Delivery.channel,
            Delivery.gateway, Delivery.status)
    main_scan = plan(select(*cols, func.count()).where(Delivery.campaign_id == CID,
                                                       sql_text(SETTLED_SQL)).group_by(*cols))
    assert "COVERING INDEX ix_deliveries_report" in main_scan
    reached = plan(select(func.count()).select_from(
        select(Delivery.recipient_id).where(Delivery.campaign_id == CID, sql_text(REACHED_SQL))
        .distinct().subquery()))
    # read in recipient order from the partial index: no temporary B-tree of every id
    assert "ix_deliveries_reached" in reached and "TEMP B-TREE" not in reached, reached
    reasons = plan(select(Delivery.status, Delivery.error_code, func.count())
                   .where(Delivery.campaign_id == CID, sql_text(REASON_SQL))
                   .group_by(Delivery.status, Delivery.error_code))
    assert "ix_deliveries_campaign_status_reason" in reasons

"""Builders for small campaigns and databases used across tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from outreach.input import campaigns
from outreach.input import text as textmod
from outreach.ledger.db import Database

SMALL_TEXT = "Toàn dân tích cực tham gia phòng, chống mua bán người."


def source_and_message(text: str) -> str:
    """The [source] (plan 126/KH-UBND, section II.6.b) and [message] tables of a test campaign,
    with the text's SHA-256."""
    return f"""[source]
document = "126/KH-UBND"
issuer = "Ủy ban nhân dân thành phố Cần Thơ"
date = 2024-06-25
section = "II.6.b"

[message]
text = {json.dumps(text, ensure_ascii=False)}
sha256 = "{textmod.text_sha256(text)}"
"""


def numbers(n: int, start: int = 0) -> list[str]:
    """``n`` distinct synthetic Viettel numbers in E.164 (+8496555xxxx)."""
    return [f"+849655{start + i:05d}" for i in range(n)]


def write_campaign(tmp: Path, *, phones: list[str] | None = None, n: int = 6,
                   text: str = SMALL_TEXT, start: str = "2024-07-01", end: str = "2024-09-30",
                   daily_start: str = "07:00", daily_end: str = "22:00", rate: float = 0,
                   cid: str = "test-campaign", extra: str = "", channels: str | None = None,
                   lateness: int = 120, schedule: str = "") -> Path:
    """A campaign TOML plus its CSV list in ``tmp``; returns the TOML path."""
    phones = phones if phones is not None else numbers(n)
    lst = tmp / f"{cid}-list.csv"
    rows = ["phone,name,district,ward"]
    for i, p in enumerate(phones):
        rows.append(f"{p},Người {i},Ninh Kiều,An Hòa" if i % 2 == 0 else f"{p},Người {i},Cái Răng,Lê Bình")
    lst.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    rate_line = f"rate_per_second = {rate}" if rate else ""  # none: the gateway's own limit
    channels = channels or f"""
[[channels]]
channel = "sms"
sender = "TEST"
{rate_line}
concurrency = 4
"""
    body = f"""
id = "{cid}"
name = "Chiến dịch thử"
theme = "thử"
{extra}
{source_and_message(text)}
[window]
start_date = {start}
end_date = {end}
daily_start = "{daily_start}"
daily_end = "{daily_end}"
lateness_limit_minutes = {lateness}
{schedule}
{channels}
[recipients]
list_name = "{cid}"
lists = ["{lst.name}"]

[pricing.sms]
default = 800
"""
    path = tmp / f"{cid}.toml"
    path.write_text(body, encoding="utf-8")
    return path


def write_daily_campaign(tmp: Path, *, cid: str = "lich-hang-ngay",
                         numbers: list[str] | None = None, start: str = "2024-07-01",
                         end: str = "2024-09-30", send_time: str = "08:00",
                         daily_start: str = "07:00", daily_end: str = "22:00", lateness: int = 120,
                         mode: str = "once", every: int = 0, cap: int = 0,
                         key_dates: str = "[2024-07-30]") -> Path:
    """A scheduled (daily) campaign TOML and its own CSV list in ``tmp``; rate 0 (unlimited), one
    SMS channel; ``key_dates`` is TOML (``"[]"`` for none)."""
    numbers = [f"09655500{i:02d}" for i in range(1, 4)] if numbers is None else numbers
    lst = tmp / f"{cid}.csv"
    lst.write_text("phone,name\n" + "".join(f"{p},Người {i}\n" for i, p in enumerate(numbers)),
                   encoding="utf-8")
    path = tmp / f"{cid}.toml"
    path.write_text(f"""
id = "{cid}"
name = "Nhắn tin hằng ngày"

{source_and_message(SMALL_TEXT)}
[window]
timezone = "Asia/Ho_Chi_Minh"
start_date = {start}
end_date = {end}
key_dates = {key_dates}
daily_start = "{daily_start}"
daily_end = "{daily_end}"
lateness_limit_minutes = {lateness}

[schedule]
send_time = "{send_time}"
mode = "{mode}"
repeat_every_days = {every}
daily_cap = {cap}

[[channels]]
channel = "sms"
sender = "TEST"

[recipients]
list_name = "{cid}"
lists = ["{lst.name}"]
""", encoding="utf-8")
    return path


def load(path: Path) -> campaigns.CampaignSpec:
    return campaigns.load(path)


def fresh_db(tmp: Path, name: str = "t.db") -> Database:
    db = Database(f"sqlite:///{tmp / name}")
    db.upgrade()
    return db


def in_window() -> dt.datetime:
    """An instant inside the 2024 campaign window: 30 July 2024, 09:00 in Vietnam."""
    from outreach.clock import VN_TZ

    return dt.datetime(2024, 7, 30, 9, 0, tzinfo=VN_TZ)


def statuses(db: Database, campaign_id: str = "test-campaign") -> dict[str, str]:
    """address -> status of every delivery (asserts one delivery per address)."""
    from sqlalchemy import select

    from outreach.ledger.models import Delivery

    with db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.address, Delivery.status)
                            .where(Delivery.campaign_id == campaign_id)).all()
    out: dict[str, str] = {}
    for addr, st in rows:
        assert addr not in out, f"two deliveries for {addr}"
        out[addr] = st
    return out


def events(db: Database) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from outreach.ledger.models import DeliveryEvent

    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(DeliveryEvent.__table__)
                                                       .order_by(DeliveryEvent.id))]


def seed_run(db: Database, spec: campaigns.CampaignSpec, now: dt.datetime, *,
             kind: str = "launch", **create: Any) -> int:
    """Sync the campaign, import its lists and create a run (no sending); returns the run id."""
    from outreach.input import recipients
    from outreach.ledger import runs

    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=now)
    recipients.import_files(db, spec.list_files(), list_name=spec.list_name, now=now)
    with db.engine.begin() as conn:
        plan = runs.create_run(conn, spec, kind=kind, gateway_names={"sms": "mock"}, now=now,
                               **create)
    assert plan.run_id is not None
    return plan.run_id


def approve(db: Database, spec: campaigns.CampaignSpec) -> None:
    """Give ``spec`` a second person's approval (outreach/approvals.py), as a launch through a
    gateway that reaches phones needs: accounts ``test-preparer`` and ``test-approver``."""
    from outreach import users
    from outreach.sending import approvals

    with db.engine.begin() as conn:
        for name, role in (("test-preparer", "operator"), ("test-approver", "approver")):
            if users.get(conn, name) is None:
                users.add(conn, name, role, password=None)
        approvals.prepare(conn, spec, operator="test-preparer")
        approvals.approve(conn, spec, approver="test-approver")


#: English words that never occur in the Vietnamese interface (field terms kept in English, such
#: as "outbox", "mock", "SMSC", "bind", "E.164", are not on the list; nor are "to", "no", "a",
#: "do", which are also Vietnamese syllables: "lý do" is "reason").
ENGLISH_WORDS = frozenset("""
the is are was were be been not and of with for from this that which or must cannot can't
only has have had should would will could does did nothing already there their than then
when where while because into onto after before without within per each every any some
number numbers file files line row rows column columns sheet sheets list lists message
messages campaign campaigns run runs sent send sending delivery deliveries recipient
recipients refused unknown invalid missing empty found reason reasons error errors set use
""".split())


def english_words(text: str) -> list[str]:
    """The English words of :data:`ENGLISH_WORDS` in ``text`` (console output of the Vietnamese
    interface), ignoring what is not prose: paths, file names, options (``--yes``), URLs,
    identifiers with ``-``, ``_``, ``.``, ``/`` or ``=``, and quoted values."""
    import re

    prose = re.sub(r"'[^'\n]*'|\"[^\"\n]*\"|«[^»\n]*»|`[^`\n]*`", " ", text)
    words = []
    for token in re.split(r"\s+", prose):
        if re.search(r"[-_./=\\:@<>{}\[\]]", token.strip(".,;:()!?")):
            continue  # a path, an option, a code, an identifier
        word = token.strip(".,;:()!?\"'“”").lower()
        if word in ENGLISH_WORDS:
            words.append(word)
    return words

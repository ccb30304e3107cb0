"""A small world for the web and approval tests: a database, campaigns whose window is open
today, one account per role (passwords are synthetic test values)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from outreach import users
from outreach.ledger.db import Database
from tests.helpers import fresh_db, numbers, write_campaign

PASSWORD = "mat-khau-thu-nghiem"
#: username -> role
ACCOUNTS = {"vera": "viewer", "olga": "operator", "anna": "approver", "adam": "admin"}


def channel(gateway: str, rate: float = 0) -> str:
    return f"""
[[channels]]
channel = "sms"
sender = "TEST"
gateway = "{gateway}"
concurrency = 2
{f"rate_per_second = {rate}" if rate else ""}
"""


def open_campaign(tmp: Path, cid: str, gateway: str, n: int = 6, start: int = 0,
                  rate: float = 0) -> Path:
    """A campaign whose window is open at any hour of 2026–2027 (Vietnam time)."""
    return write_campaign(tmp, cid=cid, phones=numbers(n, start), start="2026-01-01",
                          end="2027-12-31", daily_start="00:00", daily_end="23:59",
                          channels=channel(gateway, rate))


def add_accounts(db: Database) -> None:
    with db.engine.begin() as conn:
        for name, role in ACCOUNTS.items():
            users.add(conn, name, role, password=PASSWORD, display_name=f"Cán bộ {name.title()}",
                      operator="setup")


@dataclass
class World:
    db: Database
    mock_file: Path
    twilio_file: Path
    phones: list[str]


def make_world(tmp: Path, n_mock: int = 6) -> World:
    db = fresh_db(tmp)
    add_accounts(db)
    mock_file = open_campaign(tmp, "thu-mock", "mock", n=n_mock)
    twilio_file = open_campaign(tmp, "that-twilio", "twilio", n=4, start=500)
    return World(db, mock_file, twilio_file, numbers(n_mock) + numbers(4, 500))


def whole_number_patterns(phones: list[str]) -> list[re.Pattern[str]]:
    """Every way a whole number could show: E.164, without '+', national with a leading 0."""
    out = []
    for p in phones:
        digits = p.lstrip("+")
        national = "0" + digits[2:]
        out += [re.compile(re.escape(x)) for x in (digits, national)]
    return out

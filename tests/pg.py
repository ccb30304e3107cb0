"""PostgreSQL for tests: a fresh schema per session, skipped without a server unless CI requires it.

The server is ``$OUTREACH_TEST_POSTGRES_URL`` (default: the local one on 127.0.0.1:5432,
database ``test``). Each session works in its own schema ``outreach_test_<random>`` (chosen
through ``search_path`` in the URL, so subprocesses given the URL land there too), dropped at
the end, so concurrent runs never collide. Without a server the tests are skipped, unless
``OUTREACH_REQUIRE_POSTGRES=1`` (set by CI): then they fail, loudly.

Import the fixtures into a test module: ``from tests.pg import pg_db, pg_url  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from outreach.input import campaigns
from outreach.ledger import runs
from outreach.input import text as textmod
from outreach.clock import vn_today
from outreach.ledger.db import Database
from outreach.ledger.models import Run
from tests.helpers import write_campaign

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("OUTREACH_TEST_POSTGRES_URL") or DEFAULT_URL


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``options=-csearch_path=<schema>`` (psycopg passes it to the server)."""
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


@contextlib.contextmanager
def temp_schema(prefix: str = "outreach_test") -> Iterator[str]:
    """Create an empty schema, yield a URL that uses it, drop it (cascade) afterwards.

    Skips the test (or fails it when ``OUTREACH_REQUIRE_POSTGRES=1``) if the server does not
    answer within 3 seconds.
    """
    base = server_url()
    engine = create_engine(base, connect_args={"connect_timeout": 3})
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        engine.dispose()
        why = (f"PostgreSQL at {make_url(base).render_as_string(hide_password=True)} is not "
               f"reachable: {exc.orig}")
        if os.environ.get("OUTREACH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{why} — OUTREACH_REQUIRE_POSTGRES=1, so the PostgreSQL tests must "
                        "run, not skip", pytrace=False)
        pytest.skip(why)
    try:
        yield with_schema(base, schema)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The session's schema, migrated to the newest revision."""
    with temp_schema() as url:
        db = Database(url)
        db.upgrade()
        db.dispose()
        yield url


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    """A Database on the session schema, every table emptied first (ids restart at 1)."""
    db = Database(pg_url)
    with db.engine.begin() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    yield db
    db.dispose()


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    """A brand-new empty schema of its own (for migration tests)."""
    with temp_schema("outreach_mig") as url:
        yield url


def seed_run(db: Database, tmp: Path, n: int, *, rate: float = 0, concurrency: int = 4,
             cid: str = "test-campaign", gateway: str = "mock",
             first: int = 0) -> tuple[campaigns.CampaignSpec, int]:
    """A campaign of ``n`` synthetic recipients (``tests.helpers.numbers(n, first)``) and its
    run, status ``created``, as ``outreach campaign launch --enqueue-only`` leaves it.

    The recipients, list members and delivery rows are written by three ``INSERT … SELECT
    generate_series`` statements (20,000 in well under a second) with the values
    :func:`outreach.ledger.runs.create_run` would store (once-per-campaign key, segments, encoding,
    cost). ``rate`` is the channel's ``rate_per_second`` (0: the gateway's own, unlimited for
    the mock). The send window is all day (00:00–23:59:59) from 2024 to 2099. Returns
    (spec, run id).
    """
    path = write_campaign(tmp, n=0, phones=[], cid=cid, start="2024-07-01", end="2099-12-31",
                          daily_start="00:00", daily_end="23:59", channels=f"""
[[channels]]
channel = "sms"
sender = "TEST"
{f"rate_per_second = {rate}" if rate else ""}
concurrency = {concurrency}
""")
    # a TOML time, so the window closes for one second a day rather than one minute
    path.write_text(path.read_text("utf-8").replace('daily_end = "23:59"', "daily_end = 23:59:59"),
                    "utf-8")
    spec = campaigns.load(path)
    analysis = textmod.analyse(spec.text)
    now = dt.datetime.now(dt.timezone.utc)
    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=now)
        run_id = conn.execute(insert(Run).values(
            campaign_id=spec.id, run_key=f"launch:{now.isoformat()}", kind="launch",
            run_date=vn_today(now), status="created", gateway=gateway,
            text_sha256=spec.text_sha256, due_at=now, created_at=now,
            options={"gateways": {"sms": gateway}})).inserted_primary_key[0]
        params = {"first": first, "last": first + n - 1, "now": now.replace(tzinfo=None),
                  "list": spec.list_name, "cid": spec.id, "run": run_id, "gw": gateway,
                  "enc": analysis.encoding, "seg": analysis.segments,
                  "cost": analysis.segments * spec.price_per_segment("sms", "Viettel")}
        conn.execute(text("""
            INSERT INTO recipients (e164, carrier, name, district, ward, created_at)
            SELECT '+849655' || lpad(i::text, 5, '0'), 'Viettel', 'Người ' || i,
                   CASE WHEN i % 2 = 0 THEN 'Ninh Kiều' ELSE 'Cái Răng' END, 'An Hòa', :now
            FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i"""), params)
        conn.execute(text("""
            INSERT INTO list_members (list_name, recipient_id)
            SELECT :list, id FROM recipients
            WHERE e164 BETWEEN '+849655' || lpad(CAST(:first AS text), 5, '0')
                           AND '+849655' || lpad(CAST(:last AS text), 5, '0')"""), params)
        created = conn.execute(text("""
            INSERT INTO deliveries (campaign_id, run_id, recipient_id, dedupe_key, channel, gateway,
                                    address, district, ward, carrier, status, encoding, segments,
                                    cost_vnd, attempts, queued_at, updated_at)
            SELECT :cid, :run, r.id, 'once', 'sms', :gw, r.e164, r.district, r.ward, r.carrier,
                   'queued', :enc, :seg, :cost, 0, :now, :now
            FROM list_members m JOIN recipients r ON r.id = m.recipient_id
            WHERE m.list_name = :list ORDER BY r.id"""), params).rowcount
    assert created == n
    return spec, run_id

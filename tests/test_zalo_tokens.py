"""The single-use Zalo refresh token: one refresh across threads and processes, stored first."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.gateways import base
from outreach.gateways.base import OutboundMessage
from outreach.gateways.zalo import ZaloGateway
from outreach.gateways.zalo_tokens import (RefreshNotSent, RefreshOutcomeUnknown, RefreshRejected,
                                          TokenGrant, TokenStore)
from outreach.ledger.models import AuditEntry, Base, GatewayToken
from tests.fakes.zalo_server import (FIRST_ACCESS_TOKEN, FIRST_REFRESH_TOKEN, FakeZalo,
                                     zalo_server)  # noqa: F401 - fixture

T0 = dt.datetime(2024, 7, 30, 2, 0, tzinfo=dt.timezone.utc)
from tests.pg import pg_db, pg_url  # noqa: F401 (fixtures)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tokens.db"


@pytest.fixture
def db(db_path: Path) -> Database:
    database = Database(f"sqlite:///{db_path}")
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


class Refresher:
    """A scripted OAuth endpoint: counts calls, issues AT-n/RT-n, single-use like Zalo."""

    def __init__(self, valid: str = "RT-1", fail: Exception | None = None,
                 delay: float = 0.0) -> None:
        self.valid, self.fail, self.delay = valid, fail, delay
        self.calls: list[str] = []
        self.n = 1
        self.lock = threading.Lock()

    def __call__(self, refresh_token: str) -> TokenGrant:
        with self.lock:
            self.calls.append(refresh_token)
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        with self.lock:
            if refresh_token != self.valid:
                raise RefreshRejected("Invalid refresh token", code=-14014)
            self.n += 1
            self.valid = f"RT-{self.n}"
            return TokenGrant(f"AT-{self.n}", self.valid, 90000)


def stored(db: Database) -> GatewayToken:
    """The stored row with its tokens decrypted (they are encrypted at rest: test_secrets.py)."""
    from outreach.gateways.zalo_tokens import _open

    with db.engine.connect() as conn:
        row = conn.execute(select(GatewayToken)).one()
    return SimpleNamespace(**{**row._mapping, "access_token": _open(row.access_token),
                              "refresh_token": _open(row.refresh_token)})


# -- TokenStore unit behaviour ----------------------------------------------------------------

def test_no_token_stored_is_an_authentication_error_naming_the_command(db: Database) -> None:
    store = TokenStore(db, clock=FakeClock(T0), refresher=Refresher())
    with pytest.raises(base.AuthenticationError, match="outreach gateways zalo set-token"):
        store.current()
    assert store.status()["state"] == "missing"


def test_current_returns_the_stored_token_until_five_minutes_before_expiry(db: Database) -> None:
    clock, oauth = FakeClock(T0), Refresher()
    store = TokenStore(db, clock=clock, refresher=oauth)
    assert store.set_tokens("AT-1", "RT-1", 3600) == 1
    assert store.current() == ("AT-1", 1)
    clock.advance(3600 - 301)
    assert store.current() == ("AT-1", 1)
    assert oauth.calls == []
    clock.advance(2)  # now 299 s before expiry: proactive refresh
    token, version = store.current()
    assert (token, version) == ("AT-2", 3)  # claim bumped to 2, the new tokens to 3
    assert oauth.calls == ["RT-1"]
    row = stored(db)
    assert (row.access_token, row.refresh_token) == ("AT-2", "RT-2")
    assert row.expires_at == clock.now() + dt.timedelta(seconds=90000)
    assert store.current() == ("AT-2", 3)
    assert oauth.calls == ["RT-1"]


def test_refresh_after_another_worker_refreshed_does_not_call_oauth(db: Database) -> None:
    oauth = Refresher()
    a = TokenStore(db, clock=FakeClock(T0), refresher=oauth)
    b = TokenStore(db, clock=FakeClock(T0), refresher=oauth)
    a.set_tokens("AT-1", "RT-1", 90000)
    _, seen = b.current()
    assert a.refresh(seen) == "AT-2"
    assert b.refresh(seen) == "AT-2"  # b saw the same rejected version: reuses a's result
    assert oauth.calls == ["RT-1"]


def test_threads_refresh_exactly_once(db_path: Path, db: Database) -> None:
    oauth = Refresher(delay=0.3)
    TokenStore(db, refresher=oauth).set_tokens("AT-1", "RT-1", 90000)
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        local = Database(f"sqlite:///{db_path}")  # one engine per worker, like processes
        store = TokenStore(local, refresher=oauth, poll_interval=0.01)
        try:
            _, seen = store.current()
            barrier.wait()
            results.append(store.refresh(seen))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            local.dispose()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == ["AT-2"] * 8
    assert oauth.calls == ["RT-1"]


def test_connect_failure_releases_the_claim_and_the_same_token_is_used_next(db: Database) -> None:
    oauth = Refresher(fail=RefreshNotSent("connect failed"))
    store = TokenStore(db, clock=FakeClock(T0), refresher=oauth)
    store.set_tokens("AT-1", "RT-1", 90000)
    with pytest.raises(base.UnavailableError) as info:
        store.refresh(1)
    assert info.value.reason == "connect-failed"
    row = stored(db)
    assert (row.access_token, row.refresh_token, row.version) == ("AT-1", "RT-1", 3)
    oauth.fail = None
    assert store.refresh(3) == "AT-2"  # RT-1 never reached Zalo: using it now is its first use
    assert oauth.calls == ["RT-1", "RT-1"]


def test_rejected_refresh_token_stops_and_is_not_retried(db: Database) -> None:
    oauth = Refresher(valid="RT-other")
    store = TokenStore(db, clock=FakeClock(T0), refresher=oauth)
    store.set_tokens("AT-1", "RT-1", 90000)
    with pytest.raises(base.AuthenticationError, match="set-token") as info:
        store.refresh(1)
    assert info.value.provider_code == "-14014"
    assert store.status()["state"] == "rejected"
    with pytest.raises(base.AuthenticationError):
        store.current()
    with pytest.raises(base.AuthenticationError):
        TokenStore(db, clock=FakeClock(T0), refresher=oauth).current()  # after a restart too
    assert oauth.calls == ["RT-1"]
    store.set_tokens("AT-9", "RT-9", 90000)  # the operator's way out
    assert store.current()[0] == "AT-9"


def test_lost_oauth_answer_never_reuses_the_refresh_token(db: Database) -> None:
    oauth = Refresher(fail=RefreshOutcomeUnknown("read timeout"))
    store = TokenStore(db, clock=FakeClock(T0), refresher=oauth)
    store.set_tokens("AT-1", "RT-1", 90000)
    with pytest.raises(base.AuthenticationError, match="may be spent"):
        store.refresh(1)
    oauth.fail = None
    restarted = TokenStore(Database(str(db.url)), clock=FakeClock(T0), refresher=oauth)
    with pytest.raises(base.AuthenticationError):
        restarted.current()
    assert oauth.calls == ["RT-1"]
    assert restarted.status()["state"] == "unknown"


DYING_REFRESH = textwrap.dedent("""
    import datetime as dt, os, sys
    from outreach.clock import FakeClock
    from outreach.ledger.db import Database
    from outreach.gateways import zalo_tokens
    from outreach.gateways.zalo_tokens import TokenGrant, TokenStore

    url, journal, stage = sys.argv[1], sys.argv[2], sys.argv[3]
    clock = FakeClock(dt.datetime(2024, 7, 30, 2, 0, tzinfo=dt.timezone.utc))
    def oauth(refresh_token):
        assert refresh_token == "RT-1"
        if stage == "sent":
            os._exit(9)  # killed while the OAuth request is out
        return TokenGrant("AT-2", "RT-2", 90000)
    store = TokenStore(Database(url), clock=clock, refresher=oauth, journal_dir=journal)
    if stage == "claimed":
        store._mark_sent = lambda claim: os._exit(9)  # killed before the request leaves
    if stage == "answered":
        store._finish = lambda *a, **k: os._exit(9)  # killed between the answer and the write
    store.refresh(1)
""")


def _die_refreshing(db: Database, journal: Path, stage: str) -> None:
    proc = subprocess.run([sys.executable, "-c", DYING_REFRESH, str(db.url), str(journal), stage],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr


def _no_waiting(seconds: float) -> None:
    raise AssertionError(f"waited {seconds} s for a refresh whose process is dead")


def test_refresh_killed_before_its_request_left_reuses_the_refresh_token(
        db: Database, tmp_path: Path) -> None:
    clock, oauth = FakeClock(T0), Refresher()
    TokenStore(db, clock=clock).set_tokens("AT-1", "RT-1", 90000)
    _die_refreshing(db, tmp_path / "j", "claimed")
    survivor = TokenStore(Database(str(db.url)), clock=clock, refresher=oauth, claim_timeout=3600,
                          sleep=_no_waiting, journal_dir=tmp_path / "j")
    st = survivor.status()
    assert st["state"] == "interrupted" and "same refresh token" in st["detail"]
    token, version = survivor.current()  # at once: the dead claimer is on this node
    assert token == "AT-2" and oauth.calls == ["RT-1"]
    row = stored(db)
    assert (row.access_token, row.refresh_token, row.version) == ("AT-2", "RT-2", version)
    assert survivor.status()["state"] == "ready"


def test_refresh_killed_after_its_request_left_says_at_once_an_administrator_must_grant(
        db: Database, tmp_path: Path) -> None:
    clock, oauth = FakeClock(T0), Refresher()
    TokenStore(db, clock=clock).set_tokens("AT-1", "RT-1", 90000)
    _die_refreshing(db, tmp_path / "j", "sent")
    survivor = TokenStore(Database(str(db.url)), clock=clock, refresher=oauth, claim_timeout=3600,
                          sleep=_no_waiting, journal_dir=tmp_path / "j")
    assert "before the answer was stored" in survivor.status()["detail"]
    with pytest.raises(base.AuthenticationError) as info:
        survivor.current()
    assert info.value.reason == "refresh-interrupted"
    message = str(info.value)
    assert "stopped before Zalo's answer was stored (its process died)" in message
    assert "single-use" in message and "outreach gateways zalo set-token" in message
    assert oauth.calls == []  # RT-1 may be spent: never sent a second time
    assert survivor.status()["state"] == "unknown"
    with pytest.raises(base.AuthenticationError):
        survivor.current()
    assert oauth.calls == []
    assert stored(db).refresh_token == "RT-1"


def test_refresh_killed_between_the_answer_and_the_write_is_completed_from_the_journal(
        db: Database, tmp_path: Path) -> None:
    clock, oauth = FakeClock(T0), Refresher()
    TokenStore(db, clock=clock).set_tokens("AT-1", "RT-1", 90000)
    journal = tmp_path / "j"
    _die_refreshing(db, journal, "answered")
    files = list(journal.iterdir())
    assert [f.name for f in files] == ["zalo-2.grant"]
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    assert "RT-2" not in files[0].read_text()  # encrypted like the database copy
    survivor = TokenStore(Database(str(db.url)), clock=clock, refresher=oauth, claim_timeout=3600,
                          sleep=_no_waiting, journal_dir=journal)
    assert "in the journal" in survivor.status()["detail"]
    assert survivor.current() == ("AT-2", 3)
    assert oauth.calls == []  # no second OAuth call: the answer Zalo gave is used
    row = stored(db)
    assert (row.access_token, row.refresh_token) == ("AT-2", "RT-2")
    assert list(journal.iterdir()) == []


def test_a_database_failure_after_the_answer_keeps_the_tokens_in_the_journal(
        db: Database, tmp_path: Path) -> None:
    clock, oauth = FakeClock(T0), Refresher()
    store = TokenStore(db, clock=clock, refresher=oauth, sleep=_no_waiting,
                       journal_dir=tmp_path / "j")
    store.set_tokens("AT-1", "RT-1", 90000)
    real_finish, failures = store._finish, []

    def failing_finish(claim, **kw):
        if kw.get("access_token") == "AT-2" and not failures:
            failures.append(1)
            raise OSError("disk I/O error")
        return real_finish(claim, **kw)

    store._finish = failing_finish
    with pytest.raises(base.UnavailableError) as info:
        store.refresh(1)
    assert info.value.reason == "token-store-failed"
    assert store.current() == ("AT-2", 3)  # the next call stores the journalled pair
    assert oauth.calls == ["RT-1"]
    assert (stored(db).access_token, stored(db).refresh_token) == ("AT-2", "RT-2")


def test_a_claim_of_another_node_is_waited_for_then_taken_over_if_never_sent(
        db: Database, tmp_path: Path) -> None:
    from outreach.gateways.zalo_tokens import _REFRESHING

    clock, oauth = FakeClock(T0), Refresher()
    store = TokenStore(db, clock=clock, refresher=oauth, claim_timeout=60, poll_interval=0.01,
                       journal_dir=tmp_path / "j")
    store.set_tokens("AT-1", "RT-1", 90000)
    with db.engine.begin() as conn:  # a claim written by a process on another machine
        conn.execute(GatewayToken.__table__.update().values(
            access_token=f"{_REFRESHING}:other-host:4242:abcd1234", version=2,
            updated_at=clock.now()))
    with pytest.raises(base.UnavailableError) as info:  # it may still be working
        TokenStore(db, clock=clock, refresher=oauth, claim_timeout=0.05, poll_interval=0.01,
                   journal_dir=tmp_path / "j").current()
    assert info.value.reason == "token-refresh-pending" and oauth.calls == []
    clock.advance(61)
    assert store.current()[0] == "AT-2"
    assert oauth.calls == ["RT-1"]


def test_waiting_for_a_live_refresh_gives_up_as_transient(db: Database) -> None:
    clock = FakeClock(T0)
    store = TokenStore(db, clock=clock, refresher=Refresher(), claim_timeout=0.2,
                       poll_interval=0.01)
    store.set_tokens("AT-1", "RT-1", 90000)
    assert store._claim(1) is not None  # another worker is refreshing right now
    with pytest.raises(base.UnavailableError) as info:
        store.current()
    assert info.value.reason == "token-refresh-pending"


# -- the case from the field, against the fake Zalo server --------------------------------------

def _zns(i: int, phone: str) -> OutboundMessage:
    return OutboundMessage(delivery_id=i, campaign_id="c", channel="zalo", to=phone, body="-",
                           template_id="301234", template_data={"ho_ten": "Lê Văn Tám"})


def _stored_refresh_token(db_path: Path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        from outreach import secretstore

        return secretstore.unseal(
            conn.execute("select refresh_token from gateway_tokens").fetchone()[0])
    finally:
        conn.close()


def _watch_retries(z: FakeZalo, db_path: Path) -> list[tuple[str, str]]:
    """At every send carrying a token other than the first, note the stored refresh token."""
    seen: list[tuple[str, str]] = []

    def hook(rec) -> None:  # noqa: ANN001
        if rec.path == "/message/template" and rec.access_token != FIRST_ACCESS_TOKEN:
            seen.append((rec.access_token, _stored_refresh_token(db_path)))

    z.hooks.append(hook)
    return seen


def test_two_threads_one_refresh_new_token_stored_before_retries_restart_safe(
        db_path: Path, db: Database, zalo_server: FakeZalo) -> None:
    z = zalo_server
    z.oauth_delay, z.token_error_delay = 0.3, 0.2
    gws = [ZaloGateway(db=Database(f"sqlite:///{db_path}"), **z.gateway_options())
           for _ in range(2)]
    z.seed(gws[0].tokens)
    retries = _watch_retries(z, db_path)
    z.expire_access_tokens()  # the 25 h are over while both workers send
    barrier = threading.Barrier(2)
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = gws[i].send(_zns(i, f"+8491234500{i}")).provider_message_id
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    new_access, new_refresh = z.issued[1]
    assert z.refresh_calls == 1
    assert z.refresh_tokens_received == [FIRST_REFRESH_TOKEN]
    for i in range(2):  # each worker: one rejected send, ONE retry with the new token
        mine = [r for r in z.send_requests() if r.json["phone"] == f"8491234500{i}"]
        assert [(r.access_token, r.outcome) for r in mine] == [
            (FIRST_ACCESS_TOKEN, "error:-124"), (new_access, "accept")]
    assert sorted(results.values()) == sorted(s.msg_id for s in z.sends)
    # the new refresh token was committed before any retry left
    assert retries == [(new_access, new_refresh), (new_access, new_refresh)]
    assert _stored_refresh_token(db_path) == new_refresh

    # restart: new Database and gateway objects; the token expires again
    for g in gws:
        g.close()
    restarted = ZaloGateway(db=Database(f"sqlite:///{db_path}"), **z.gateway_options())
    z.expire_access_tokens()
    restarted.send(_zns(9, "+84912345009"))
    assert z.refresh_tokens_received == [FIRST_REFRESH_TOKEN, new_refresh]  # never the old one
    assert not any(r.outcome == "oauth:invalid-refresh-token" for r in z.requests)


WORKER = textwrap.dedent("""
    import json, os, sys, time
    from outreach.ledger.db import Database
    from outreach.gateways.base import OutboundMessage
    from outreach.gateways.zalo import ZaloGateway

    db_url, base_url, app_id, secret, phone, ready, go = sys.argv[1:]
    gw = ZaloGateway(db=Database(db_url), app_id=app_id, secret_key=secret, oa_api_url=base_url,
                     zns_api_url=base_url, oauth_url=base_url, trust_env=False, environ={})
    open(ready, "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.002)
    msg = OutboundMessage(delivery_id=int(phone[-3:]), campaign_id="c", channel="zalo", to=phone,
                          body="-", template_id="301234", template_data={"ho_ten": "Lê Văn Tám"})
    try:
        print(json.dumps({"msg_id": gw.send(msg).provider_message_id}))
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "reason": getattr(exc, "reason", "")}))
""")


@pytest.mark.slow
def test_two_processes_sharing_one_sqlite_file_refresh_once(db_path: Path, db: Database,
                                                            tmp_path: Path,
                                                            zalo_server: FakeZalo) -> None:
    z = zalo_server
    z.oauth_delay, z.token_error_delay = 0.4, 0.3
    z.seed(TokenStore(db))
    retries = _watch_retries(z, db_path)
    z.expire_access_tokens()
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    go = tmp_path / "go"
    phones = ["+84912345101", "+84912345102"]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    procs = []
    for i, phone in enumerate(phones):
        ready = tmp_path / f"ready{i}"
        procs.append((ready, subprocess.Popen(
            [sys.executable, str(script), f"sqlite:///{db_path}", z.url, z.app_id, z.secret_key,
             phone, str(ready), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)))
    deadline = time.monotonic() + 60
    while not all(r.exists() for r, _ in procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = []
    for _, p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert all("msg_id" in o for o in outputs), outputs
    new_access, new_refresh = z.issued[1]
    assert z.refresh_calls == 1
    assert z.refresh_tokens_received == [FIRST_REFRESH_TOKEN]
    for phone in phones:
        mine = [r for r in z.send_requests() if r.json["phone"] == phone[1:]]
        assert [(r.access_token, r.outcome) for r in mine] == [
            (FIRST_ACCESS_TOKEN, "error:-124"), (new_access, "accept")]
    assert retries == [(new_access, new_refresh)] * 2
    row = stored(db)
    assert (row.access_token, row.refresh_token) == (new_access, new_refresh)

    # after a restart only the stored refresh token is used
    z.expire_access_tokens()
    ZaloGateway(db=Database(f"sqlite:///{db_path}"), **z.gateway_options()).send(
        _zns(5, "+84912345105"))
    assert z.refresh_tokens_received == [FIRST_REFRESH_TOKEN, new_refresh]


def test_reusing_a_spent_refresh_token_is_refused_by_the_fake(zalo_server: FakeZalo,
                                                              db: Database) -> None:
    # the fake enforces single use, so the tests above would notice a second use
    gw = ZaloGateway(db=db, **zalo_server.gateway_options())
    assert gw.oauth.refresh(FIRST_REFRESH_TOKEN).refresh_token == zalo_server.refresh_token
    with pytest.raises(RefreshRejected):
        gw.oauth.refresh(FIRST_REFRESH_TOKEN)


@pytest.mark.parametrize(("fault", "expected"), [
    ("drop_before", RefreshOutcomeUnknown), ("drop_after", RefreshOutcomeUnknown),
    ("http:502", RefreshOutcomeUnknown), ("reject", RefreshRejected)])
def test_oauth_client_classifies_failures(zalo_server: FakeZalo, db: Database, fault: str,
                                          expected: type) -> None:
    gw = ZaloGateway(db=db, **zalo_server.gateway_options())
    zalo_server.queue_oauth(fault)
    with pytest.raises(expected):
        gw.oauth.refresh(FIRST_REFRESH_TOKEN)


def test_oauth_connect_refused_is_not_sent(db: Database) -> None:
    from tests.fakes.zalo_server import closed_port

    url = f"http://127.0.0.1:{closed_port()}"
    gw = ZaloGateway(db=db, app_id="1", secret_key="s", oauth_url=url, zns_api_url=url,
                     oa_api_url=url, trust_env=False, environ={})
    with pytest.raises(RefreshNotSent):
        gw.oauth.refresh("RT")


def test_oauth_request_shape(zalo_server: FakeZalo, db: Database) -> None:
    gw = ZaloGateway(db=db, **zalo_server.gateway_options())
    grant = gw.oauth.refresh(FIRST_REFRESH_TOKEN)
    [req] = zalo_server.requests
    assert (req.method, req.path) == ("POST", "/v4/oa/access_token")
    assert req.headers["secret_key"] == zalo_server.secret_key
    assert req.form == {"app_id": zalo_server.app_id, "grant_type": "refresh_token",
                        "refresh_token": FIRST_REFRESH_TOKEN}
    assert grant.expires_in == 90000  # "90000" as a string from Zalo


# -- CLI --------------------------------------------------------------------------------------

def test_cli_set_token_and_token_status_never_print_tokens(db: Database) -> None:
    from outreach.cli.gateways import gateways

    runner = CliRunner()
    url = str(db.url)
    result = runner.invoke(gateways, ["zalo", "token-status", "--database-url", url])
    assert result.exit_code == 1 and "missing" in result.output
    result = runner.invoke(gateways, ["zalo", "set-token", "--database-url", url,
                                      "--expires-in", "3600", "--operator", "can-bo-1"],
                           env={"ZALO_ACCESS_TOKEN": "AT-secret-1", "ZALO_REFRESH_TOKEN": "RT-secret-1"})
    assert result.exit_code == 0, result.output
    assert "version 1" in result.output
    result = runner.invoke(gateways, ["zalo", "set-token", "--database-url", url],
                           input="RT-secret-2\nAT-secret-2\n")  # prompted, hidden
    assert result.exit_code == 0, result.output
    row = stored(db)
    assert (row.access_token, row.refresh_token, row.version) == ("AT-secret-2", "RT-secret-2", 2)
    status = runner.invoke(gateways, ["zalo", "token-status", "--database-url", url])
    assert status.exit_code == 0, status.output
    assert "ready" in status.output and "2" in status.output and "(Vietnam time)" in status.output
    for out in (result.output, status.output):
        for secret in ("AT-secret-1", "RT-secret-1", "AT-secret-2", "RT-secret-2"):
            assert secret not in out
    with db.engine.connect() as conn:
        audits = conn.execute(select(AuditEntry).where(AuditEntry.action == "token")).all()
    assert len(audits) == 2 and audits[0].operator == "can-bo-1"
    assert "secret" not in json.dumps([a.details for a in audits])


def test_cli_token_status_in_vietnamese_with_vietnamese_times(db: Database) -> None:
    """Expiry and update times as ``08:00 ngày 30/07/2024``, labels and the state's note in
    Vietnamese; English with --lang en."""
    from outreach.cli import main
    from tests.helpers import english_words

    # stored at 09:00 on 30 July 2024 in Vietnam, valid 1 h: expired by now
    TokenStore(db, clock=FakeClock(T0)).set_tokens("AT-secret", "RT-secret", 3600)
    runner = CliRunner()
    args = ["gateways", "zalo", "token-status", "--database-url", str(db.url)]
    vi = runner.invoke(main, ["--lang", "vi", "--wide", *args])
    assert vi.exit_code == 0, vi.output
    out = " ".join(vi.output.split())
    assert "hết hạn lúc │ 10:00 ngày 30/07/2024 (giờ Việt Nam)" in out
    assert "cập nhật lúc │ 09:00 ngày 30/07/2024 (giờ Việt Nam)" in out
    assert "tình trạng │ hết hạn" in out
    assert "ghi chú │ tự động làm mới ở lần gửi tới" in out
    assert " giây" in out and english_words(vi.output) == []
    assert "secret" not in vi.output
    en = runner.invoke(main, ["--lang", "en", "--wide", *args])
    out = " ".join(en.output.split())
    assert "expires at │ 10:00 30/07/2024 (Vietnam time)" in out
    assert "note │ refreshed automatically on the next send" in out


def test_token_messages_in_vietnamese(db: Database) -> None:
    from outreach import i18n
    from tests.helpers import english_words

    i18n.set_language("vi")
    try:
        with pytest.raises(base.AuthenticationError) as info:
            TokenStore(db).current()
        assert str(info.value) == ("chưa lưu mã truy cập Zalo; quản trị viên của Official Account "
                                   "phải cấp quyền lại và chạy `outreach gateways zalo set-token`")
        assert english_words(str(info.value)) == []
        assert TokenStore(db).status()["detail"].startswith("chưa lưu mã truy cập nào; ")
    finally:
        i18n.set_language("en")


def test_refresh_log_lines_in_vietnamese(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """The worker's console during a refresh: Vietnamese, the expiry as a Vietnamese time."""
    import logging

    from outreach import i18n
    from tests.helpers import english_words

    caplog.set_level(logging.INFO, logger="outreach.gateways.zalo_tokens")
    store = TokenStore(db, clock=FakeClock(T0), refresher=Refresher())
    store.set_tokens("", "RT-1", 3600)  # no access token: the first use refreshes
    i18n.set_language("vi")
    try:
        assert store.current()[0] == "AT-2"
    finally:
        i18n.set_language("en")
    lines = [r.getMessage() for r in caplog.records]
    assert "đang làm mới mã truy cập zalo (phiên bản 1)" in lines, lines
    # 09:00 in Vietnam + 90 000 s = 10:00 the next day
    assert ("đã làm mới mã truy cập zalo (phiên bản 3, hết hạn lúc 10:00 ngày 31/07/2024)"
            in lines), lines
    assert all(english_words(line) == [] for line in lines), lines


def test_cli_set_token_without_access_token_refreshes_on_first_use(db: Database) -> None:
    from outreach.cli.gateways import gateways

    result = CliRunner().invoke(gateways, ["zalo", "set-token", "--database-url", str(db.url),
                                           "--refresh-token", "RT-1", "--access-token", ""])
    assert result.exit_code == 0, result.output
    oauth = Refresher()
    assert TokenStore(db, refresher=oauth).current()[0] == "AT-2"
    assert oauth.calls == ["RT-1"]


def test_cli_set_token_refuses_an_empty_refresh_token(db: Database) -> None:
    from outreach.cli.gateways import gateways

    result = CliRunner().invoke(gateways, ["zalo", "set-token", "--database-url", str(db.url),
                                           "--refresh-token", " ", "--access-token", "AT"])
    assert result.exit_code == 1 and "refresh token" in result.output


@pytest.mark.postgres
def test_threads_refresh_exactly_once_on_postgresql(pg_db: Database, pg_url: str) -> None:
    """Six threads, each with its own engine on the session's PostgreSQL schema (tests/pg.py:
    the server of OUTREACH_TEST_POSTGRES_URL or the local default; never skipped in CI)."""
    gateway = "zalo-test"
    oauth = Refresher(delay=0.3)
    TokenStore(pg_db, gateway, refresher=oauth).set_tokens("AT-1", "RT-1", 90000)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        local = Database(pg_url)
        store = TokenStore(local, gateway, refresher=oauth, poll_interval=0.01)
        _, seen = store.current()
        barrier.wait()
        results.append(store.refresh(seen))
        local.dispose()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == ["AT-2"] * 6
    assert oauth.calls == ["RT-1"]


def test_a_refresh_that_finished_after_it_was_read_is_not_called_interrupted(
        db: Database, tmp_path: Path) -> None:
    """A worker read the row while another thread's refresh was out; by the time it judges the
    holder gone, the holder has stored the new tokens: nothing is raised, the row is read again."""
    from outreach.gateways.zalo_tokens import _SENT
    from outreach.sending import leases

    clock = FakeClock(T0)
    store = TokenStore(db, clock=clock, refresher=Refresher(), journal_dir=tmp_path / "j")
    store.set_tokens("AT-1", "RT-1", 90000)
    gone = f"{leases.node_name()}:999999:deadbeef"  # a holder on this node whose process is gone
    with db.engine.begin() as conn:
        conn.execute(GatewayToken.__table__.update().values(access_token=f"{_SENT}:{gone}",
                                                            version=2, updated_at=clock.now()))
    stale = store._read()
    store.set_tokens("AT-2", "RT-2", 90000)  # meanwhile the refresh was stored after all
    assert store._settle_interrupted(stale) is None
    assert store.current()[0] == "AT-2" and store.status()["state"] == "ready"

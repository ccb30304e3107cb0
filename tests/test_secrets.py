"""Provider tokens encrypted at rest (OUTREACH_SECRET_KEY, Fernet), rotation, legacy rows."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select

from outreach import secretstore
from outreach.cli import main
from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.gateways.base import ConfigurationError
from outreach.gateways.zalo import ZaloGateway
from outreach.gateways.zalo_tokens import TokenGrant, TokenStore
from outreach.ledger.models import GatewayToken

T0 = dt.datetime(2024, 7, 30, 2, 0, tzinfo=dt.timezone.utc)
ACCESS = "AT-zalo-access-4f9c1d2e8b7a"
REFRESH = "RT-zalo-refresh-0a1b2c3d4e5f"
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY_A)
    database = Database(f"sqlite:///{tmp_path / 'tokens.db'}")
    database.upgrade()
    yield database
    database.dispose()


def file_bytes(db: Database) -> bytes:
    """Every byte SQLite keeps on disk for this database (file, -wal, -shm)."""
    path = Path(db.url[len("sqlite:///"):])
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal"),
                                              path.with_name(path.name + "-shm")) if p.exists())


def raw_row(db: Database) -> tuple[str, str]:
    with db.engine.connect() as conn:
        r = conn.execute(select(GatewayToken.access_token, GatewayToken.refresh_token)).one()
    return r.access_token, r.refresh_token


def cli(db: Database, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--database-url", db.url, *args])
    return r.exit_code, r.stdout, r.stderr


def test_tokens_are_not_in_the_database_file_and_still_usable(db: Database) -> None:
    store = TokenStore(db, clock=FakeClock(T0))
    store.set_tokens(ACCESS, REFRESH, 3600)
    access, refresh = raw_row(db)
    assert access.startswith("fernet:") and refresh.startswith("fernet:")
    assert ACCESS not in access + refresh and REFRESH not in access + refresh
    data = file_bytes(db)
    assert len(data) > 4096
    for secret in (ACCESS, REFRESH):
        assert secret.encode() not in data
    assert store.current() == (ACCESS, 1)
    assert store.status()["encrypted"] is True


def test_a_refresh_stores_the_new_tokens_encrypted(db: Database) -> None:
    clock = FakeClock(T0)
    calls: list[str] = []

    def refresher(rt: str) -> TokenGrant:
        calls.append(rt)
        return TokenGrant("AT-new-77aa88bb", "RT-new-99cc00dd", 90000)

    store = TokenStore(db, clock=clock, refresher=refresher)
    store.set_tokens(ACCESS, REFRESH, 100)  # expires within 300 s: refreshed at once
    assert store.current() == ("AT-new-77aa88bb", 3)
    assert calls == [REFRESH]  # the OAuth call got the plaintext refresh token
    data = file_bytes(db)
    for secret in ("AT-new-77aa88bb", "RT-new-99cc00dd"):
        assert secret.encode() not in data
    assert all(v.startswith("fernet:") for v in raw_row(db))


def test_a_backup_with_another_key_holds_no_usable_token(db: Database, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    TokenStore(db, clock=FakeClock(T0)).set_tokens(ACCESS, REFRESH, 3600)
    db.dispose()
    backup = tmp_path / "backup.db"
    shutil.copy(db.url[len("sqlite:///"):], backup)
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY_B)  # the thief's guess is any other key
    stolen = Database(f"sqlite:///{backup}")
    with pytest.raises(secretstore.SecretKeyError, match="cannot be decrypted"):
        TokenStore(stolen, clock=FakeClock(T0)).current()
    monkeypatch.delenv("OUTREACH_SECRET_KEY")
    with pytest.raises(secretstore.SecretKeyError, match="OUTREACH_SECRET_KEY is not set"):
        TokenStore(stolen, clock=FakeClock(T0)).current()
    stolen.dispose()


def test_missing_or_malformed_key_is_one_clear_error(db: Database,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUTREACH_SECRET_KEY")
    store = TokenStore(db, clock=FakeClock(T0))
    with pytest.raises(secretstore.SecretKeyError, match="OUTREACH_SECRET_KEY is not set"):
        store.set_tokens(ACCESS, REFRESH)
    with db.engine.connect() as conn:
        assert conn.execute(select(GatewayToken)).first() is None  # nothing written
    with pytest.raises(ConfigurationError, match="OUTREACH_SECRET_KEY"):
        ZaloGateway(db=db, app_id="123", secret_key="s")
    code, out, err = cli(db, "gateways", "zalo", "set-token", "--refresh-token", REFRESH,
                         "--access-token", ACCESS)
    assert code == 1 and "OUTREACH_SECRET_KEY is not set" in err
    assert "Traceback" not in out + err and REFRESH not in out + err
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "not-a-key")
    with pytest.raises(secretstore.SecretKeyError, match="key #1 is not a Fernet key"):
        store.set_tokens(ACCESS, REFRESH)


def test_plaintext_row_of_an_older_version_is_encrypted_on_first_use(db: Database) -> None:
    db.dispose()
    path = db.url[len("sqlite:///"):]
    conn = sqlite3.connect(path)
    conn.execute("insert into gateway_tokens (gateway, access_token, refresh_token, expires_at, "
                 "version, updated_at) values ('zalo', ?, ?, ?, 4, ?)",
                 (ACCESS, REFRESH, "2024-07-30 03:00:00.000000", "2024-07-30 02:00:00.000000"))
    conn.commit()
    conn.close()
    store = TokenStore(db, clock=FakeClock(T0))
    assert store.status()["encrypted"] is False
    assert store.current() == (ACCESS, 4)  # version unchanged: concurrent claims unaffected
    assert all(v.startswith("fernet:") for v in raw_row(db))
    db.dispose()
    data = file_bytes(db)
    for secret in (ACCESS, REFRESH):
        assert secret.encode() not in data  # secure_delete + checkpoint: no old page left


def test_rotate_command_re_encrypts_with_the_new_key(db: Database,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    TokenStore(db, clock=FakeClock(T0)).set_tokens(ACCESS, REFRESH, 3600)
    before = raw_row(db)
    monkeypatch.setenv("OUTREACH_SECRET_KEY", f"{KEY_B},{KEY_A}")
    code, out, err = cli(db, "secrets", "rotate")
    assert code == 0, err
    kid = secretstore.key_id()
    assert out.strip() == f"zalo: tokens encrypted with key {kid}"
    assert KEY_A not in out + err and KEY_B not in out + err
    after = raw_row(db)
    assert after != before
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY_B)  # the old key is gone
    assert TokenStore(db, clock=FakeClock(T0)).current() == (ACCESS, 1)
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY_A)
    with pytest.raises(secretstore.SecretKeyError):
        TokenStore(db, clock=FakeClock(T0)).current()
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY_B)
    code, out, _ = cli(db, "audit", "list")
    assert code == 0 and "token" in out
    code, out, _ = cli(db, "secrets", "status")
    assert code == 0 and out.strip() == "zalo: tokens encrypted (expired)"  # T0 is in 2024


def test_rotate_without_the_old_key_changes_nothing(db: Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    TokenStore(db, clock=FakeClock(T0)).set_tokens(ACCESS, REFRESH, 3600)
    before = raw_row(db)
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY_B)
    code, out, err = cli(db, "secrets", "rotate")
    assert code == 1 and "put the old key after the new one" in err
    assert raw_row(db) == before


def test_status_of_a_plaintext_row_says_so(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    with db.engine.begin() as conn:
        conn.execute(GatewayToken.__table__.insert().values(
            gateway="zalo", access_token=ACCESS, refresh_token=REFRESH, expires_at=T0, version=1,
            updated_at=T0))
    monkeypatch.delenv("OUTREACH_SECRET_KEY")  # status needs no key
    code, out, _ = cli(db, "secrets", "status")
    assert code == 0
    assert out.strip() == "zalo: tokens in PLAINTEXT (expired); run `outreach secrets rotate`"
    assert ACCESS not in out and REFRESH not in out

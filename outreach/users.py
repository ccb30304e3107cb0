"""Accounts of the web application: roles, Argon2id password hashes, enabling and disabling.

Roles, each including the ones before it (``ROLES`` order):

- ``viewer``: every page and figure, whole phone numbers never;
- ``operator``: also launches, pauses, asks for approval, sees whole numbers of people not reached
  (each such view is recorded in the audit log);
- ``approver``: also approves a campaign prepared by someone else (maker–checker);
- ``admin``: everything.

Passwords are hashed with argon2-cffi's ``PasswordHasher`` (Argon2id, the library's default
parameters, RFC 9106); a hash made with older parameters is re-hashed at the next sign-in.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, insert, select, update

from outreach.i18n import _, current
from outreach.reporting import audit
from outreach.ledger.models import User

ROLES = ("viewer", "operator", "approver", "admin")
#: A role's name in Vietnamese, as the web dashboard and the Vietnamese console show it (the
#: codes stay codes in the database, the JSON and the ``--role`` option): :func:`role_label`.
ROLE_VI = {"viewer": "Người xem", "operator": "Cán bộ vận hành", "approver": "Người phê duyệt",
           "admin": "Quản trị"}
#: Roles that may see whole phone numbers (audited) and act on campaigns.
OPERATOR_ROLES = ("operator", "approver", "admin")
APPROVER_ROLES = ("approver", "admin")
MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
_hasher = PasswordHasher()


class UserError(ValueError):
    """A refused account operation, as one line (the CLI exits 1)."""


@dataclass(frozen=True)
class Account:
    """A user as the application sees it (no hash)."""

    id: int
    username: str
    display_name: str | None
    role: str
    active: bool

    def has(self, role: str) -> bool:
        """True when this account's role includes ``role`` (see :data:`ROLES`)."""
        return self.active and ROLES.index(self.role) >= ROLES.index(role)

    @property
    def label(self) -> str:
        return self.display_name or self.username


def role_label(role: str, *, in_sentence: bool = False) -> str:
    """A role as the console shows it: the code itself in English (``approver``), its
    :data:`ROLE_VI` name in Vietnamese (``Người phê duyệt``; ``in_sentence``: with a small first
    letter, ``vai trò người phê duyệt``). A role without a name is returned unchanged."""
    name = ROLE_VI.get(role)
    if name is None or current() == "en":
        return role
    return name[0].lower() + name[1:] if in_sentence else name


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def normalise_username(name: str) -> str:
    """Lower-case NFC; raises UserError unless 2–64 characters of ``a-z 0-9 . _ @ -``."""
    name = unicodedata.normalize("NFC", (name or "").strip()).lower()
    if not _USERNAME.match(name):
        raise UserError(_("user name {name!r}: 2–64 characters, letters a-z, digits, '.', "
                          "'_', '@' or '-', starting with a letter or digit").format(name=name))
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(_("role {role!r}: one of {roles}").format(role=role,
                                                                  roles=", ".join(ROLES)))
    return role


def hash_password(password: str) -> str:
    """An Argon2id hash; raises UserError for a password under MIN_PASSWORD_LENGTH characters."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(_("the password must have at least {n} characters").format(
            n=MIN_PASSWORD_LENGTH))
    return _hasher.hash(password)


def _account(row: User | object) -> Account:
    return Account(row.id, row.username, row.display_name, row.role, bool(row.active))  # type: ignore[attr-defined]


def add(conn: Connection, username: str, role: str, *, password: str | None,
        display_name: str | None = None, operator: str | None = None) -> Account:
    """Create an account (audited ``user-add``). ``password`` None: proxy sign-in only.
    Raises UserError for a bad name, role, short password or a name already taken."""
    username = normalise_username(username)
    check_role(role)
    if get(conn, username) is not None:
        raise UserError(_("user {name!r} already exists").format(name=username))
    pw_hash = hash_password(password) if password is not None else None
    now = _now()
    name = unicodedata.normalize("NFC", display_name) if display_name else None
    uid = conn.execute(insert(User).values(
        username=username, display_name=name, role=role, password_hash=pw_hash, active=True,
        created_at=now, updated_at=now)).inserted_primary_key[0]
    audit.record(conn, "user-add", operator=operator, now=now,
                 details={"user": username, "role": role, "password": pw_hash is not None})
    return Account(uid, username, name, role, True)


def get(conn: Connection, username: str) -> Account | None:
    row = conn.execute(select(User.__table__).where(User.username == username.strip().lower())).first()
    return _account(row) if row else None


def list_all(conn: Connection) -> list[Account]:
    return [_account(r) for r in conn.execute(select(User.__table__).order_by(User.username))]


def set_active(conn: Connection, username: str, active: bool, *,
               operator: str | None = None) -> Account:
    """Disable (or enable) an account (audited ``user-disable`` / ``user-enable``)."""
    acc = get(conn, username)
    if acc is None:
        raise UserError(_("no user {name!r}").format(name=username))
    conn.execute(update(User).where(User.id == acc.id).values(active=active, updated_at=_now()))
    audit.record(conn, "user-enable" if active else "user-disable", operator=operator,
                 details={"user": acc.username})
    return Account(acc.id, acc.username, acc.display_name, acc.role, active)


def authenticate(conn: Connection, username: str, password: str) -> Account | None:
    """The active account whose password matches, else None (a wrong name costs a hash too,
    so timing does not tell which names exist). Records ``last_login_at``."""
    user = conn.execute(select(User.__table__).where(
        User.username == (username or "").strip().lower())).first()
    stored = user.password_hash if user is not None else None
    try:
        if stored is None:
            _hasher.hash(password or "-")
            return None
        _hasher.verify(stored, password or "")
    except (VerificationError, InvalidHashError):
        return None
    assert user is not None
    if not user.active:
        return None
    values: dict[str, object] = {"last_login_at": _now()}
    if _hasher.check_needs_rehash(stored):
        values["password_hash"] = _hasher.hash(password)
    conn.execute(update(User).where(User.id == user.id).values(**values))
    return _account(user)

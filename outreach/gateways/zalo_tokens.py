"""Zalo OAuth v4 tokens in the database: the single-use refresh token is used once, by one worker."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from pathlib import Path

from outreach import config, safeio, secretstore
from outreach.i18n import N_, _, when
from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.ledger.db import Database, retry_write
from outreach.gateways.base import AuthenticationError, UnavailableError
from outreach.ledger.models import GatewayToken
from outreach.sending import leases

log = logging.getLogger(__name__)

#: Refresh when the access token expires within this many seconds (proactive refresh).
PROACTIVE_SECONDS = 300
#: The access token lives 90 000 s (25 h) per Zalo's OAuth v4 answer (domain-facts, "OAuth v4").
DEFAULT_EXPIRES_IN = 90_000

SET_TOKEN_HINT = N_("an administrator of the Official Account must grant access again and run "
                    "`outreach gateways zalo set-token`")


def set_token_hint() -> str:
    """:data:`SET_TOKEN_HINT` in the interface language."""
    return _(SET_TOKEN_HINT)

# Row states are encoded in the access_token column (Zalo tokens never start with "!"), so the
# schema stays the one in outreach.ledger.models. Tokens themselves are stored encrypted
# (outreach.secretstore: "fernet:..."); the row states and an empty access token stay plain
# (they are not secrets, and `status()` reads them without the key). The refresh_token column always holds the newest
# refresh token Zalo gave us; it is never sent again once a call that may have consumed it failed.
_REFRESHING = "!refreshing"  # claimed, the OAuth request has not left yet
_SENT = "!sent"  # the OAuth request may have left: the refresh token may be spent
_REJECTED = "!rejected"
_UNKNOWN = "!unknown"


class RefreshError(Exception):
    """Raised by a refresher (the OAuth call). ``code`` is Zalo's error code, if any."""

    def __init__(self, detail: str, *, code: str | int | None = None) -> None:
        super().__init__(detail)
        self.code = None if code is None else str(code)


class RefreshNotSent(RefreshError):
    """The OAuth request never left (connect failed): the refresh token was certainly not used."""


class RefreshRejected(RefreshError):
    """Zalo answered and refused the refresh (invalid, used or expired refresh token, bad app)."""


class RefreshOutcomeUnknown(RefreshError):
    """The request was sent but no usable answer came back: the token may have been consumed."""


@dataclass(frozen=True)
class TokenGrant:
    """A successful OAuth answer. ``expires_in`` in seconds (Zalo sends "90000" as a string)."""

    access_token: str
    refresh_token: str
    expires_in: int


#: ``refresher(refresh_token) -> TokenGrant``; raises a :class:`RefreshError` subclass.
Refresher = Callable[[str], TokenGrant]


@dataclass(frozen=True)
class _Claim:
    version: int  # the version our claim wrote
    refresh_token: str
    access_token: str
    expires_at: dt.datetime
    owner: str = ""  # leases.owner_id() of the claiming holder


class TokenStore:
    """The OAuth tokens of one gateway in table ``gateway_tokens``, shared by every worker.

    ``current() -> (access_token, version)`` and ``refresh(seen_version) -> access_token``.

    Zalo rules (domain-facts "OAuth v4"; cases README "Single-use Zalo refresh token"): the
    access token lives ~25 h; the refresh token lives ~3 months but is SINGLE-USE: every refresh
    returns a new one which must be stored, or an administrator has to grant access again.

    How exactly one worker refreshes, on SQLite and PostgreSQL alike (no lock is held during
    the network call, so webhooks and the dispatcher keep writing meanwhile):

    1. **Claim** (one short committed transaction): ``UPDATE gateway_tokens SET
       access_token='!refreshing:<host:pid>', version=version+1 WHERE gateway=? AND
       version=<seen>``. Every change of the row bumps ``version``, so this compare-and-swap
       succeeds for one worker only (PostgreSQL re-checks the WHERE after a concurrent commit;
       SQLite serialises writers with BEGIN IMMEDIATE). The claim is committed BEFORE the OAuth
       call, so a second worker or process can never send the same refresh token.
    2. **Mark sent** (``'!sent:<owner>'``, a compare-and-swap on the claim marker, committed)
       just before the OAuth request leaves: from here on the refresh token may be spent.
    3. **Call** Zalo OAuth with the refresh token read in the claim transaction.
    4. **Journal, then store.** The answer is first written, encrypted, to a journal file
       (``journal_dir``/``<gateway>-<version>.grant``, mode 0600, fsynced), then the new access
       + refresh tokens and ``version+1`` in one committed transaction (guarded by the claimed
       version) BEFORE the new access token is returned to anyone; the journal is then removed.
    5. Losers poll (``poll_interval`` seconds) until the row is ready again and use the new
       access token; they never call OAuth.

    A refresh interrupted by the death of its process (``kill -9``, a crash, a lost machine) is
    settled by the next process from what the row and the journal say, without waiting when the
    claimer was on this node (its process id tells it is dead; :func:`outreach.sending.leases.alive`),
    after ``claim_timeout`` seconds when it was on another node:

    - claimed, never marked sent: the refresh token was certainly not used, so the claim is
      taken over and the same refresh token is used (no administrator needed);
    - marked sent and the answer in the journal: the new token pair is stored from the journal;
    - marked sent, no journal: the single-use token may be spent, so it is never sent again;
      :class:`AuthenticationError` (reason ``refresh-interrupted``) says precisely that, once,
      and the row becomes ``unknown``.

    Failures of a live refresh: a connect failure (request never sent) releases the claim and
    raises :class:`UnavailableError`; Zalo refusing the refresh token marks the row ``rejected``
    and a request that may have reached Zalo without an answer marks it ``unknown``; both raise
    :class:`AuthenticationError` (run paused) and are never retried automatically, since the
    refresh token may be spent. After a restart, only the stored newest refresh token is ever
    read; ``outreach gateways zalo set-token`` resets the row.

    Tokens are encrypted at rest with the key(s) in ``OUTREACH_SECRET_KEY``
    (:mod:`outreach.secretstore`); reading or writing a token without it raises
    :class:`outreach.secretstore.SecretKeyError`. A row written in plaintext by an older
    version is encrypted on first use (compare-and-swap on the stored values; the version is
    not bumped, so a concurrent claim is unaffected) or by :meth:`reseal`.

    ``clock`` gives wall-clock time for expiry (``expires_at``, aware UTC); ``sleep`` and
    ``monotonic`` pace the polling.
    """

    def __init__(self, db: Database, gateway: str = "zalo", clock: Clock = SYSTEM_CLOCK, *,
                 refresher: Refresher | None = None, proactive_seconds: float = PROACTIVE_SECONDS,
                 claim_timeout: float = 90.0, poll_interval: float = 0.05,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 journal_dir: str | os.PathLike[str] | None = None) -> None:
        self.db = db
        self.journal_dir = Path(journal_dir) if journal_dir is not None else (
            config.home_dir() / "tokens")
        self.gateway = gateway
        self.clock = clock
        self.refresher = refresher
        self.proactive_seconds = proactive_seconds
        self.claim_timeout = claim_timeout
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._monotonic = monotonic

    # -- reading ----------------------------------------------------------------------------
    def _read(self) -> Any:
        with self.db.engine.connect() as conn:
            return conn.execute(select(GatewayToken).where(GatewayToken.gateway == self.gateway)
                                ).first()

    def status(self) -> dict[str, Any]:
        """Non-secret facts: ``{"gateway", "state", "version", "expires_at", "expires_in_seconds",
        "updated_at", "detail"}``. ``state`` is ``missing``, ``ready``, ``expired``,
        ``refreshing``, ``interrupted`` (a refresh whose process died), ``rejected`` or ``unknown``.
        Never contains a token; ``encrypted`` (True/False) says whether the stored refresh token
        is encrypted, and needs no key."""
        row = self._read()
        if row is None:
            return {"gateway": self.gateway, "state": "missing", "version": None, "encrypted": None,
                    "expires_at": None, "expires_in_seconds": None, "updated_at": None,
                    "detail": _("no token stored; {hint}").format(hint=set_token_hint())}
        now = self.clock.now()
        state, detail = _state(row.access_token), None
        if state == "ready" and row.expires_at <= now:
            state = "expired"
            detail = _("refreshed automatically on the next send")
        elif state in ("refreshing", "sent"):
            owner = row.access_token.partition(":")[2] or "?"
            if self._claim_dead(row, now):
                state = "interrupted"
                if _state(row.access_token) == "refreshing":
                    detail = _("a refresh by {owner} stopped before its request left; the "
                               "next send uses the same refresh token").format(owner=owner)
                elif self._journal(row.version) is not None:
                    detail = _("a refresh by {owner} stopped after Zalo answered; the answer "
                               "is in the journal and the next send stores it").format(owner=owner)
                else:
                    detail = _("a refresh by {owner} stopped after its request left and "
                               "before the answer was stored; {hint}").format(
                                   owner=owner, hint=set_token_hint())
            else:
                state = "refreshing"
                detail = _("refresh in progress ({owner})").format(owner=owner)
        elif state in ("rejected", "unknown"):
            detail = _dead_message(row.access_token)
        return {"gateway": self.gateway, "state": state, "version": row.version,
                "encrypted": secretstore.is_sealed(row.refresh_token),
                "expires_at": row.expires_at,
                "expires_in_seconds": int((row.expires_at - now).total_seconds()),
                "updated_at": row.updated_at, "detail": detail}

    # -- writing by the operator --------------------------------------------------------------
    def set_tokens(self, access_token: str | None, refresh_token: str,
                   expires_in: float = DEFAULT_EXPIRES_IN, *, conn: Any = None) -> int:
        """Store tokens obtained by an administrator (OAuth consent); returns the new version.

        ``access_token`` may be None/empty: the first send then refreshes. ``expires_in`` in
        seconds. Overrides any state (a stuck claim, a rejected token). Raises ValueError on an
        empty refresh token or a value starting with "!" (reserved for row states).
        """
        if not refresh_token or refresh_token.startswith("!"):
            raise ValueError("the refresh token is empty or malformed")
        access_token = access_token or ""
        if access_token.startswith("!"):
            raise ValueError("the access token is malformed")
        now = self.clock.now()
        expires_at = now + dt.timedelta(seconds=float(expires_in)) if access_token else now
        mf = secretstore.cipher()  # SecretKeyError before anything is written
        access_token, refresh_token = _seal(access_token, mf), _seal(refresh_token, mf)

        def write(c: Any) -> int:
            row = c.execute(select(GatewayToken.version).where(
                GatewayToken.gateway == self.gateway)).first()
            version = (row[0] if row else 0) + 1
            ins = (postgresql.insert if c.dialect.name == "postgresql" else sqlite.insert)(GatewayToken)
            values = {"access_token": access_token, "refresh_token": refresh_token,
                      "expires_at": expires_at, "version": version, "updated_at": now}
            c.execute(ins.values(gateway=self.gateway, **values).on_conflict_do_update(
                index_elements=["gateway"], set_={**values,
                                                  "version": GatewayToken.__table__.c.version + 1}))
            return c.execute(select(GatewayToken.version).where(
                GatewayToken.gateway == self.gateway)).scalar_one()

        if conn is not None:
            return write(conn)
        with self.db.engine.begin() as c:
            return write(c)

    # -- the worker side ----------------------------------------------------------------------
    def current(self) -> tuple[str, int]:
        """The access token to send with and its version; refreshes (once, across all workers)
        when it is expired or expires within ``proactive_seconds``.

        Raises :class:`AuthenticationError` (no token, refresh token refused or possibly spent)
        or :class:`UnavailableError` (Zalo OAuth unreachable, or another worker's refresh is
        still running after ``claim_timeout``).
        """
        return self._obtain(None)

    def refresh(self, seen_version: int) -> str:
        """A fresh access token after Zalo rejected the one of ``seen_version`` (-124/-216/-220).

        If another worker already refreshed (stored version differs), returns its token without
        calling OAuth. Same errors as :meth:`current`.
        """
        return self._obtain(seen_version)[0]

    def _obtain(self, seen: int | None) -> tuple[str, int]:
        deadline = self._monotonic() + self.claim_timeout
        while True:
            row = self._read()
            if row is None:
                raise AuthenticationError(_("no Zalo access token stored; {hint}").format(
                    hint=set_token_hint()), reason="no-token")
            if _plaintext(row):
                self.reseal(row)
                continue
            state = _state(row.access_token)
            now = self.clock.now()
            if state in ("rejected", "unknown"):
                raise AuthenticationError(_dead_message(row.access_token),
                                          reason="refresh-token-unusable")
            if state in ("refreshing", "sent"):
                if self._claim_dead(row, now):
                    settled = self._settle_interrupted(row)
                    if settled is not None:
                        return settled
                    continue
                if self._monotonic() > deadline:
                    raise UnavailableError(_("waited too long for another worker's Zalo "
                                             "token refresh"), reason="token-refresh-pending",
                                           retry_after=5.0)
                self._sleep(self.poll_interval)
                continue
            expiring = (not row.access_token
                        or (row.expires_at - now).total_seconds() <= self.proactive_seconds)
            if not expiring and (seen is None or row.version != seen):
                return _open(row.access_token), row.version
            claim = self._claim(row.version)
            if claim is None:
                continue  # another worker won; wait for its result
            return self._do_refresh(claim)

    @retry_write
    def _claim(self, version: int) -> _Claim | None:
        now = self.clock.now()
        with self.db.engine.begin() as conn:
            stmt = select(GatewayToken).where(GatewayToken.gateway == self.gateway)
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            row = conn.execute(stmt).first()
            if row is None or row.version != version or _state(row.access_token) != "ready":
                return None
            refresh_token = _open(row.refresh_token)  # no key: fail before the claim
            owner = leases.owner_id()
            res = conn.execute(update(GatewayToken).where(
                GatewayToken.gateway == self.gateway, GatewayToken.version == version).values(
                access_token=f"{_REFRESHING}:{owner}", version=version + 1, updated_at=now))
            if res.rowcount != 1:
                leases.release_owner(owner)
                return None
            return _Claim(version=version + 1, refresh_token=refresh_token,
                          access_token=row.access_token, expires_at=row.expires_at, owner=owner)

    @retry_write
    def _mark_sent(self, claim: _Claim) -> bool:
        """The OAuth request is about to leave: ``!refreshing:<owner>`` → ``!sent:<owner>``
        (committed; same version). False when the claim was taken over meanwhile (then the
        request must not leave)."""
        with self.db.engine.begin() as conn:
            res = conn.execute(update(GatewayToken).where(
                GatewayToken.gateway == self.gateway, GatewayToken.version == claim.version,
                GatewayToken.access_token == f"{_REFRESHING}:{claim.owner}").values(
                access_token=f"{_SENT}:{claim.owner}", updated_at=self.clock.now()))
            return res.rowcount == 1

    # -- interrupted refreshes ------------------------------------------------------------------
    def _claim_dead(self, row: Any, now: dt.datetime) -> bool:
        """Whether the holder of a ``refreshing``/``sent`` row can no longer finish it: on this
        node, its process is gone; elsewhere, the claim is older than ``claim_timeout``."""
        owner = row.access_token.partition(":")[2]
        living = leases.alive(owner)
        if living is not None:
            return not living
        return (now - row.updated_at).total_seconds() > self.claim_timeout

    def _journal_path(self, version: int) -> Path:
        return self.journal_dir / f"{self.gateway}-{version}.grant"

    def _journal(self, version: int) -> tuple[TokenGrant, dt.datetime] | None:
        """The answer journalled for the claim of ``version``, or None (no file, or unreadable:
        logged)."""
        path = self._journal_path(version)
        try:
            data = json.loads(secretstore.unseal(path.read_text(encoding="ascii")))
            grant = TokenGrant(data["access_token"], data["refresh_token"], int(data["expires_in"]))
            return grant, dt.datetime.fromisoformat(data["received_at"])
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged or foreign file: never guess a token from it
            log.warning(_("the {gateway} refresh journal {file} is unreadable ({error})").format(
                gateway=self.gateway, file=path.name, error=type(exc).__name__))
            return None

    def _write_journal(self, claim: _Claim, grant: TokenGrant, received_at: dt.datetime) -> bool:
        data = json.dumps({"access_token": grant.access_token,
                           "refresh_token": grant.refresh_token, "expires_in": grant.expires_in,
                           "received_at": received_at.isoformat()})
        try:
            safeio.private_dir(self.journal_dir)
            path = self._journal_path(claim.version)
            tmp = path.with_suffix(".tmp")
            with safeio.open_private(tmp, "w", encoding="ascii") as fh:
                fh.write(secretstore.seal(data))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            return True
        except Exception as exc:  # the database write still follows
            log.warning(_("could not journal the new {gateway} tokens ({error}); storing them "
                          "directly").format(gateway=self.gateway, error=type(exc).__name__))
            return False

    def _drop_journal(self, version: int) -> None:
        try:
            self._journal_path(version).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning(_("could not remove the {gateway} refresh journal ({error})").format(
                gateway=self.gateway, error=exc))

    def _settle_interrupted(self, row: Any) -> tuple[str, int] | None:
        """Settle a refresh whose holder died (see the class docstring). Returns the token to
        send with when the journal completes it, None when the caller should read the row
        again (claim released for reuse, or changed meanwhile). Raises AuthenticationError
        (``refresh-interrupted``) when the refresh token may be spent."""
        owner = row.access_token.partition(":")[2] or "?"
        if _state(row.access_token) == "refreshing":
            # the request never left: give the claim back; the stored refresh token is unused
            with self.db.engine.begin() as conn:
                res = conn.execute(update(GatewayToken).where(
                    GatewayToken.gateway == self.gateway, GatewayToken.version == row.version,
                    GatewayToken.access_token == row.access_token).values(
                    access_token="", version=row.version + 1, updated_at=self.clock.now()))
            if res.rowcount == 1:
                log.warning(_("a {gateway} token refresh by {owner} stopped before its request "
                              "left; using the same refresh token again").format(
                                  gateway=self.gateway, owner=owner))
            return None
        journalled = self._journal(row.version)
        claim = _Claim(version=row.version, refresh_token="", access_token="",
                       expires_at=row.expires_at, owner=owner)
        if journalled is not None:
            grant, received_at = journalled
            expires_at = received_at + dt.timedelta(seconds=grant.expires_in)
            if self._finish(claim, access_token=grant.access_token,
                            refresh_token=grant.refresh_token, expires_at=expires_at):
                self._drop_journal(row.version)
                log.warning(_("a {gateway} token refresh by {owner} stopped after Zalo "
                              "answered; stored the new tokens from its journal").format(
                                  gateway=self.gateway, owner=owner))
                return grant.access_token, row.version + 1
            return None
        sent_at = row.updated_at
        if not self._finish(claim, access_token=_UNKNOWN, refresh_token=row.refresh_token,
                            expires_at=row.expires_at, sealed=True):
            # the row changed since it was read (its holder finished after all, or an operator
            # set new tokens): read it again
            return None
        log.error(_("a {gateway} token refresh by {owner} stopped after its request left and "
                    "before the answer was stored").format(gateway=self.gateway, owner=owner))
        raise AuthenticationError(
            _("the Zalo token refresh sent by {owner} at {time} stopped before Zalo's answer was "
              "stored (its process died); Zalo's refresh token is single-use and may be spent, "
              "so it is not sent again; {hint}").format(owner=owner, time=when(sent_at),
                                                        hint=set_token_hint()),
            reason="refresh-interrupted")

    @retry_write
    def _finish(self, claim: _Claim, *, access_token: str, refresh_token: str,
                expires_at: dt.datetime, sealed: bool = False) -> bool:
        if not sealed:
            access_token, refresh_token = _seal(access_token), _seal(refresh_token)
        with self.db.engine.begin() as conn:
            res = conn.execute(update(GatewayToken).where(
                GatewayToken.gateway == self.gateway, GatewayToken.version == claim.version).values(
                access_token=access_token, refresh_token=refresh_token, expires_at=expires_at,
                version=claim.version + 1, updated_at=self.clock.now()))
            return res.rowcount == 1

    def _do_refresh(self, claim: _Claim) -> tuple[str, int]:
        if self.refresher is None:
            self._finish(claim, access_token=claim.access_token, refresh_token=claim.refresh_token,
                         expires_at=claim.expires_at)
            raise AuthenticationError(_("the Zalo access token expired and this process "
                                        "cannot refresh it (no OAuth client configured)"),
                                      reason="no-refresher")
        try:
            return self._refresh_claimed(claim)
        finally:
            leases.release_owner(claim.owner)

    def _refresh_claimed(self, claim: _Claim) -> tuple[str, int]:
        if not self._mark_sent(claim):
            log.warning(_("a {gateway} token refresh claim was taken over before its request "
                          "left").format(gateway=self.gateway))
            return self._obtain(None)
        log.info(_("refreshing the {gateway} access token (version {version})").format(
            gateway=self.gateway, version=claim.version - 1))
        try:
            grant = self.refresher(claim.refresh_token)
        except RefreshNotSent as exc:
            self._finish(claim, access_token=claim.access_token, refresh_token=claim.refresh_token,
                         expires_at=claim.expires_at)
            raise UnavailableError(_("could not reach Zalo OAuth to refresh the token: "
                                     "{error}").format(error=exc),
                                   reason="connect-failed") from exc
        except RefreshRejected as exc:
            self._finish(claim, access_token=f"{_REJECTED}:{exc.code or ''}",
                         refresh_token=claim.refresh_token, expires_at=claim.expires_at)
            raise AuthenticationError(
                _("Zalo refused the refresh token ({error}); {hint}").format(
                    error=exc, hint=set_token_hint()),
                reason="refresh-token-rejected", provider_code=exc.code) from exc
        except BaseException as exc:  # sent, answer lost: the token may be spent
            self._finish(claim, access_token=_UNKNOWN, refresh_token=claim.refresh_token,
                         expires_at=claim.expires_at)
            if not isinstance(exc, Exception):
                raise
            raise AuthenticationError(
                _("the Zalo token refresh may have reached Zalo but no answer came back "
                  "({error}); the single-use refresh token may be spent and is not used again; "
                  "{hint}").format(error=exc, hint=set_token_hint()),
                reason="refresh-outcome-unknown") from exc
        now = self.clock.now()
        expires_at = now + dt.timedelta(seconds=grant.expires_in)
        journalled = self._write_journal(claim, grant, now)
        try:
            stored = self._finish(claim, access_token=grant.access_token,
                                  refresh_token=grant.refresh_token, expires_at=expires_at)
        except Exception as exc:
            if journalled:
                log.error(_("the new {gateway} tokens could not be stored in the database "
                            "({error}); they are kept in the refresh journal and the next "
                            "process stores them").format(gateway=self.gateway,
                                                           error=type(exc).__name__))
                raise UnavailableError(_("the new Zalo tokens could not be stored in the "
                                         "database yet; they are kept in the refresh journal"),
                                       reason="token-store-failed", retry_after=5.0) from exc
            log.critical(_("the new {gateway} refresh token could NOT be stored ({error}); "
                           "{hint}").format(gateway=self.gateway, error=type(exc).__name__,
                                            hint=set_token_hint()))
            raise AuthenticationError(_("the new Zalo refresh token could not be stored; "
                                        "{hint}").format(hint=set_token_hint()),
                                      reason="token-store-failed") from exc
        if journalled:
            self._drop_journal(claim.version)
        if not stored:
            # an operator ran set-token meanwhile: theirs wins
            log.warning(_("{gateway} tokens were replaced during a refresh; using the stored "
                          "ones").format(gateway=self.gateway))
            return self._obtain(None)
        log.info(_("{gateway} access token refreshed (version {version}, expires {time})").format(
            gateway=self.gateway, version=claim.version + 1, time=when(expires_at)))
        return grant.access_token, claim.version + 1


    # -- encryption at rest ---------------------------------------------------------------------
    @retry_write
    def reseal(self, row: Any = None) -> bool:
        """Encrypt the stored tokens with the first key of ``OUTREACH_SECRET_KEY`` (plaintext
        from an older version encrypted, ciphertext of an older key re-encrypted). ``row``: the
        row as read (default: read it now). Compare-and-swap on the stored values, version
        unchanged: a concurrent refresh or set-token wins and this returns False (run it
        again). Returns True when the row was rewritten, False when there is no row or it
        changed meanwhile. Raises SecretKeyError (no key, or no key opens the row)."""
        row = row if row is not None else self._read()
        if row is None:
            return False
        mf = secretstore.cipher()
        new_access = row.access_token if _marker(row.access_token) else secretstore.reseal(
            row.access_token, mf=mf)
        new_refresh = secretstore.reseal(row.refresh_token, mf=mf)
        with self.db.engine.begin() as conn:
            sqlite_db = conn.dialect.name == "sqlite"
            if sqlite_db:  # overwrite the plaintext's old bytes in the page, not just unlink them
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            try:
                res = conn.execute(update(GatewayToken).where(
                    GatewayToken.gateway == self.gateway, GatewayToken.version == row.version,
                    GatewayToken.access_token == row.access_token,
                    GatewayToken.refresh_token == row.refresh_token).values(
                    access_token=new_access, refresh_token=new_refresh))
            finally:
                if sqlite_db:
                    conn.exec_driver_sql("PRAGMA secure_delete=OFF")
        if res.rowcount == 1 and sqlite_db:
            _checkpoint(self.db)
        if res.rowcount == 1:
            log.info(_("{gateway} tokens encrypted with key {key}").format(
                gateway=self.gateway, key=secretstore.key_id()))
        return res.rowcount == 1


def _checkpoint(db: Database) -> None:
    """Best effort: copy the WAL into the database and truncate it, so the page images that
    held plaintext leave the -wal file (a reader still open may keep some until it ends)."""
    try:
        db.checkpoint()
    except Exception as exc:  # busy: the next automatic checkpoint overwrites them
        log.info(_("WAL checkpoint after encrypting tokens not done now ({error})").format(
            error=exc))


def _marker(value: str) -> bool:
    """An empty access token or a row state ("!refreshing:…"): stored as it is."""
    return not value or value.startswith("!")


def _seal(value: str, mf: Any = None) -> str:
    return value if _marker(value) else secretstore.seal(value, mf=mf)


def _open(value: str) -> str:
    return value if _marker(value) else secretstore.unseal(value)


def _plaintext(row: Any) -> bool:
    """A row written by a version without encryption (a token not ``fernet:``)."""
    return any(not _marker(v) and not secretstore.is_sealed(v)
               for v in (row.access_token, row.refresh_token))


def _state(access_token: str) -> str:
    if access_token.startswith(_REFRESHING):
        return "refreshing"
    if access_token.startswith(_SENT):
        return "sent"
    if access_token.startswith(_REJECTED):
        return "rejected"
    if access_token.startswith(_UNKNOWN):
        return "unknown"
    return "ready"


def _dead_message(access_token: str) -> str:
    if access_token.startswith(_REJECTED):
        code = access_token.partition(":")[2]
        if code:
            return _("Zalo refused the stored refresh token (code {code}); {hint}").format(
                code=code, hint=set_token_hint())
        return _("Zalo refused the stored refresh token; {hint}").format(hint=set_token_hint())
    return _("the last Zalo token refresh may have spent the single-use refresh token without "
             "an answer; {hint}").format(hint=set_token_hint())

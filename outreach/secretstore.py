"""Provider secrets kept in the database (Zalo OAuth tokens), encrypted at rest.

A stored secret is ``fernet:`` + a Fernet token (``cryptography``: AES-128-CBC with
HMAC-SHA256, a timestamp, base64; https://cryptography.io/en/latest/fernet/). The key never
touches the database: it is read from the environment variable ``OUTREACH_SECRET_KEY``, so a
copy or backup of the database holds no usable token.

``OUTREACH_SECRET_KEY`` is one Fernet key (44 URL-safe base64 characters, 32 random bytes) or
several separated by commas, newest first (:class:`cryptography.fernet.MultiFernet`): the first
encrypts, any of them decrypts. Make one with
``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``.

Key rotation (documented in the README):

1. every process gets ``OUTREACH_SECRET_KEY=NEW,OLD`` (restart workers, scheduler, webhooks);
2. ``outreach secrets rotate`` re-encrypts every stored secret with NEW (and encrypts any
   plaintext left by an older version);
3. every process gets ``OUTREACH_SECRET_KEY=NEW``; OLD can be destroyed.

Values written before this module existed are plaintext; :func:`seal` and ``outreach secrets
rotate`` (or the token store's first use) turn them into ciphertext.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from outreach.gateways.base import ConfigurationError

from outreach.i18n import _
ENV_SECRET_KEY = "OUTREACH_SECRET_KEY"
PREFIX = "fernet:"


class SecretKeyError(ConfigurationError):
    """``OUTREACH_SECRET_KEY`` missing or malformed, or a stored secret it cannot decrypt.
    The message names the variable and never contains a key or a secret."""

    reason = "secret-key"


_GENERATE = ('python -c "from cryptography.fernet import Fernet; '
             'print(Fernet.generate_key().decode())"')


def _keys(value: str | None) -> list[Fernet]:
    if not value or not value.strip():
        raise SecretKeyError(
            _("{var} is not set: provider tokens are stored encrypted with it. Make a key with "
              "`{generate}`, keep it in the Department's password safe, and set it for every "
              "outreach process (the same key everywhere)").format(var=ENV_SECRET_KEY,
                                                                   generate=_GENERATE))
    keys = []
    for i, part in enumerate(p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            keys.append(Fernet(part.encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            raise SecretKeyError(
                _("{var}: key #{n} is not a Fernet key (44 URL-safe base64 characters; make one "
                  "with `{generate}`)").format(var=ENV_SECRET_KEY, n=i + 1,
                                               generate=_GENERATE)) from None
    if not keys:
        raise SecretKeyError(_("{var} holds no key").format(var=ENV_SECRET_KEY))
    return keys


def cipher(env: str | None = None) -> MultiFernet:
    """The keys of ``OUTREACH_SECRET_KEY`` (or the string ``env``), first one encrypting.

    Raises SecretKeyError when missing or malformed."""
    return MultiFernet(_keys(os.environ.get(ENV_SECRET_KEY) if env is None else env))


def key_id(env: str | None = None) -> str:
    """A 12-hex-digit fingerprint of the encrypting key (tells keys apart, reveals nothing)."""
    value = os.environ.get(ENV_SECRET_KEY) if env is None else env
    first = next(p.strip() for p in (value or "").split(",") if p.strip()) if value else ""
    _keys(value)
    return hashlib.sha256(b"outreach secret key id:" + first.encode("ascii")).hexdigest()[:12]


def is_sealed(stored: str | None) -> bool:
    """True for a value written by :func:`seal` (ciphertext)."""
    return bool(stored) and stored.startswith(PREFIX)  # type: ignore[union-attr]


def seal(plain: str, *, mf: MultiFernet | None = None) -> str:
    """``fernet:<token>`` for ``plain``; a value already sealed is returned unchanged."""
    if is_sealed(plain):
        return plain
    return PREFIX + (mf or cipher()).encrypt(plain.encode("utf-8")).decode("ascii")


def unseal(stored: str, *, mf: MultiFernet | None = None) -> str:
    """The plaintext of a stored value; a plaintext (legacy) value is returned as it is.

    Raises SecretKeyError when no key is set or none of them opens the value."""
    if not is_sealed(stored):
        return stored
    try:
        return (mf or cipher()).decrypt(stored[len(PREFIX):].encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise SecretKeyError(
            _("a stored provider token cannot be decrypted with the key(s) in {var} (wrong key, "
              "or the old key was dropped before `outreach secrets rotate`)").format(
                  var=ENV_SECRET_KEY)) from None


def reseal(stored: str, *, mf: MultiFernet | None = None) -> str:
    """``stored`` encrypted with the first key (plaintext encrypted, ciphertext rotated)."""
    mf = mf or cipher()
    if not is_sealed(stored):
        return seal(stored, mf=mf)
    try:
        return PREFIX + mf.rotate(stored[len(PREFIX):].encode("ascii")).decode("ascii")
    except InvalidToken:
        raise SecretKeyError(
            _("a stored provider token cannot be decrypted with the key(s) in {var}; put the old "
              "key after the new one (NEW,OLD) and run the rotation again").format(
                  var=ENV_SECRET_KEY)) from None

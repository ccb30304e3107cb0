"""Where things live: database URL, data directory, outbox; all overridable from the environment."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

ENV_DATABASE_URL = "OUTREACH_DATABASE_URL"
ENV_HOME = "OUTREACH_HOME"


def home_dir() -> Path:
    """The data directory: ``$OUTREACH_HOME`` or ``./.outreach`` (created on demand, 0700)."""
    return Path(os.environ.get(ENV_HOME) or ".outreach")


def database_url(explicit: str | None = None) -> str:
    """``--database-url``, else ``$OUTREACH_DATABASE_URL``, else SQLite at ``<home>/outreach.db``."""
    if explicit:
        return explicit
    env = os.environ.get(ENV_DATABASE_URL)
    if env:
        return env
    path = home_dir() / "outreach.db"
    from outreach.safeio import private_dir

    private_dir(path.parent)  # personal data: the folder is 0700 when we create it
    return f"sqlite:///{path}"


def outbox_dir() -> Path:
    """Where the outbox gateway writes: ``$OUTREACH_OUTBOX_DIR`` or ``<home>/outbox``."""
    return Path(os.environ.get("OUTREACH_OUTBOX_DIR") or home_dir() / "outbox")


def default_operator() -> str:
    """The operating-system user, for the audit log when ``--operator`` is not given."""
    try:
        return os.environ.get("OUTREACH_OPERATOR") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def redact_url(url: str) -> str:
    """A database URL with its password replaced, safe to print."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        from outreach.i18n import _

        return _("<unparseable database URL>")

"""Maker–checker approval of a campaign before anything reaches a phone (issue #23).

A launch, resume, resend or scheduled day's run through a gateway that reaches phones needs
an approval given by another person than the one who prepared it, recorded against:

- the SHA-256 of the NFC message text (``campaigns.text_sha256``), and
- the recipient list files: for each, its file name, the SHA-256 of its bytes and its number of
  data rows (``outreach.input.listfiles.read_list``), plus one SHA-256 over them.

Changing the text or any list file (another row, another number, another file) voids it: the
check compares the campaign as it is now with what was approved. Outbox and mock rehearsals
(:data:`REHEARSAL_GATEWAYS`, and any gateway whose ``reaches_phones`` is False) need none.
The requirement is lifted only by the audited setting ``approval.required``
(``outreach approvals relax --reason``, admin accounts only); every send made while it is
lifted is recorded in the audit log as ``approval-waived``.

Rule source: GOV.UK Notify requires two people for emergency broadcasts (shared/reference/
peers.md); the Department's own maker–checker practice for prescribed texts (issue #23).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update

from outreach import users
from outreach.i18n import N_, _, number
from outreach.ledger import runs
from outreach.reporting import audit
from outreach.input.campaigns import CampaignSpec
from outreach.input.listfiles import read_list
from outreach.ledger.models import Approval, Setting
from outreach.sending.ops import OperatorError

#: Gateways whose sends are rehearsals: they reach nobody's phone (outbox writes a file, mock
#: keeps messages in memory), so they need no approval.
REHEARSAL_GATEWAYS = frozenset({"outbox", "mock"})
SETTING_KEY = "approval.required"


class ApprovalError(OperatorError):
    """A refused launch, preparation or approval, as one line (the CLI exits 1)."""


@dataclass(frozen=True)
class Fingerprint:
    """What an approval is given for: ``text_sha256``; ``lists`` = [{"file", "sha256", "rows"}]
    in the campaign's order; ``lists_sha256`` over them; ``rows`` their total."""

    text_sha256: str
    lists: list[dict[str, Any]]
    lists_sha256: str
    rows: int


def fingerprint(spec: CampaignSpec) -> Fingerprint:
    """Hash the campaign's list files (bytes) and count their data rows. Raises CampaignError
    (no file matches) or ListFileError (unreadable file), naming the file."""
    lists = []
    for path in spec.list_files():
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        rows = sum(1 for _ in read_list(path))
        lists.append({"file": Path(path).name, "sha256": digest, "rows": rows})
    canon = json.dumps([[x["file"], x["sha256"]] for x in lists], separators=(",", ":"))
    return Fingerprint(spec.text_sha256, lists, hashlib.sha256(canon.encode()).hexdigest(),
                       sum(x["rows"] for x in lists))


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.timezone.utc)


def phone_gateways(gateways: Mapping[str, Any]) -> list[str]:
    """Names of the gateways (channel -> Gateway instance or gateway name) that reach phones
    and are not rehearsals."""
    from outreach.gateways import gateway_class

    out = []
    for g in gateways.values():
        name = g if isinstance(g, str) else g.name
        reaches = gateway_class(name).reaches_phones if isinstance(g, str) else g.reaches_phones
        if reaches and name not in REHEARSAL_GATEWAYS:
            out.append(name)
    return sorted(set(out))


# -- the setting ---------------------------------------------------------------------------------
def is_required(conn: Connection) -> bool:
    """False only when an admin lifted the requirement (``approval.required`` = false)."""
    value = conn.execute(select(Setting.value).where(Setting.key == SETTING_KEY)).scalar()
    return not (isinstance(value, dict) and value.get("required") is False)


def set_required(conn: Connection, required: bool, *, operator: str, reason: str | None,
                 now: dt.datetime | None = None) -> None:
    """Lift or restore the requirement (audited ``approval-setting``). Only an active admin
    account may change it; lifting needs a reason. Raises ApprovalError."""
    acc = users.get(conn, operator or "")
    if acc is None or not acc.has("admin"):
        raise ApprovalError(_("{name!r} is not an active admin account: only an admin may "
                              "change the approval requirement").format(name=operator))
    if not required and not (reason or "").strip():
        raise ApprovalError(_("lifting the approval requirement needs --reason (recorded in "
                              "the audit log)"))
    now = _now(now)
    value = {"required": required, "reason": reason}
    if conn.execute(select(Setting.key).where(Setting.key == SETTING_KEY)).first():
        conn.execute(update(Setting).where(Setting.key == SETTING_KEY).values(
            value=value, updated_by=acc.username, updated_at=now))
    else:
        conn.execute(insert(Setting).values(key=SETTING_KEY, value=value,
                                            updated_by=acc.username, updated_at=now))
    audit.record(conn, "approval-setting", operator=acc.username, now=now, details=value)


# -- preparing and approving ----------------------------------------------------------------------
def latest(conn: Connection, campaign_id: str, status: str | None = None) -> Any:
    """The campaign's latest approval (with ``status``, if given) as a row, or None."""
    stmt = select(Approval.__table__).where(Approval.campaign_id == campaign_id)
    if status:
        stmt = stmt.where(Approval.status == status)
    return conn.execute(stmt.order_by(Approval.id.desc()).limit(1)).first()


def void_reason(approval: Any, fp: Fingerprint) -> str | None:
    """Why ``approval`` no longer covers the campaign as it is now (``fp``), or None."""
    if approval.text_sha256 != fp.text_sha256:
        return _("the message text changed (approved {old}…, now {new}…)").format(
            old=approval.text_sha256[:12], new=fp.text_sha256[:12])
    if approval.lists_sha256 != fp.lists_sha256:
        before = {x["file"]: x for x in approval.lists}
        now = {x["file"]: x for x in fp.lists}
        changed = sorted(f for f in before.keys() | now.keys()
                         if before.get(f, {}).get("sha256") != now.get(f, {}).get("sha256"))
        detail = ", ".join(_("{file} ({before} → {after} rows)").format(
            file=f, before=number(before[f]["rows"]) if f in before else _("new"),
            after=number(now[f]["rows"]) if f in now else _("removed")) for f in changed)
        return _("the recipient lists changed: {detail}").format(detail=detail)
    return None


def prepare(conn: Connection, spec: CampaignSpec, *, operator: str,
            note: str | None = None, now: dt.datetime | None = None) -> Any:
    """Ask for approval of the campaign as it is now (audited ``approval-request``); an
    earlier pending request is withdrawn. Stores the campaign row (refuses, RunError, a text
    that differs from one already sent)."""
    now = _now(now)
    fp = fingerprint(spec)
    runs.sync_campaign(conn, spec, now=now)
    conn.execute(update(Approval).where(Approval.campaign_id == spec.id,
                                        Approval.status == "pending").values(status="withdrawn"))
    aid = conn.execute(insert(Approval).values(
        campaign_id=spec.id, text_sha256=fp.text_sha256, lists=fp.lists,
        lists_sha256=fp.lists_sha256, rows=fp.rows, status="pending", prepared_by=operator,
        prepared_at=now, note=note)).inserted_primary_key[0]
    audit.record(conn, "approval-request", operator=operator, campaign_id=spec.id,
                 text_sha256=fp.text_sha256, now=now,
                 details={"approval_id": aid, "lists": fp.lists, "lists_sha256": fp.lists_sha256,
                          "rows": fp.rows})
    return conn.execute(select(Approval.__table__).where(Approval.id == aid)).one()


def approve(conn: Connection, spec: CampaignSpec, *, approver: str,
            now: dt.datetime | None = None) -> Any:
    """Approve the campaign's pending request (audited ``approve``).

    Raises ApprovalError when there is no pending request, when ``approver`` prepared it (a
    second person must approve), when ``approver`` is not an active approver or admin account,
    or when the text or lists changed since it was prepared (the request is then void)."""
    now = _now(now)
    pending = latest(conn, spec.id, "pending")
    if pending is None:
        raise ApprovalError(_("campaign {id} has no request for approval: the operator who "
                              "prepared it asks first (`outreach campaign submit {id}`)").format(
                                  id=spec.id))
    acc = users.get(conn, approver or "")
    if acc is None or not acc.has("approver"):
        raise ApprovalError(_("{name!r} is not an active approver or admin account "
                              "(`outreach users add NAME --role approver`)").format(name=approver))
    if acc.username == pending.prepared_by.strip().lower():
        raise ApprovalError(_("campaign {id} was prepared by {name}: the approval must come "
                              "from a different person").format(id=spec.id,
                                                                 name=pending.prepared_by))
    why = void_reason(pending, fingerprint(spec))
    if why:
        raise ApprovalError(_("request #{request} for campaign {id} is void: {why}; ask again "
                              "(`outreach campaign submit {id}`)").format(
                                  request=pending.id, id=spec.id, why=why))
    conn.execute(update(Approval).where(Approval.id == pending.id).values(
        status="approved", approved_by=acc.username, approved_at=now))
    audit.record(conn, "approve", operator=acc.username, campaign_id=spec.id,
                 text_sha256=pending.text_sha256, now=now,
                 details={"approval_id": pending.id, "prepared_by": pending.prepared_by,
                          "lists_sha256": pending.lists_sha256, "rows": pending.rows})
    return conn.execute(select(Approval.__table__).where(Approval.id == pending.id)).one()


def state(conn: Connection, spec: CampaignSpec) -> dict[str, Any]:
    """For pages and ``campaign check``: ``{"approval": Approval | None (the latest approved, else
    the latest), "valid": bool, "void_reason": str | None, "pending": Approval | None,
    "required": bool, "fingerprint": Fingerprint}``."""
    fp = fingerprint(spec)
    approved = latest(conn, spec.id, "approved")
    pending = latest(conn, spec.id, "pending")
    why = void_reason(approved, fp) if approved else None
    return {"approval": approved, "valid": approved is not None and why is None,
            "void_reason": why, "pending": pending, "pending_void": void_reason(pending, fp)
            if pending else None, "required": is_required(conn), "fingerprint": fp}


# -- the check ----------------------------------------------------------------------------------
#: What an approval refusal calls each kind of send (translated when shown).
ACTIONS = {"launch": N_("launch"), "resume": N_("resume"), "resend": N_("resend"),
           "scheduled run": N_("scheduled run")}


def require_approval(conn: Connection, spec: CampaignSpec, gateways: Mapping[str, Any], *,
                     operator: str | None = None, now: dt.datetime | None = None,
                     action: str = "launch") -> Any:
    """Refuse (ApprovalError) a send of ``spec`` through a gateway that reaches phones without
    a valid approval. ``gateways``: channel -> Gateway instance or gateway name.

    Returns the approval checked, or None when none is needed (rehearsal gateways only) or the
    requirement is lifted (then writes an ``approval-waived`` audit entry in the caller's
    transaction). Reads the list files (fingerprint) only when an approval is needed.
    """
    reaching = phone_gateways(gateways)
    if not reaching:
        return None
    if not is_required(conn):
        audit.record(conn, "approval-waived", operator=operator, campaign_id=spec.id,
                     text_sha256=spec.text_sha256, now=now,
                     details={"action": action, "gateways": reaching})
        return None
    approved = latest(conn, spec.id, "approved")
    what = _(ACTIONS.get(action, action))
    through = ", ".join(reaching)
    if approved is None:
        raise ApprovalError(_(
            "campaign {id}: {action} through {gateways} reaches phones and needs the approval "
            "of a second person; nothing was sent. The preparer asks (`outreach campaign "
            "submit {id}`), an approver approves (`outreach campaign approve {id}` or the web "
            "application)").format(id=spec.id, action=what, gateways=through))
    why = void_reason(approved, fingerprint(spec))
    if why:
        raise ApprovalError(_(
            "campaign {id}: {action} through {gateways} reaches phones and needs the approval "
            "of a second person: approval #{approval} is void because {why}; nothing was sent. "
            "Ask for a new approval (`outreach campaign submit {id}`)").format(
                id=spec.id, action=what, gateways=through, approval=approved.id, why=why))
    return approved

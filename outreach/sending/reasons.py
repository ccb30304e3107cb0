"""What the console shows for the sending stage's reasons: delivery reason codes and run reasons.

Two kinds of reason are stored in the database and shown to an operator:

* a delivery's ``error_reason`` code (``connect-failed``, ``read-timeout``, ``suppressed``,
  ``opted-out``, …: :mod:`outreach.gateways.base`, the adapters, the engine and the scheduler).
  It stays a code in the database, the JSON and the CSV; the console shows :func:`label` of it,
  as :mod:`outreach.input.reasons` does for the input stage's reject reasons.
* a run's ``status_reason`` (why it is paused, waiting, expired, missed, completed with
  unknown outcomes). It is stored in English, as it always was (the scheduler compares some of
  them, the JSON shows them), and translated when it is shown (:func:`run_reason`): each one
  is written from one of the templates of :data:`RUN_REASONS`, and a stored text that matches
  a template is shown as the template's translation with the same values (numbers and times
  in the interface language's form, a value that is itself a reason translated too). A text
  that matches no template (a gateway's own message, a database written by an older version)
  is shown as it is.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Any, Final

from outreach.i18n import N_, _, current, number

#: delivery reason code → English label (a msgid, translated by :func:`label` when shown).
LABELS: Final[dict[str, str]] = {
    # the request never left or was refused: not sent
    "connect-failed": N_("could not connect to the provider: not sent"),
    "connect": N_("could not connect to the provider: not sent"),
    "network": N_("network error"),
    "bad-request": N_("request refused by the provider: not sent"),
    "configuration": N_("gateway configuration error"),
    "authentication": N_("the provider refused the credentials"),
    "unavailable": N_("sending service temporarily unavailable"),
    "rate-limited": N_("over the provider's rate limit"),
    "rejected": N_("refused by the provider"),
    "stop": N_("the provider stopped the run"),
    "gateway-error": N_("gateway error"),
    "adapter-error": N_("gateway adapter error"),
    "text-too-long": N_("message text too long"),
    "template-missing": N_("message template missing"),
    "validity-expired": N_("validity period expired: not sent"),
    # sent, outcome unknown
    "read-timeout": N_("no answer after sending: outcome unknown"),
    "connection-lost": N_("connection lost after sending: outcome unknown"),
    "timeout": N_("no answer in time: outcome unknown"),
    "outcome-unknown": N_("outcome unknown: sent or not"),
    "interrupted": N_("sending process stopped: outcome unknown"),
    "duplicate-unconfirmed": N_("possible duplicate, not confirmed"),
    # the number or the person
    "invalid-number": N_("not a valid phone number"),
    "invalid-address": N_("not a valid phone number"),
    "invalid-phone": N_("not a valid phone number"),
    "unknown-handset": N_("subscriber does not exist or is no longer active"),
    "unreachable": N_("subscriber unreachable (phone off or out of coverage)"),
    "landline": N_("not a mobile number"),
    "unroutable": N_("no route to this number"),
    "carrier-filtered": N_("filtered by the carrier"),
    "carrier-unknown-error": N_("unknown error from the carrier"),
    "blocked": N_("blocked"),
    "no-zalo-account": N_("number not registered with Zalo"),
    "opted-out": N_("recipient opted out"),
    "provider-opt-out": N_("recipient opted out at the provider"),
    "suppressed": N_("number on the opt-out list"),
    "zalo-unfollow": N_("recipient unfollowed the Zalo account"),
    # decisions of the operator, the engine, the scheduler
    "cancelled": N_("run cancelled"),
    "operator-skipped": N_("operator chose not to resend"),
    "operator-fallback": N_("operator allowed the next channel"),
    "window": N_("send window closed"),
    "window-closed": N_("send window closed"),
    "day-passed": N_("its day has passed"),
    "already-sent-today": N_("already sent today"),
    "reached-by-sms": N_("already reached by SMS"),
    "reached-by-zalo": N_("already reached by Zalo"),
}


#: codes with a detail after a colon (``too-long:channels[0].text (170/160 chars)``,
#: :func:`outreach.sending.limits.recipient_checker`, :mod:`outreach.sending.fallback`):
#: prefix → English label with ``{detail}``.
PREFIXED: Final[dict[str, str]] = {
    "too-long": N_("too long for the gateway: {detail}"),
    "too-short": N_("too short for the gateway: {detail}"),
    "missing": N_("required value missing: {detail}"),
    "refused": N_("refused by the gateway: {detail}"),
    "missing-field": N_("list column missing for this recipient: {detail}"),
    "brandname-template": N_("text does not fit the registered brandname template: {detail}"),
}


def describe(code: str | None) -> str:
    """A delivery reason code in words, in the current interface language, English included
    (``connect-failed`` → ``could not connect to the provider: not sent``): the description
    column of the XLSX report. A code without a label is returned unchanged, ``""`` for None."""
    if not code:
        return ""
    found = LABELS.get(code)
    if found is not None:
        return _(found)
    prefix, sep, detail = code.partition(":")
    if sep and prefix in PREFIXED:
        return _(PREFIXED[prefix]).format(detail=detail)
    return code


def label(code: str | None) -> str:
    """What the console shows for a delivery reason code: its label in the current interface
    language (``connect-failed`` → ``không kết nối được tới nhà cung cấp: chưa gửi``). The
    English interface shows the code itself, as it always has; a code without a label (a
    provider's own, ``missing:template_data.x``) is returned unchanged, ``""`` for None."""
    if current() == "en":
        return code or ""
    return describe(code)


#: Why a send returned early (:class:`~outreach.sending.engine.RunReport` ``stopped``), shown as
#: ``_(stopped)``; the other kinds (``paused``, ``window``, ``late``, ``gateway``,
#: ``error-rate``, ``interrupted``…) are in :data:`outreach.i18n.TERMS`.
STOP_KINDS: Final[tuple[str, ...]] = (N_("daily-cap"), N_("content"), N_("awaiting-receipts"))


#: The English templates every stored run reason is written from (msgids; ``{name}`` the
#: values). The writers format them in English (:func:`english`); :func:`run_reason`
#: translates a stored text back through them. A longer, more specific template comes before
#: one that would also match.
RUN_REASONS: Final[tuple[str, ...]] = (
    N_("interrupted by the operator"),
    N_("interrupted: in-flight sends finished and were recorded"),
    N_("the run is {status} now"),
    N_("the run was due at {due} and is {late} min late, past the lateness limit of {limit} "
       "min; not sent late silently (resume with --allow-late to send anyway)"),
    N_("send window closed for good: {why}"),
    N_("send window closed: {why}"),
    N_("daily cap of {cap} messages reached"),
    N_("daily cap of {cap} reached"),
    N_("awaiting delivery receipts before falling back, until {until}"),
    N_("waiting for receipts before channel fallback"),
    N_("{unknown} deliveries with unknown outcome: see `outreach deliveries list --status "
       "unknown`"),
    N_("reconciled deliveries requeued"),
    N_("deliveries requeued by the operator"),
    N_("the operator allowed the next channel for deliveries of unknown outcome"),
    N_("paused by the operator"),
    N_("cancelled by the operator"),
    N_("{skipped} queued deliveries skipped; {reason}"),
    N_("closed: its day {day} has passed; a repeat campaign sends each day's run on its own "
       "day only"),
    N_("not sent: due at {due} {tz}, no scheduler started it within the lateness limit of "
       "{limit} min (found {late} min late)"),
    N_("not sent: the firing of {day} came before this day's run started; missed days are "
       "never sent in a burst"),
    N_("nothing new today: {backlog} deliveries of run {runs} are still queued, which fills "
       "the daily cap of {cap}"),
    N_("nothing to send: every recipient on the lists already has a delivery ({backlog} still "
       "queued in run {runs})"),
    N_("nothing to send: every recipient on the lists already has a delivery"),
    N_("nothing to send: every recipient was sent within the last {days} days ({backlog} still "
       "queued in run {runs})"),
    N_("nothing to send: every recipient was sent within the last {days} days"),
    N_("scheduler error: {error}; fix the cause, then `outreach campaign resume`"),
    N_("{percent} of the last {n} sends failed (threshold {threshold}); the run is paused "
       "instead of burning through the list — check the gateway, then `outreach campaign "
       "resume`"),
    N_("the first {n} sends all failed with code {code} ({reason}: {detail}): the provider "
       "refuses the message itself, so every recipient would fail; the run is paused instead "
       "— fix the campaign's text or template (`outreach campaign check` shows the limits), "
       "then `outreach campaign resume`"),
    N_("{gateway}: {kind} while writing a batch ({error}); its {n} deliveries are recorded as "
       "unknown — `outreach campaign resume` reconciles them"),
    N_("{gateway}: unexpected {kind} in the gateway adapter ({error}); the delivery is "
       "recorded as unknown — see the log, then `outreach campaign resume`"),
    N_("{gateway}: {reason} — {detail} (code {code}); fix the gateway configuration, then "
       "`outreach campaign resume`"),
    N_("{gateway}: {reason} — {detail}; fix the gateway configuration, then `outreach "
       "campaign resume`"),
    N_("a batch of run {run} was interrupted by {kind}: {error}; stopping so that the other "
       "workers reconcile it"),
    N_("lease of {owner} not renewed for {seconds} s"),
    # the details of a scheduler tick (TickResult.detail)
    N_("another scheduler process created this day's run"),
    N_("sent by another scheduler process"),
    N_("database busy; tried again at the next tick"),
    N_("internal error: {kind}: {error}"),
    N_("{created} deliveries, {deferred} left for later days by the daily cap, {skipped} "
       "skipped: already sent today"),
    N_("{created} deliveries, {deferred} left for later days by the daily cap"),
    N_("{created} deliveries, {skipped} skipped: already sent today"),
    N_("{created} deliveries"),
    # window.closed_reason (outreach.input.campaigns) values, nested in "send window closed"
    N_("the campaign starts on {date}"),
    N_("the campaign ended on {date}"),
    N_("outside the daily send window {opens}–{closes} {tz} (now {now})"),
)

_FIELD = re.compile(r"\{(\w+)\}")
_STAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_PERCENT = re.compile(r"^(\d+)%$")


def english(template: str, **values: object) -> str:
    """A run reason as stored: ``template`` (one of :data:`RUN_REASONS`) in English with
    ``values``. Times are given as ``YYYY-MM-DD HH:MM`` (the campaign's local time), days as
    ``YYYY-MM-DD``, so that :func:`run_reason` shows them in the interface's form."""
    return template.format(**values)


@lru_cache(maxsize=None)
def _patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    out = []
    for t in RUN_REASONS:
        parts, pos = [], 0
        for m in _FIELD.finditer(t):
            parts.append(re.escape(t[pos:m.start()]))
            parts.append(f"(?P<{m.group(1)}>.+?)")
            pos = m.end()
        parts.append(re.escape(t[pos:]))
        out.append((t, re.compile("^" + "".join(parts) + "$", re.S)))
    return tuple(out)


def _value(text: str, depth: int) -> str:
    """One value of a stored reason in the interface language: a number with its separators,
    a time or day in its form, a nested reason translated, anything else as it is."""
    if text.isdigit():
        return number(int(text))
    m = _PERCENT.match(text)
    if m:
        return number(int(m.group(1))) + "%"
    m = _STAMP.match(text)
    if m:
        y, mo, d, h, mi = m.groups()
        return f"{h}:{mi} ngày {d}/{mo}/{y}" if current() == "vi" else text
    m = _DAY.match(text)
    if m and current() == "vi":
        y, mo, d = m.groups()
        return f"{d}/{mo}/{y}"
    if text in LABELS:
        return label(text)
    if text in ("created", "running", "waiting", "paused", "completed", "cancelled", "expired",
                "missed"):
        return _(text)
    return _translate(text, depth + 1)


def _translate(text: str, depth: int = 0) -> str:
    if depth > 3:
        return text
    for template, pattern in _patterns():
        m = pattern.match(text)
        if m:
            values = {k: _value(v, depth) for k, v in m.groupdict().items()}
            return _(template).format(**values)
    return text


def run_reason(text: str | None) -> str:
    """What the console shows for a stored run reason (``runs.status_reason``, a
    :class:`~outreach.sending.engine.RunReport`'s ``reason``): in English as stored; in
    Vietnamese the translation of the template it was written from, with its values in
    Vietnamese form; unchanged when it matches no template, ``""`` for None."""
    if not text:
        return ""
    if current() == "en":
        return text
    return _translate(text)


def window_closed(window: Any, now: dt.datetime) -> str | None:
    """Why the send window ``window`` (:class:`outreach.input.campaigns.Window`) is closed at
    ``now``, as stored (English, whatever the interface language; the same words as its
    ``closed_reason``), or None when it is open."""
    local = now.astimezone(window.tz)
    if local.date() < window.start_date:
        return english(N_("the campaign starts on {date}"), date=window.start_date.isoformat())
    if local.date() > window.end_date:
        return english(N_("the campaign ended on {date}"), date=window.end_date.isoformat())
    if not (window.daily_start <= local.time() < window.daily_end):
        return english(N_("outside the daily send window {opens}–{closes} {tz} (now {now})"),
                       opens=f"{window.daily_start:%H:%M}", closes=f"{window.daily_end:%H:%M}",
                       tz=window.timezone, now=f"{local:%H:%M}")
    return None


def local_stamp(moment: dt.datetime, tz: dt.tzinfo) -> str:
    """``moment`` as stored in a run reason: ``YYYY-MM-DD HH:MM`` in ``tz``."""
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M}"


__all__ = ["LABELS", "PREFIXED", "describe", "label", "STOP_KINDS", "RUN_REASONS", "english", "run_reason", "local_stamp", "window_closed"]

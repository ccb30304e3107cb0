"""A whole city in constant memory (issue #25): set-based run creation, the outbox's batched
writes, the mock that keeps counts, the import's compact duplicate index, the progress view."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from outreach.cli import main
from outreach.cli.campaign import PhaseProgress, estimate_rows
from outreach.gateways.base import OutboundMessage
from outreach.gateways.mock import MockGateway
from outreach.gateways.outbox import OutboxGateway
from outreach.input import recipients
from outreach.input.recipients import _Seen
from outreach.ledger import runs, suppression
from outreach.ledger.models import Delivery, DeliveryEvent
from outreach.sending.engine import send_run
from tests.helpers import fresh_db, in_window, load, numbers, write_campaign
from tests.pg import pg_db, pg_url  # noqa: F401

CARRIER_PRICING = """
[pricing.sms]
default = 700
Viettel = 800
MobiFone = 810
"""


def _campaign(tmp: Path, n: int, text: str | None = None, extra: str = "") -> Path:
    path = write_campaign(tmp, n=n, **({"text": text} if text else {}), extra=extra)
    body = path.read_text("utf-8").replace("[pricing.sms]\ndefault = 800\n", CARRIER_PRICING)
    path.write_text(body, "utf-8")
    return path


def _prepare(db, tmp: Path, n: int, text: str | None = None, suppressed: int = 0):  # type: ignore[no-untyped-def]
    spec = load(_campaign(tmp, n, text))
    now = in_window()
    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=now)
    recipients.import_files(db, spec.list_files(), list_name=spec.list_name, now=now)
    if suppressed:
        with db.engine.begin() as conn:
            suppression.add(conn, numbers(n)[:suppressed], reason="sms-stop", source="test",
                            now=now, log=False)
    return spec, now


def _expected(db, spec, segments: int) -> dict:  # type: ignore[no-untyped-def]
    """What every row should hold, computed row by row from the recipients (not by the code
    under test)."""
    from outreach.ledger.models import Recipient
    from outreach.ledger.models import Suppression

    with db.engine.connect() as conn:
        rec = conn.execute(select(Recipient.id, Recipient.e164, Recipient.carrier)
                           .order_by(Recipient.id)).all()
        sup = set(conn.execute(select(Suppression.e164)).scalars())
    price = {"Viettel": 800, "MobiFone": 810}
    return {r.id: ("opted_out" if r.e164 in sup else "queued",
                   segments * price.get(r.carrier, 700), r.carrier) for r in rec}


@pytest.mark.parametrize("personalised", [False, True])
def test_create_run_writes_the_rows_a_row_by_row_computation_expects(
        tmp_path: Path, personalised: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    db = fresh_db(tmp_path)
    text = "Kính gửi {{name}}: hãy gọi 111 khi thấy dấu hiệu mua bán người." if personalised else None
    monkeypatch.setattr(runs, "BATCH", 7)    # several pages for the personalised path
    monkeypatch.setattr(runs, "SLICE", 10)   # several slices for the set-based one
    monkeypatch.setattr(runs, "TALLY_SLICE", 6)  # and for the plan's grouped counts
    spec, now = _prepare(db, tmp_path, 40, text=text, suppressed=3)
    seen: list[tuple[int, int]] = []
    with db.engine.begin() as conn:
        plan = runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "outbox"},
                               now=now, progress=lambda d, t: seen.append((d, t)))
    with db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.recipient_id, Delivery.status, Delivery.cost_vnd,
                                   Delivery.segments, Delivery.body, Delivery.error_reason,
                                   Delivery.final_at, Delivery.encoding, Delivery.id)
                            .order_by(Delivery.id)).all()
    from outreach.input import text as textmod

    segments = textmod.analyse(textmod.render(spec.text, {"name": "Người 0"}) if personalised
                               else spec.text).segments
    want = _expected(db, spec, segments)
    assert len(rows) == 40 == plan.created
    assert [r.recipient_id for r in rows] == sorted(want)  # delivery ids in recipient order
    for r in rows:
        status, cost, _ = want[r.recipient_id]
        assert (r.status, r.cost_vnd, r.segments) == (status, cost, segments)
        assert r.error_reason == ("suppressed" if status == "opted_out" else None)
        assert (r.final_at is not None) == (status == "opted_out")
        assert r.encoding == "UCS-2"
    if personalised:
        assert rows[0].body.startswith("Kính gửi Người ")
    else:
        assert all(r.body is None for r in rows)
    queued = [v for v in want.values() if v[0] == "queued"]
    assert plan.by_status == Counter({"queued": 37, "opted_out": 3})
    assert plan.skipped_reasons == Counter({"suppressed": 3})
    assert plan.segments == 37 * segments
    assert plan.cost_vnd == pytest.approx(sum(v[1] for v in queued))
    assert plan.by_carrier == Counter(v[2] or "unknown" for v in queued)
    assert plan.encoding == Counter({"UCS-2": 37})
    assert plan.sample and plan.sample_analysis["segments"] == segments
    assert seen[0] == (0, 40) and seen[-1] == (40, 40) and len(seen) >= 5


def test_create_run_daily_cap_and_second_launch(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    spec, now = _prepare(db, tmp_path, 25)
    with db.engine.begin() as conn:
        plan = runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "outbox"},
                               now=now, daily_cap=10, run_key="a")
    assert (plan.created, plan.deferred_by_cap, plan.already_had_delivery) == (10, 15, 0)
    with db.engine.begin() as conn:
        again = runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "outbox"},
                                now=now, run_key="b")
    assert (again.created, again.already_had_delivery) == (15, 10)
    with db.engine.begin() as conn:
        third = runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "outbox"},
                                now=now, run_key="c")
    assert third.run_id is None and third.created == 0 and third.already_had_delivery == 25


def test_create_run_on_postgresql_matches(tmp_path: Path, pg_db,  # noqa: F811
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "SLICE", 7)
    monkeypatch.setattr(runs, "TALLY_SLICE", 4)
    spec, now = _prepare(pg_db, tmp_path, 30, suppressed=2)
    with pg_db.engine.begin() as conn:
        plan = runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "outbox"},
                               now=now)
    want = _expected(pg_db, spec, 4 if len(spec.text) > 134 else plan.sample_analysis["segments"])
    with pg_db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.recipient_id, Delivery.status, Delivery.cost_vnd)
                            ).all()
    assert {r.recipient_id: (r.status, r.cost_vnd) for r in rows} == {
        k: (v[0], v[1]) for k, v in want.items()}
    assert plan.by_status == Counter({"queued": 28, "opted_out": 2})


def _msg(i: int, body: str = "Toàn dân tích cực") -> OutboundMessage:
    return OutboundMessage(delivery_id=i, campaign_id="c1", channel="sms", to=f"+8491{i:07d}",
                           body=body, segments=2, sender="STTTTCanTho")


def test_outbox_send_many_writes_the_lines_send_writes(tmp_path: Path) -> None:
    one, many = OutboxGateway(directory=tmp_path / "a"), OutboxGateway(directory=tmp_path / "b")
    msgs = [_msg(i, body='ký tự "đặc biệt"\n') for i in range(1, 6)]
    singles = [one.send(m) for m in msgs]
    batch = many.send_many(msgs)
    one.close(), many.close()
    a = [json.loads(x) for x in (tmp_path / "a" / "c1.jsonl").read_text("utf-8").splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b" / "c1.jsonl").read_text("utf-8").splitlines()]
    for x in a + b:
        x.pop("at")
    assert a == b and len(b) == 5 and b[0]["body"] == 'ký tự "đặc biệt"\n'
    assert [r.provider_message_id for r in batch] == [r.provider_message_id for r in singles]
    assert many.lookup(msgs[2], None, None).provider_message_id == "outbox-3"  # type: ignore[arg-type, union-attr]


class CountingOutbox(OutboxGateway):
    calls: list[int]

    def __init__(self, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kw)
        self.calls = []

    def send_many(self, messages):  # type: ignore[no-untyped-def]
        self.calls.append(len(messages))
        return super().send_many(messages)

    def send(self, message):  # type: ignore[no-untyped-def]
        raise AssertionError("a batched gateway without a rate is sent whole batches")


def test_outbox_run_is_sent_in_whole_batches_each_once(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    spec, now = _prepare(db, tmp_path, 45, suppressed=1)
    with db.engine.begin() as conn:
        plan = runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "outbox"},
                               now=now)
    gw = CountingOutbox(directory=tmp_path / "out")
    rep = send_run(db, spec, plan.run_id, {"sms": gw}, batch_size=20)
    gw.close()
    assert gw.calls == [20, 20, 4]
    assert rep.counts == {"sent": 44, "opted_out": 1} and rep.stopped is None
    lines = (tmp_path / "out" / f"{spec.id}.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == len({json.loads(x)["delivery_id"] for x in lines}) == 44
    with db.engine.connect() as conn:
        started = conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.sending_at.is_not(None), Delivery.status == "sent")).scalar_one()
        moves = Counter(conn.execute(select(DeliveryEvent.old_status, DeliveryEvent.new_status)
                                     ).all())
    assert started == 44  # every start committed before the batch left
    assert moves[("queued", "sending")] == 44 and moves[("sending", "sent")] == 44


class BrokenOutbox(OutboxGateway):
    def send_many(self, messages):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")


def test_outbox_batch_error_leaves_unknown_and_pauses(tmp_path: Path) -> None:
    db = fresh_db(tmp_path)
    spec, now = _prepare(db, tmp_path, 12)
    with db.engine.begin() as conn:
        plan = runs.create_run(conn, spec, kind="launch", gateway_names={"sms": "outbox"},
                               now=now)
    rep = send_run(db, spec, plan.run_id, {"sms": BrokenOutbox(directory=tmp_path / "o")},
                   batch_size=5)
    assert rep.stopped == "gateway" and "No space left" in (rep.reason or "")
    assert rep.counts == {"unknown": 5, "queued": 7}


def test_mock_keeps_counts_unless_asked() -> None:
    counting = MockGateway(keep=False, script={"+84910000002": ["invalid"]})
    for i in range(1, 4):
        try:
            counting.send(_msg(i))
        except Exception:  # noqa: BLE001 - the scripted invalid number
            pass
    assert (counting.requests, counting.accepted, counting.outbox, counting.attempts) == (
        3, 2, [], [])
    found = counting.lookup(_msg(3), None, None)  # type: ignore[arg-type]
    assert found.provider_message_id == "MOCKD00000003"  # type: ignore[union-attr]
    assert counting.lookup(_msg(2), None, None) is False  # type: ignore[arg-type]
    assert counting.lookup(_msg(99_999), None, None) is False  # type: ignore[arg-type]
    keeping = MockGateway()
    keeping.send(_msg(1))
    assert [m.delivery_id for m in keeping.outbox] == [1] and keeping.accepted == 1
    from outreach.gateways import build_gateways

    built = build_gateways({"sms": "mock"}, None)["sms"]
    assert built.keep is False  # type: ignore[attr-defined]


def test_seen_index_agrees_with_a_dict() -> None:
    rng = random.Random(7)
    seen, ref = _Seen(), {}
    keys = [84_900_000_000 + rng.randrange(2_000_000) for _ in range(30_000)]
    for i, k in enumerate(keys):
        got = seen.first(k, i)
        assert got == ref.get(k, -1)
        ref.setdefault(k, i)
    assert len(seen) == len(ref) < len(keys)


def test_estimate_rows_and_the_progress_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    path = _campaign(tmp_path, 30)
    spec = load(path)
    assert estimate_rows(spec.list_files()) == 30
    assert estimate_rows([tmp_path / "x.xlsx"]) is None
    monkeypatch.setenv("OUTREACH_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(main, ["--database-url", f"sqlite:///{tmp_path / 'c.db'}", "campaign",
                                  "launch", str(path), "--gateway", "outbox"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert "creating run" in r.stderr and "sending" in r.stderr
    assert "30/30" in r.stderr and "msg/s" in r.stderr and "rows/s" in r.stderr
    assert " 0 rows/s" not in r.stderr and " 0 msg/s" not in r.stderr


def test_a_phase_done_in_one_go_shows_its_real_rate_in_vietnamese(monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """Creating 2,098 rows in half a second is 4,196 rows per second, not 0 (the phase's own
    opening call starts its clock); counts and rates carry the Vietnamese separators."""
    import time

    from outreach import i18n

    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    i18n.set_language("vi")
    try:
        view = PhaseProgress()
        clock[0] += 2.0
        view.importing(10_000)
        view.creating(0, 2098)
        clock[0] += 0.5
        view.creating(2098, 2098)
        view.sending(98, 2098)       # recorded before (a resume): not counted in the rate
        clock[0] += 0.25
        view.sending(2098, 2098)
        fields = {name: view._prog.tasks[task].fields for name, task in view._tasks.items()}
        view.stop()
    finally:
        i18n.set_language("en")
    assert fields["import"] == {"count": "10.000", "rate": "5.000 dòng/giây"}
    assert fields["create"] == {"count": "2.098/2.098", "rate": "4.196 dòng/giây"}
    assert fields["send"] == {"count": "2.098/2.098", "rate": "8.000 tin/giây"}


def test_outbox_cuts_off_a_torn_line_before_appending_and_lookup_skips_it(tmp_path: Path) -> None:
    first = OutboxGateway(directory=tmp_path)
    first.send_many([_msg(1), _msg(2)])
    first.close()
    path = tmp_path / "c1.jsonl"
    whole = path.read_bytes()
    # killed inside a write, in the middle of a two-byte UTF-8 letter ("ơ" is c6 a1)
    torn = '{"delivery_id": 3, "campaign": "c1", "body": "Phòng chống mua bán ngư'.encode()
    path.write_bytes(whole + torn + "ơ".encode()[:1])
    again = OutboxGateway(directory=tmp_path)
    assert again.lookup(_msg(3), None, None) is False  # type: ignore[arg-type]
    again.send_many([_msg(3), _msg(4)])
    lines = path.read_text("utf-8").splitlines()  # whole UTF-8 again
    assert [json.loads(x)["delivery_id"] for x in lines] == [1, 2, 3, 4]
    assert path.read_bytes().startswith(whole) and path.read_bytes().endswith(b"}\n")
    assert again.lookup(_msg(3), None, None).provider_message_id == "outbox-3"  # type: ignore[arg-type, union-attr]
    assert again.lookup(_msg(5), None, None) is False  # type: ignore[arg-type]
    # another writer sharing the file dies mid-line while this one holds it open
    with open(path, "ab") as other:
        other.write(b'{"delivery_id": 5, "campaign": "c1", "to": "+84')
    again.send(_msg(6))
    assert [json.loads(x)["delivery_id"] for x in path.read_text("utf-8").splitlines()] == [
        1, 2, 3, 4, 6]
    assert again.lookup(_msg(5), None, None) is False  # type: ignore[arg-type]
    assert again.lookup(_msg(6), None, None) is not False  # type: ignore[arg-type]
    again.close()


def test_import_issues_beyond_the_head_are_spooled_and_all_reach_the_reject_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach.ledger.models import ImportIssue

    monkeypatch.setattr(recipients.IssueLog, "HEAD", 4)
    good = [n.replace("+84", "0") for n in numbers(40)]
    lines = ["ho_ten,so_dien_thoai"]
    for i, n in enumerate(good):
        lines.append(f"Người {i},{n}")
        if i % 4 == 0:
            lines.append(f"Hỏng {i},12345")            # rejected
            lines.append(f"Lặp {i},{good[i]}")         # duplicate of the line above it
    path = tmp_path / "phường-an-hòa.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = fresh_db(tmp_path)
    reject = tmp_path / "rejects.csv"
    r = CliRunner().invoke(main, ["--database-url", str(db.url), "--lang", "en", "recipients",
                                  "import", str(path), "--list", "l", "--reject-file",
                                  str(reject)])
    assert r.exit_code == 0, r.output
    with db.engine.connect() as conn:
        stored = conn.execute(select(ImportIssue.kind, ImportIssue.line, ImportIssue.raw_masked)
                              .order_by(ImportIssue.id)).all()
    assert len(stored) == 20 and Counter(k for k, _, _ in stored) == {"rejected": 10,
                                                                       "duplicate": 10}
    rows = (reject.read_text(encoding="utf-8-sig").splitlines())[1:]
    # every issue, in order, the ones past the in-memory head read back from the spool
    assert [(row.split(",")[0], int(row.split(",")[2])) for row in rows] == [
        (k, line) for k, line, _ in stored]
    assert "phường-an-hòa.csv" in rows[-1] and "096****036" in rows[-1]
    log = recipients.IssueLog()
    for k, line, raw in stored:
        log.append(recipients.Issue(k, "f.csv", line, raw, "r"))
    assert len(log) == 20 and [i.line for i in log] == [line for _, line, _ in stored]
    assert log[10].line == stored[10][1] and [i.line for i in log[2:6]] == [
        s[1] for s in stored[2:6]]

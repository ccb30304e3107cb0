"""Issue #24: `campaign check` knows what each provider will refuse; ZNS template data
personalised per recipient; the content-level pause; NFC file names; the whole Zalo table."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from outreach.cli import main
from outreach.clock import FakeClock
from outreach.gateways import base
from outreach.gateways.mock import MockGateway
from outreach.gateways.smpp import SmppGateway
from outreach.gateways.twilio import TwilioGateway
from outreach.gateways.zalo import ZaloGateway, error_table
from outreach.input import campaigns
from outreach.input.campaigns import CampaignError
from outreach.ledger.models import Delivery
from outreach.sending import ops
from tests.fakes.twilio_server import FakeTwilio, twilio_server  # noqa: F401 - fixture
from tests.fakes.zalo_server import FakeZalo, zalo_server  # noqa: F401 - fixture
from tests.helpers import approve, fresh_db, in_window, load, numbers, write_campaign

LONG_TEXT = "Toàn dân tích cực tham gia phòng, chống mua bán người. " * 30  # 1,650 characters
LONG_TEXT = LONG_TEXT.strip()
ZNS = """
[[channels]]
channel = "zalo"
template_id = "301234"
concurrency = 1
[channels.template_fields]
ten_khach_hang = "{fields}"
noi_dung = "Phòng, chống mua bán người"
"""


def zns_campaign(tmp: Path, fields: str = "{{name}}", n: int = 4) -> campaigns.CampaignSpec:
    return load(write_campaign(tmp, n=n, channels=ZNS.replace("{fields}", fields)))


def zalo_gateway(db, z: FakeZalo, clock: FakeClock) -> ZaloGateway:
    gw = ZaloGateway(db=db, clock=clock, **z.gateway_options())
    z.seed(gw.tokens)
    return gw


# -- Twilio: 1,600 characters --------------------------------------------------------------

@pytest.mark.parametrize("command", [["campaign", "check"], ["campaign", "launch", "--dry-run"]],
                         ids=["check", "dry-run"])
def test_twilio_body_over_1600_characters_is_refused_by_campaign_check_before_any_request(
        tmp_path: Path, twilio_server: FakeTwilio, monkeypatch: pytest.MonkeyPatch,
        command: list[str]) -> None:
    assert len(LONG_TEXT) == 1649
    path = write_campaign(tmp_path, text=LONG_TEXT)
    for k, v in {"TWILIO_ACCOUNT_SID": twilio_server.account_sid,
                 "TWILIO_AUTH_TOKEN": twilio_server.auth_token, "TWILIO_FROM": "SYTECANTHO",
                 "OUTREACH_TWILIO_API_URL": twilio_server.base_url}.items():
        monkeypatch.setenv(k, v)
    r = CliRunner().invoke(main, ["--database-url", f"sqlite:///{tmp_path / 'c.db'}",
                                  *command, str(path), "--gateway", "twilio"])
    assert r.exit_code == 1, r.output
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {path}: field 'message.text': 1,649 characters, over the limit of 1,600 "
        "(Twilio: a message Body is at most 1,600 characters; longer is refused with error "
        "21617 (https://www.twilio.com/docs/api/errors/21617; Message resource, Body "
        "parameter)); twilio would refuse it for every recipient, nothing was sent")
    assert twilio_server.requests == []  # not one request reached the provider


def test_the_refusal_reads_in_vietnamese(tmp_path: Path, twilio_server: FakeTwilio,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The same refusal with --lang vi: Vietnamese numbers and words; the rule quoted from
    Twilio's documentation stays as written in twilio_limits.json."""
    path = write_campaign(tmp_path, text=LONG_TEXT)
    for k, v in {"TWILIO_ACCOUNT_SID": twilio_server.account_sid,
                 "TWILIO_AUTH_TOKEN": twilio_server.auth_token, "TWILIO_FROM": "SYTECANTHO",
                 "OUTREACH_TWILIO_API_URL": twilio_server.base_url}.items():
        monkeypatch.setenv(k, v)
    r = CliRunner().invoke(main, ["--lang", "vi", "--database-url",
                                  f"sqlite:///{tmp_path / 'c.db'}", "campaign", "check",
                                  str(path), "--gateway", "twilio"])
    assert r.exit_code == 1, r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lỗi: {path}: ") and "1.649 ký tự, vượt giới hạn 1.600 (Twilio:" in last
    assert last.endswith("twilio sẽ từ chối tin này với mọi người nhận, chưa gửi tin nào")
    assert twilio_server.requests == []


def test_twilio_more_than_10_segments_is_advice_not_a_refusal(tmp_path: Path,
                                                                twilio_server: FakeTwilio) -> None:
    text = "Phòng, chống mua bán người. " * 25  # 700 characters, UCS-2: 11 segments
    spec = load(write_campaign(tmp_path, text=text.strip()))
    db = fresh_db(tmp_path)
    gw = TwilioGateway(**twilio_server.gateway_options())
    res = ops.launch(db, spec, dry_run=True, gateways={"sms": gw})
    assert res.advice == ["message.text: 11 segments, more than the recommended 10 (Twilio "
                          "recommends at most 10 segments per message for reliable delivery "
                          "(https://www.twilio.com/docs/glossary/what-sms-character-limit; "
                          "Messaging Services best practices))"]
    assert res.plan is not None and res.plan.by_status["queued"] == 6
    assert twilio_server.requests == []


def test_personalised_sms_over_the_limit_is_a_per_recipient_rejection(
        tmp_path: Path, twilio_server: FakeTwilio) -> None:
    # 1,590 characters of text plus a name: the recipients with names over 10 characters
    # would be refused by Twilio (21617); they are skipped with the reason, the others queued
    text = ("Kính gửi {{name}}. " + "Phòng, chống mua bán người. " * 57)[:1590].strip()
    lst_names = ["An", "Nguyễn Thị Ánh Tuyết"]
    path = write_campaign(tmp_path, text=text, n=2)
    csv = tmp_path / "test-campaign-list.csv"
    rows = ["phone,name"] + [f"{p},{nm}" for p, nm in zip(numbers(2), lst_names)]
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = load(path)
    db = fresh_db(tmp_path)
    gw = TwilioGateway(**twilio_server.gateway_options())
    res = ops.launch(db, spec, dry_run=True, gateways={"sms": gw})
    assert res.plan is not None
    assert res.plan.by_status == {"queued": 1, "skipped": 1}
    [(reason, n)] = res.plan.skipped_reasons.items()
    literal = len(text) - len("{{name}}")
    assert reason == f"too-long:message.text ({literal + 20}/1600 characters)" and n == 1
    assert twilio_server.requests == []


def test_personalised_text_outside_the_registered_brandname_template_is_skipped(
        tmp_path: Path) -> None:
    channels = """
[[channels]]
channel = "sms"
sender = "UBNDCANTHO"
brandname_template = "UBND TP Can Tho thong bao: {P1,20}"
"""
    path = write_campaign(tmp_path, n=2, channels=channels,
                          text="UBND TP Can Tho thong bao: Kinh gui {{name}}")
    ph = numbers(2)
    (tmp_path / "test-campaign-list.csv").write_text(
        f"phone,name\n{ph[0]},An\n{ph[1]},Nguyen Thi Anh Tuyet\n", encoding="utf-8")
    spec = load(path)
    db = fresh_db(tmp_path)
    mock = MockGateway(channel="sms")
    res = ops.launch(db, spec, gateways={"sms": mock}, clock=FakeClock(in_window()))
    assert res.report is not None and res.report.counts == {"sent": 1, "skipped": 1}
    assert [m.body for m in mock.outbox] == ["UBND TP Can Tho thong bao: Kinh gui An"]
    with db.engine.connect() as conn:
        reason = conn.execute(select(Delivery.error_reason)
                              .where(Delivery.address == ph[1])).scalar()
    assert reason == "brandname-template:channels[0].brandname_template"


def test_oa_text_over_2000_characters_is_a_refusal(tmp_path: Path, zalo_server: FakeZalo) -> None:
    db = fresh_db(tmp_path)
    gw = zalo_gateway(db, zalo_server, FakeClock(in_window()))
    msg = base.OutboundMessage(delivery_id=1, campaign_id="c", channel="zalo", to="uid-1",
                               body="ạ" * 2001, zalo_user_id="uid-1")
    [r] = gw.refusals(msg)
    assert (r.part, r.length, r.limit, r.unit) == ("body", 2001, 2000, "characters")
    assert zalo_server.requests == []
    gw.close()


# -- SMPP: the configured maximum segments ---------------------------------------------------

def test_smpp_message_over_the_configured_segments_is_refused(tmp_path: Path) -> None:
    text = "Phòng, chống mua bán người. " * 8  # 224 characters, UCS-2: 4 segments
    spec = load(write_campaign(tmp_path, text=text.strip()))
    db = fresh_db(tmp_path)
    # nothing listens there: the check must not need the SMSC (no connection is even tried)
    gw = SmppGateway(host="127.0.0.1", port=9, system_id="test", password="pw",
                     source="TEST", max_segments=3)
    with pytest.raises(CampaignError) as info:
        ops.launch(db, spec, dry_run=True, gateways={"sms": gw})
    assert str(info.value).endswith(
        "field 'message.text': 4 segments, over the limit of 3 (SMPP: this SMSC accepts at "
        "most 3 segments (OUTREACH_SMPP_MAX_SEGMENTS; SMPP: a concatenated message has at "
        "most 255 parts (3GPP TS 23.040 §9.2.3.24.1, the concatenation header's one-octet part "
        "count); carriers often allow fewer: set OUTREACH_SMPP_MAX_SEGMENTS to the figure in "
        "the SMSC contract)); smpp would refuse it for every recipient, nothing was sent")
    gw.close()


# -- ZNS: template parameters from Zalo's template information API ---------------------------

def test_zns_parameter_over_its_max_length_is_refused_by_check(tmp_path: Path,
                                                               zalo_server: FakeZalo) -> None:
    z = zalo_server
    z.template("301234", {"ten_khach_hang": 30, "noi_dung": 20})
    spec = zns_campaign(tmp_path, fields="Ông/Bà")
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    gw = zalo_gateway(db, z, clock)
    with pytest.raises(CampaignError) as info:
        ops.launch(db, spec, dry_run=True, gateways={"zalo": gw}, clock=clock)
    assert str(info.value) == (
        f"{spec.file}: field 'channels[0].template_fields.noi_dung': 26 characters, over the "
        "limit of 20 (Zalo ZNS template 301234, from its template information: maxLength 20); "
        "zalo would refuse it for every recipient, nothing was sent")
    assert z.send_requests() == []
    assert [r.path for r in z.requests] == ["/template/info/v2"]
    # cached: a second check reads the template information no more
    with pytest.raises(CampaignError):
        ops.launch(db, spec, dry_run=True, gateways={"zalo": gw}, clock=clock)
    assert z.template_reads == 1
    gw.close()


def test_unknown_zns_template_is_refused_with_zalos_answer(tmp_path: Path,
                                                            zalo_server: FakeZalo) -> None:
    spec = zns_campaign(tmp_path)
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    gw = zalo_gateway(db, zalo_server, clock)
    with pytest.raises(CampaignError) as info:
        ops.launch(db, spec, dry_run=True, gateways={"zalo": gw}, clock=clock)
    assert "field 'channels[0]': cannot read zalo's limits for this message " \
           "(template-id-invalid: Zalo error -109: ZNS template id invalid" in str(info.value)
    assert zalo_server.send_requests() == []
    gw.close()


def test_zns_fields_personalised_per_recipient_nfc_with_length_rejections(
        tmp_path: Path, zalo_server: FakeZalo) -> None:
    z = zalo_server
    z.template("301234", {"ten_khach_hang": 12, "noi_dung": 40})
    path = write_campaign(tmp_path, n=3, channels=ZNS.replace("{fields}", "Chị {{name}}"))
    nfd = unicodedata.normalize("NFD", "Hồng Ánh")  # a list exported in NFD
    csv = tmp_path / "test-campaign-list.csv"
    ph = numbers(3)
    csv.write_text(f"phone,name\n{ph[0]},{nfd}\n{ph[1]},Nguyễn Thị Ánh Tuyết\n{ph[2]},Lan\n",
                   encoding="utf-8")
    spec = load(path)
    db = fresh_db(tmp_path)
    approve(db, spec)
    clock = FakeClock(in_window())
    gw = zalo_gateway(db, z, clock)
    res = ops.launch(db, spec, gateways={"zalo": gw}, clock=clock)
    assert res.report is not None and res.report.stopped is None
    assert res.report.counts == {"sent": 2, "skipped": 1}
    sent = {s.phone: s.template_data for s in z.zns()}
    assert sent == {ph[0][1:]: {"ten_khach_hang": "Chị Hồng Ánh",
                                "noi_dung": "Phòng, chống mua bán người"},
                    ph[2][1:]: {"ten_khach_hang": "Chị Lan",
                                "noi_dung": "Phòng, chống mua bán người"}}
    assert unicodedata.is_normalized("NFC", sent[ph[0][1:]]["ten_khach_hang"])
    assert len(z.send_requests()) == 2  # the long name was never sent
    with db.engine.connect() as conn:
        row = conn.execute(select(Delivery.status, Delivery.error_reason)
                           .where(Delivery.address == ph[1])).one()
    assert tuple(row) == ("skipped",
                          "too-long:channels[0].template_fields.ten_khach_hang (24/12 characters)")
    gw.close()


def test_zns_field_naming_a_missing_column_skips_the_recipient(tmp_path: Path,
                                                                zalo_server: FakeZalo) -> None:
    zalo_server.template("301234", {"ten_khach_hang": 40, "noi_dung": 40})
    spec = zns_campaign(tmp_path, fields="{{ward}}", n=2)
    csv = tmp_path / "test-campaign-list.csv"
    ph = numbers(2)
    csv.write_text(f"phone,name,ward\n{ph[0]},An,An Hòa\n{ph[1]},Bình,\n", encoding="utf-8")
    db = fresh_db(tmp_path)
    clock = FakeClock(in_window())
    gw = zalo_gateway(db, zalo_server, clock)
    res = ops.launch(db, spec, dry_run=True, gateways={"zalo": gw}, clock=clock)
    assert res.plan is not None and res.plan.by_status == {"queued": 1, "skipped": 1}
    assert dict(res.plan.skipped_reasons) == {"missing-field:ward": 1}
    gw.close()


# -- the content-level pause -----------------------------------------------------------------

def test_first_sends_failing_with_one_content_code_pause_the_run(tmp_path: Path,
                                                                  zalo_server: FakeZalo) -> None:
    # Zalo's template changed after the check (its cache): every send answers -112
    z = zalo_server
    z.template("301234", {"ten_khach_hang": 40, "noi_dung": 40})
    spec = zns_campaign(tmp_path, n=20)
    db = fresh_db(tmp_path)
    approve(db, spec)
    clock = FakeClock(in_window())
    gw = zalo_gateway(db, z, clock)
    z.queue(*["error:-112"] * 20)
    res = ops.launch(db, spec, gateways={"zalo": gw}, clock=clock)
    rep = res.report
    assert rep is not None and rep.stopped == "content"
    assert rep.reason is not None and rep.reason.startswith(
        "the first 5 sends all failed with code -112 (template-params-invalid: Zalo error -112: "
        "Template data invalid: a parameter is too long, of the wrong type or missing")
    assert rep.counts == {"failed": 5, "queued": 15}
    assert len(z.send_requests()) == 5
    with db.engine.connect() as conn:
        from outreach.ledger.models import Run

        assert conn.execute(select(Run.status)).scalar() == "paused"
    gw.close()


def test_failures_that_are_not_content_level_do_not_pause(tmp_path: Path) -> None:
    spec = load(write_campaign(tmp_path, n=8))
    db = fresh_db(tmp_path)
    # invalid numbers are the recipients' own facts, not the message's
    mock = MockGateway(channel="sms", script={p: ["invalid"] for p in numbers(8)[:6]})
    res = ops.launch(db, spec, gateways={"sms": mock}, clock=FakeClock(in_window()))
    assert res.report is not None and res.report.stopped is None
    assert res.report.counts == {"failed": 6, "sent": 2}


# -- NFC file names ------------------------------------------------------------------------

def test_nfd_file_name_on_disk_matches_its_nfc_key_and_glob(tmp_path: Path) -> None:
    nfc = "Ninh Kiều.csv"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    (tmp_path / nfd).write_text("phone,name\n" + "".join(f"{p},Người {i}\n" for i, p in
                                                          enumerate(numbers(3)))
                                + "0292123456,Cơ quan\n", "utf-8")  # one digit short: rejected
    path = write_campaign(tmp_path, n=1)
    text = path.read_text("utf-8").replace('lists = ["test-campaign-list.csv"]',
                                            f'lists = ["{nfc}"]\ndistrict_by_file = {{ "{nfc}" = '
                                            '"Quận Ninh Kiều" }')
    path.write_text(text, "utf-8")
    spec = load(path)
    [found] = spec.list_files()
    assert found.name == nfd  # the file as on disk, to be opened
    db = fresh_db(tmp_path)
    res = ops.launch(db, spec, dry_run=True, gateways={"sms": MockGateway(channel="sms")})
    assert res.import_summary is not None and res.import_summary.imported == 3
    # reports name the file in NFC
    [issue] = res.import_summary.issues
    assert issue.where().endswith(f"{nfc}:5") and issue.reason == "too-short"
    assert issue.file.endswith(nfc) and unicodedata.is_normalized("NFC", issue.file)
    assert [Path(i.to_dict()["file"]).name for i in res.import_summary.lists] == [nfc]
    with db.engine.connect() as conn:
        from outreach.ledger.models import Recipient

        rows = conn.execute(select(Recipient.district)).scalars().all()
    assert rows == []  # a dry run leaves nothing
    res = ops.launch(db, spec, gateways={"sms": MockGateway(channel="sms")},
                     clock=FakeClock(in_window()))
    with db.engine.connect() as conn:
        districts = conn.execute(select(Delivery.district)).scalars().all()
    assert districts == ["Ninh Kiều"] * 3  # the file's district (official name), found by NFC


def test_nfd_key_and_nfc_file_match_too(tmp_path: Path) -> None:
    nfc = "Cái Răng.csv"
    (tmp_path / nfc).write_text("phone\n0965550001\n", "utf-8")
    nfd = unicodedata.normalize("NFD", nfc)
    spec = campaigns.CampaignSpec(**{**load(write_campaign(tmp_path, n=1)).__dict__,
                                     "lists": (nfd,), "district_by_file": {}})
    assert [p.name for p in spec.list_files()] == [nfc]
    with pytest.raises(CampaignError) as info:
        campaigns.CampaignSpec(**{**spec.__dict__,
                                  "district_by_file": {"Ô Môn.csv": "Ô Môn"}}).list_files()
    assert "no list file is named 'Ô Môn.csv' (files: Cái Răng.csv)" in str(info.value)


# -- the complete Zalo table ---------------------------------------------------------------

CLASSES = {"throttled": base.ThrottledError, "unavailable": base.UnavailableError,
           "invalid-address": base.InvalidAddressError, "permanent": base.PermanentError,
           "stop": base.StopRunError, "authentication": base.AuthenticationError,
           "token": None}


def test_every_published_zalo_code_is_in_the_table_with_a_class() -> None:
    table = error_table()
    published = table["published_list"]["codes"]
    assert len(published) == 54 and "-112" in published
    for code in published:
        entry = table["codes"].get(code)
        assert entry is not None, f"Zalo error {code} missing from zalo_errors.json"
        assert entry["class"] in CLASSES, code
        assert entry["reason"] and entry["text"], code
    for code, entry in table["codes"].items():
        assert entry["class"] in CLASSES, code
    assert table["codes"]["-112"]["content"] is True
    assert table["codes"]["-114"].get("content") is None  # the user's fact, not the message


@pytest.mark.parametrize("code", ["-112", "-111", "-1122", "-116"])
def test_content_level_zalo_codes_raise_permanent_errors_marked_content(
        tmp_path: Path, zalo_server: FakeZalo, code: str) -> None:
    db = fresh_db(tmp_path)
    gw = zalo_gateway(db, zalo_server, FakeClock(in_window()))
    zalo_server.queue(f"error:{code}")
    with pytest.raises(base.PermanentError) as info:
        gw.send(base.OutboundMessage(delivery_id=1, campaign_id="c", channel="zalo",
                                     to="+84912345678", body="", template_id="301234",
                                     template_data={"a": "b"}))
    assert info.value.content is True and info.value.provider_code == code
    gw.close()

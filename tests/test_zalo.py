"""ZaloGateway against the loopback fake: ZNS and OA sends, every error class, network faults."""

from __future__ import annotations

import datetime as dt
import json
import logging
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.fakes.zalo_server import (FIRST_ACCESS_TOKEN, FIRST_REFRESH_TOKEN, SECRET_KEY, FakeZalo,
                               closed_port, zalo_server)  # noqa: F401 - fixture

from outreach.clock import FakeClock
from outreach.ledger.db import Database
from outreach.gateways import base, make_gateway
from outreach.gateways.base import OutboundMessage
from outreach.gateways.zalo import ZaloGateway, error_table, night_retry_after
from outreach.ledger.models import Base

PHONE = "+84912345678"
VN = dt.timezone(dt.timedelta(hours=7))
NOON_VN = dt.datetime(2024, 7, 30, 12, 0, tzinfo=VN)
NFD_NAME = unicodedata.normalize("NFD", "Nguyễn Thị Ánh Tuyết")
NFD_TEXT = unicodedata.normalize("NFD", "Thông báo tiêm chủng mở rộng tại trạm y tế phường Xuân Khánh")


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'zalo.db'}")
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON_VN)


@pytest.fixture
def gw(db: Database, zalo_server: FakeZalo, clock: FakeClock) -> ZaloGateway:
    gateway = ZaloGateway(db=db, clock=clock, read_timeout=2.0, **zalo_server.gateway_options())
    zalo_server.seed(gateway.tokens)
    yield gateway
    gateway.close()


def zns(to: str = PHONE, delivery_id: int = 4242, **kw: object) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, campaign_id="tiem-chung", channel="zalo",
                           to=to, body="(template)", template_id=kw.pop("template_id", "301234"),
                           template_data=kw.pop("template_data", {"ho_ten": NFD_NAME,
                                                                   "ngay": "30/07/2024"}),
                           **kw)  # type: ignore[arg-type]


# -- success ----------------------------------------------------------------------------------

def test_zns_send_by_phone(gw: ZaloGateway, zalo_server: FakeZalo) -> None:
    result = gw.send(zns())
    [req] = zalo_server.send_requests()
    assert req.method == "POST" and req.path == "/message/template"
    assert req.access_token == FIRST_ACCESS_TOKEN  # header "access_token", not Bearer
    assert "Authorization" not in req.headers
    assert req.json["phone"] == "84912345678"  # E.164 without "+"
    assert req.json["tracking_id"] == "4242"  # our delivery id, echoed in webhooks
    assert req.json["template_id"] == "301234"
    assert req.json["template_data"] == {"ho_ten": "Nguyễn Thị Ánh Tuyết", "ngay": "30/07/2024"}
    assert unicodedata.is_normalized("NFC", req.json["template_data"]["ho_ten"])
    assert "mode" not in req.json
    [sent] = zalo_server.sends
    assert result.provider_message_id == sent.msg_id
    assert result.status == "sent" and result.segments == 1
    assert result.raw["quota"] == {"dailyQuota": "500", "remainingQuota": "499"}
    assert gw.last_quota == {"dailyQuota": "500", "remainingQuota": "499"}


def test_oa_message_to_follower(gw: ZaloGateway, zalo_server: FakeZalo) -> None:
    msg = OutboundMessage(delivery_id=7, campaign_id="c", channel="zalo", to=PHONE, body=NFD_TEXT,
                          zalo_user_id="8512369874512")
    result = gw.send(msg)
    [req] = zalo_server.send_requests()
    assert req.path == "/v3.0/oa/message/cs"
    assert req.json == {"recipient": {"user_id": "8512369874512"},
                        "message": {"text": unicodedata.normalize("NFC", NFD_TEXT)}}
    assert result.provider_message_id == zalo_server.sends[0].msg_id


def test_oa_text_over_2000_characters_is_refused_before_sending(gw: ZaloGateway,
                                                                zalo_server: FakeZalo) -> None:
    msg = OutboundMessage(delivery_id=7, campaign_id="c", channel="zalo", to=PHONE,
                          body="a" * 2001, zalo_user_id="85")
    with pytest.raises(base.PermanentError) as info:
        gw.send(msg)
    assert info.value.reason == "text-too-long"
    assert zalo_server.requests == []


def test_body_param_and_development_mode(db: Database, zalo_server: FakeZalo) -> None:
    gw = ZaloGateway(db=db, development=True, template_id="999", body_param="noi_dung",
                     **zalo_server.gateway_options())
    zalo_server.seed(gw.tokens)
    gw.send(OutboundMessage(delivery_id=1, campaign_id="c", channel="zalo", to=PHONE,
                            body=NFD_TEXT))
    [req] = zalo_server.send_requests()
    assert req.json["mode"] == "development"
    assert req.json["template_id"] == "999"
    assert req.json["template_data"] == {"noi_dung": unicodedata.normalize("NFC", NFD_TEXT)}


def test_bad_address_and_missing_template_fail_before_any_request(gw: ZaloGateway,
                                                                  zalo_server: FakeZalo) -> None:
    with pytest.raises(base.InvalidAddressError):
        gw.send(zns(to="0912345678"))
    with pytest.raises(base.PermanentError) as info:
        gw.send(zns(template_id=None))
    assert info.value.reason == "template-missing"
    assert zalo_server.requests == []


# -- the error table ------------------------------------------------------------------------

CLASSES = {"throttled": base.ThrottledError, "unavailable": base.UnavailableError,
           "invalid-address": base.InvalidAddressError, "permanent": base.PermanentError,
           "stop": base.StopRunError, "authentication": base.AuthenticationError}
NON_TOKEN_CODES = sorted((code, entry) for code, entry in error_table()["codes"].items()
                         if entry["class"] != "token")


@pytest.mark.parametrize(("code", "entry"), NON_TOKEN_CODES, ids=[c for c, _ in NON_TOKEN_CODES])
def test_every_code_in_the_table_raises_its_class(gw: ZaloGateway, zalo_server: FakeZalo,
                                                  code: str, entry: dict) -> None:
    zalo_server.script(PHONE, f"error:{code}")
    with pytest.raises(base.GatewayError) as info:
        gw.send(zns())
    err = info.value
    assert type(err) is CLASSES[entry["class"]]
    assert err.reason == entry["reason"]
    assert err.provider_code == code
    assert len(zalo_server.send_requests()) == 1  # never retried by the adapter
    assert zalo_server.sends == []
    assert zalo_server.refresh_calls == 0


@pytest.mark.parametrize(("outcome", "cls", "reason"), [
    ("error:-118", base.InvalidAddressError, "no-zalo-account"),
    ("error:-108", base.InvalidAddressError, "invalid-phone"),
    ("error:-114", base.PermanentError, "user-refuses"),
    ("error:-141", base.PermanentError, "user-refuses"),
    ("error:-131", base.StopRunError, "template-not-approved"),
    ("error:-1122", base.PermanentError, "template-params-invalid"),
    ("error:-213", base.PermanentError, "not-a-follower"),
    ("error:-232", base.PermanentError, "no-recent-interaction"),
    ("error:-32", base.ThrottledError, "rate-limited"),
    ("error:-144", base.UnavailableError, "oa-daily-quota"),
    ("error:-115", base.StopRunError, "out-of-balance"),
    ("error:-103", base.StopRunError, "app-misconfigured"),
    ("error:-9999", base.PermanentError, "zalo-error"),
])
def test_named_error_classes(gw: ZaloGateway, zalo_server: FakeZalo, outcome: str,
                             cls: type, reason: str) -> None:
    zalo_server.script(PHONE, outcome)
    with pytest.raises(cls) as info:
        gw.send(zns())
    assert info.value.reason == reason
    assert info.value.provider_code == outcome.split(":")[1]
    assert "Zalo error" in str(info.value)


def test_user_refuses_is_not_an_opt_out_nor_an_invalid_number(gw: ZaloGateway,
                                                              zalo_server: FakeZalo) -> None:
    # refusing Zalo messages says nothing about SMS: no suppression-list entry
    zalo_server.script(PHONE, "refuses")
    with pytest.raises(base.PermanentError) as info:
        gw.send(zns())
    assert not isinstance(info.value, (base.OptedOutError, base.InvalidAddressError))


def test_out_of_balance_stops_the_run_but_is_not_an_authentication_error(
        gw: ZaloGateway, zalo_server: FakeZalo) -> None:
    zalo_server.script(PHONE, "balance")
    with pytest.raises(base.StopRunError) as info:
        gw.send(zns())
    assert not isinstance(info.value, base.AuthenticationError)


def test_rate_limit_retry_after_is_60_seconds(gw: ZaloGateway, zalo_server: FakeZalo) -> None:
    zalo_server.script(PHONE, "rate")
    with pytest.raises(base.ThrottledError) as info:
        gw.send(zns())
    assert info.value.retry_after == 60.0


def test_daily_quota_retry_after_runs_to_midnight_in_vietnam(gw: ZaloGateway,
                                                             zalo_server: FakeZalo) -> None:
    zalo_server.script(PHONE, "quota")
    with pytest.raises(base.UnavailableError) as info:
        gw.send(zns())
    assert info.value.retry_after == 12 * 3600  # 12:00 → 00:00 Asia/Ho_Chi_Minh


# -- night window ---------------------------------------------------------------------------

@pytest.mark.parametrize(("local", "expected"), [
    (dt.datetime(2024, 7, 30, 23, 30, tzinfo=VN), 6.5 * 3600),   # → 06:00 next day
    (dt.datetime(2024, 7, 31, 2, 0, tzinfo=VN), 4 * 3600),
    (dt.datetime(2024, 7, 30, 22, 0, tzinfo=VN), 8 * 3600),
    (dt.datetime(2024, 7, 31, 5, 59, 30, tzinfo=VN), 30),
    (dt.datetime(2024, 7, 30, 12, 0, tzinfo=VN), 300),  # Zalo's clock disagrees with ours
])
def test_night_window_retry_after_is_seconds_until_six_in_vietnam(
        db: Database, zalo_server: FakeZalo, local: dt.datetime, expected: float) -> None:
    clock = FakeClock(local)
    gw = ZaloGateway(db=db, clock=clock, **zalo_server.gateway_options())
    zalo_server.seed(gw.tokens, expires_in=90000)
    for code in ("-133", "-234"):
        zalo_server.script(PHONE, f"error:{code}")
        with pytest.raises(base.UnavailableError) as info:
            gw.send(zns())
        assert info.value.reason == "night-window"
        assert info.value.retry_after == expected
    assert zalo_server.sends == []


def test_night_window_does_not_depend_on_the_server_time_zone(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    import time

    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        now = dt.datetime(2025, 3, 9, 16, 0, tzinfo=dt.timezone.utc)  # 23:00 in Vietnam
        assert night_retry_after(now, error_table()["night_window"]) == 7 * 3600
    finally:
        monkeypatch.undo()
        time.tzset()


# -- tokens ---------------------------------------------------------------------------------

def test_expired_token_is_refreshed_and_the_send_retried_once(gw: ZaloGateway,
                                                              zalo_server: FakeZalo) -> None:
    zalo_server.expire_access_tokens()
    result = gw.send(zns())
    reqs = zalo_server.send_requests()
    assert [r.outcome for r in reqs] == ["error:-124", "accept"]
    assert reqs[0].access_token == FIRST_ACCESS_TOKEN
    assert reqs[1].access_token == zalo_server.access_token != FIRST_ACCESS_TOKEN
    assert zalo_server.refresh_calls == 1
    assert zalo_server.refresh_tokens_received == [FIRST_REFRESH_TOKEN]
    assert result.provider_message_id == zalo_server.sends[0].msg_id


@pytest.mark.parametrize("code", ["-124", "-216", "-220"])
def test_token_rejected_twice_is_an_authentication_error(gw: ZaloGateway, zalo_server: FakeZalo,
                                                         code: str) -> None:
    zalo_server.script(PHONE, f"error:{code}", f"error:{code}")
    with pytest.raises(base.AuthenticationError) as info:
        gw.send(zns())
    assert info.value.provider_code == code
    assert len(zalo_server.send_requests()) == 2  # the original and ONE retry
    assert zalo_server.refresh_calls == 1
    assert zalo_server.sends == []


def test_refresh_token_refused_tells_the_operator_to_set_a_token(gw: ZaloGateway,
                                                                 zalo_server: FakeZalo) -> None:
    zalo_server.expire_access_tokens()
    zalo_server.queue_oauth("reject")
    with pytest.raises(base.AuthenticationError) as info:
        gw.send(zns())
    assert "outreach gateways zalo set-token" in str(info.value)
    assert info.value.provider_code == "-14014"
    assert zalo_server.sends == []


# -- HTTP and network faults ----------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_unavailable_and_nothing_was_sent(gw: ZaloGateway, zalo_server: FakeZalo,
                                                 status: int) -> None:
    zalo_server.script(PHONE, f"http:{status}")
    with pytest.raises(base.UnavailableError) as info:
        gw.send(zns())
    assert info.value.provider_code == str(status)
    assert not isinstance(info.value, base.OutcomeUnknownError)


def test_http_429_is_throttled_with_its_retry_after(gw: ZaloGateway, zalo_server: FakeZalo) -> None:
    zalo_server.script(PHONE, "http:429")
    with pytest.raises(base.ThrottledError) as info:
        gw.send(zns())
    assert info.value.retry_after == 7.0


def test_504_after_sending_is_outcome_unknown(gw: ZaloGateway, zalo_server: FakeZalo) -> None:
    zalo_server.script(PHONE, "http:504")
    with pytest.raises(base.OutcomeUnknownError):
        gw.send(zns())


def test_connect_refused_is_unavailable_connect_failed(db: Database, zalo_server: FakeZalo) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    gw = ZaloGateway(db=db, **zalo_server.gateway_options(zns_api_url=dead))
    zalo_server.seed(gw.tokens)
    with pytest.raises(base.UnavailableError) as info:
        gw.send(zns())
    assert info.value.reason == "connect-failed"
    assert not isinstance(info.value, base.OutcomeUnknownError)


def test_read_timeout_after_sending_is_outcome_unknown(db: Database, zalo_server: FakeZalo) -> None:
    gw = ZaloGateway(db=db, read_timeout=0.3, **zalo_server.gateway_options())
    zalo_server.seed(gw.tokens)
    zalo_server.script(PHONE, "slow:2")
    with pytest.raises(base.OutcomeUnknownError) as info:
        gw.send(zns())
    assert not isinstance(info.value, (base.TransientError, base.PermanentError))
    assert len(zalo_server.sends) == 1  # Zalo did get it: never resend automatically


@pytest.mark.parametrize("outcome", ["drop_after", "drop_before"])
def test_dropped_connection_is_outcome_unknown(gw: ZaloGateway, zalo_server: FakeZalo,
                                               outcome: str) -> None:
    # from the client's side both look the same: the request left, no answer came back
    zalo_server.script(PHONE, outcome)
    with pytest.raises(base.OutcomeUnknownError):
        gw.send(zns())
    assert len(zalo_server.sends) == (1 if outcome == "drop_after" else 0)


def test_a_dropped_status_poll_is_only_unavailable(gw: ZaloGateway, zalo_server: FakeZalo) -> None:
    # reads send nothing to a phone: a lost answer there is safe to retry
    gw.send(zns())
    zalo_server.queue_reads("drop")
    with pytest.raises(base.UnavailableError) as info:
        gw.fetch_statuses([zalo_server.sends[0].msg_id])
    assert not isinstance(info.value, base.OutcomeUnknownError)
    zalo_server.queue_reads("http:503")
    with pytest.raises(base.UnavailableError):
        gw.check()


# -- configuration --------------------------------------------------------------------------

def test_configuration_errors_touch_no_network(db: Database, zalo_server: FakeZalo) -> None:
    opts = zalo_server.gateway_options()
    with pytest.raises(base.ConfigurationError, match="ZALO_APP_ID"):
        ZaloGateway(db=db, **{**opts, "app_id": None})
    with pytest.raises(base.ConfigurationError, match="ZALO_SECRET_KEY"):
        ZaloGateway(db=db, **{**opts, "secret_key": ""})
    with pytest.raises(base.ConfigurationError, match="https"):
        ZaloGateway(db=db, **{**opts, "zns_api_url": "http://business.openapi.zalo.me"})
    with pytest.raises(base.ConfigurationError):
        ZaloGateway(db=db, **{**opts, "oauth_url": "ftp://127.0.0.1"})
    with pytest.raises(base.ConfigurationError):
        ZaloGateway(db=db, **{**opts, "read_timeout": 0})
    with pytest.raises(base.ConfigurationError, match="database"):
        ZaloGateway(**opts)
    assert zalo_server.requests == []


def test_options_come_from_the_environment(db: Database) -> None:
    env = {"ZALO_APP_ID": "123", "ZALO_SECRET_KEY": "s", "OUTREACH_ZALO_ZNS_API_URL":
           "https://zns.example.vn/", "OUTREACH_ZALO_READ_TIMEOUT": "7.5",
           "OUTREACH_ZALO_ZNS_MODE": "development"}
    gw = make_gateway("zalo", db=db, environ=env)
    assert isinstance(gw, ZaloGateway)
    assert gw.app_id == "123"
    assert gw.zns_api_url == "https://zns.example.vn"
    assert gw.oa_api_url == "https://openapi.zalo.me"
    assert gw.oauth_url == "https://oauth.zaloapp.com"
    assert gw.timeout == (5.0, 7.5)
    assert gw.development is True
    assert (gw.name, gw.channel, gw.rate_unit, gw.concurrency) == ("zalo", "zalo", "messages", 16)
    assert 50 <= gw.rate_per_second <= 4000 / 60


# -- status, check, secrecy -----------------------------------------------------------------

def test_fetch_statuses_and_lookup(gw: ZaloGateway, zalo_server: FakeZalo) -> None:
    first = gw.send(zns(delivery_id=1)).provider_message_id
    second = gw.send(zns(delivery_id=2)).provider_message_id
    zalo_server.deliver(first, when_ms=1722315600000)
    updates = gw.fetch_statuses([first, second, "no-such-id"])
    assert [(u.provider_message_id, u.status) for u in updates] == [(first, "delivered"),
                                                                   (second, "sent")]
    assert updates[0].occurred_at == dt.datetime(2024, 7, 30, 5, 0, tzinfo=dt.timezone.utc)
    # an unknown delivery has no msg_id stored: Zalo cannot be asked by tracking_id
    assert gw.lookup(zns(delivery_id=3), NOON_VN, NOON_VN) is None


def test_check_reports_quota_and_sends_nothing(gw: ZaloGateway, zalo_server: FakeZalo) -> None:
    facts = gw.check()
    assert facts["gateway"] == "zalo" and facts["ok"] is True
    assert facts["daily_quota"] == "500" and facts["remaining_quota"] == "500"
    assert facts["token_version"] == 1
    assert zalo_server.sends == []
    [req] = zalo_server.requests
    assert (req.method, req.path) == ("GET", "/message/quota")
    dumped = json.dumps(facts, default=str)
    for secret in (SECRET_KEY, FIRST_ACCESS_TOKEN, FIRST_REFRESH_TOKEN):
        assert secret not in dumped


def test_no_token_or_full_number_in_logs(gw: ZaloGateway, zalo_server: FakeZalo,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    zalo_server.expire_access_tokens()
    gw.send(zns())
    zalo_server.script(PHONE, "no_zalo")
    with pytest.raises(base.InvalidAddressError) as info:
        gw.send(zns())
    text = caplog.text + str(info.value) + repr(info.value.raw)
    assert "refreshed" in caplog.text
    for secret in (SECRET_KEY, FIRST_ACCESS_TOKEN, FIRST_REFRESH_TOKEN, zalo_server.access_token,
                   zalo_server.refresh_token, "912345678"):
        assert secret not in text


def test_cli_check_prints_facts_without_secrets(db: Database, zalo_server: FakeZalo,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach.cli.gateways import gateways
    from outreach.gateways.zalo_tokens import TokenStore

    zalo_server.seed(TokenStore(db))
    for key, env in (("app_id", "ZALO_APP_ID"), ("secret_key", "ZALO_SECRET_KEY")):
        monkeypatch.setenv(env, zalo_server.gateway_options()[key])
    for env in ("OUTREACH_ZALO_OA_API_URL", "OUTREACH_ZALO_ZNS_API_URL", "OUTREACH_ZALO_OAUTH_URL"):
        monkeypatch.setenv(env, zalo_server.url)
    result = CliRunner().invoke(gateways, ["check", "zalo", "--database-url", str(db.url)])
    assert result.exit_code == 0, result.output
    assert "remaining_quota" in result.output and "500" in result.output
    for secret in (SECRET_KEY, FIRST_ACCESS_TOKEN, FIRST_REFRESH_TOKEN):
        assert secret not in result.output


def test_cli_check_reports_errors_cleanly(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach.cli.gateways import gateways

    monkeypatch.delenv("ZALO_APP_ID", raising=False)
    result = CliRunner().invoke(gateways, ["check", "zalo", "--database-url", str(db.url)])
    assert result.exit_code == 1
    assert "ZALO_APP_ID" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(gateways, ["check", "nope", "--database-url", str(db.url)])
    assert result.exit_code == 1 and "unknown gateway" in result.output

"""TwilioGateway through the real SDK over HTTP to the loopback fake: requests, errors, lookups."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import time
import unicodedata

import pytest
from tests.fakes.twilio_server import (ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN, SERVICE_SID,
                                 Fault, FakeTwilio, blackhole, closed_port, loopback_only,
                                 twilio_server)  # noqa: F401 (fixtures)

from outreach.gateways import base, make_gateway
from outreach.gateways.base import OutboundMessage, StatusUpdate
from outreach.gateways.twilio import (STATUS_MAP, TwilioGateway, classify, error_reason,
                                      error_table, map_status, parse_retry_after)

TO = "+84912345678"
TEXT = unicodedata.normalize("NFC", "Thông báo: Cần Thơ tổ chức tiêm chủng ngày 30/7.")


def msg(to: str = TO, body: str = TEXT, delivery_id: int = 42, sender: str | None = None
        ) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, campaign_id="c1", channel="sms", to=to,
                           body=body, sender=sender)


@pytest.fixture
def gw(twilio_server: FakeTwilio) -> TwilioGateway:
    gateway = TwilioGateway(**twilio_server.gateway_options(
        status_callback_base="https://hooks.example.vn/", validity_period=600, timeout=2))
    yield gateway
    gateway.close()


def creates(server: FakeTwilio) -> list[dict[str, str]]:
    return [r.params for r in server.creates()]


# -- configuration -----------------------------------------------------------------------------


class TestConfiguration:
    def test_registry_builds_it(self, twilio_server: FakeTwilio) -> None:
        gw = make_gateway("twilio", **twilio_server.gateway_options())
        assert isinstance(gw, TwilioGateway)
        assert (gw.name, gw.channel, gw.rate_per_second, gw.rate_unit, gw.concurrency) == (
            "twilio", "sms", 10.0, "segments", 16)

    @pytest.mark.parametrize("overrides, reason", [
        ({"account_sid": None}, "missing-account-sid"),
        ({"account_sid": "AC123"}, "bad-account-sid"),
        ({"auth_token": None}, "missing-credentials"),
        ({"auth_token": None, "api_key": API_KEY}, "missing-credentials"),
        ({"auth_token": None, "api_key": "AK123", "api_secret": "x"}, "bad-api-key"),
        ({"sender": None}, "missing-sender"),
        ({"sender": "SOYTECANTHO1"}, "bad-sender"),     # 12 characters
        ({"sender": "SởYTế"}, "bad-sender"),            # diacritics
        ({"sender": "12345"}, "bad-sender"),            # no letter, not E.164
        ({"messaging_service_sid": "MG1"}, "bad-messaging-service"),
        ({"validity_period": 0}, "bad-option"),
        ({"validity_period": 36001}, "bad-option"),
        ({"validity_period": "ten"}, "bad-option"),
        ({"api_url": "ftp://127.0.0.1"}, "bad-url"),
        ({"status_callback_base": "hooks.example.vn"}, "bad-url"),
        ({"price_vnd_per_usd": -1}, "bad-option"),
    ])
    def test_bad_options_raise_configuration_error_without_network(
            self, twilio_server: FakeTwilio, overrides: dict, reason: str) -> None:
        opts = twilio_server.gateway_options(**overrides)
        with pytest.raises(base.ConfigurationError) as info:
            TwilioGateway(**opts)
        assert info.value.reason == reason
        assert AUTH_TOKEN not in str(info.value)
        assert twilio_server.requests == []

    @pytest.mark.parametrize("sender", ["SYTECANTHO", "UBND Q NK", "+84901234567"])
    def test_good_senders(self, twilio_server: FakeTwilio, sender: str) -> None:
        assert TwilioGateway(**twilio_server.gateway_options(sender=sender)).sender == sender

    def test_options_from_the_environment_with_api_key(self, twilio_server: FakeTwilio) -> None:
        env = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_API_KEY": API_KEY,
               "TWILIO_API_SECRET": API_SECRET, "TWILIO_MESSAGING_SERVICE_SID": SERVICE_SID,
               "TWILIO_VALIDITY_PERIOD": "3600", "TWILIO_PRICE_VND_PER_USD": "24000",
               "OUTREACH_PUBLIC_BASE_URL": "https://hooks.example.vn",
               "OUTREACH_TWILIO_API_URL": twilio_server.base_url}
        gw = TwilioGateway(environ=env)
        assert (gw.auth_kind, gw.validity_period, gw.price_vnd_per_usd) == ("api-key", 3600, 24000)
        result = gw.send(msg())
        assert result.provider_status == "accepted"  # a Messaging Service queues as "accepted"
        assert result.segments is None               # num_segments is "0" until a sender is chosen
        (req,) = twilio_server.creates()
        assert req.user == API_KEY
        assert req.params["MessagingServiceSid"] == SERVICE_SID
        assert "From" not in req.params
        assert req.params["ValidityPeriod"] == "3600"
        assert API_SECRET not in repr(gw) and API_SECRET not in json.dumps(gw.check())

    def test_repr_hides_secret_and_full_account(self, gw: TwilioGateway) -> None:
        text = repr(gw)
        assert AUTH_TOKEN not in text and ACCOUNT_SID not in text
        assert "SYTECANTHO" in text


# -- sending -----------------------------------------------------------------------------------


class TestSend:
    def test_create_params_are_exactly_what_we_mean(self, gw: TwilioGateway,
                                                    twilio_server: FakeTwilio) -> None:
        result = gw.send(msg())
        (req,) = twilio_server.creates()
        assert req.method == "POST"
        assert req.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        assert req.user == ACCOUNT_SID
        assert req.params == {
            "To": TO, "From": "SYTECANTHO", "Body": TEXT, "ValidityPeriod": "600",
            "StatusCallback": "https://hooks.example.vn/webhooks/twilio/status/42"}
        assert req.params["Body"].encode("utf-8") == TEXT.encode("utf-8")
        (stored,) = twilio_server.messages
        assert result.provider_message_id == stored["sid"]
        assert result.provider_message_id.startswith("SM") and len(stored["sid"]) == 34
        assert (result.status, result.provider_status, result.segments) == ("sent", "queued", 1)
        assert result.price_vnd is None  # Twilio returns no price at creation

    def test_message_sender_overrides_default_and_service_is_kept(
            self, twilio_server: FakeTwilio) -> None:
        gw = TwilioGateway(**twilio_server.gateway_options(messaging_service_sid=SERVICE_SID))
        gw.send(msg(sender="UBNDNINHKIEU"[:11]))
        (params,) = creates(twilio_server)
        assert params["From"] == "UBNDNINHKIE"
        assert params["MessagingServiceSid"] == SERVICE_SID
        assert "StatusCallback" not in params and "ValidityPeriod" not in params

    def test_nfd_text_is_sent_as_nfc(self, gw: TwilioGateway, twilio_server: FakeTwilio) -> None:
        gw.send(msg(body=unicodedata.normalize("NFD", TEXT)))
        assert creates(twilio_server)[0]["Body"] == TEXT

    def test_segments_and_price_in_vnd(self, twilio_server: FakeTwilio) -> None:
        twilio_server.price = "-0.0450"
        gw = TwilioGateway(**twilio_server.gateway_options(price_vnd_per_usd=24000))
        long_text = TEXT * 2  # UCS-2, 96 units -> 2 segments
        result = gw.send(msg(body=long_text))
        assert result.segments == 2
        assert result.price_vnd == pytest.approx(0.045 * 24000)
        twilio_server.price_unit = "EUR"
        assert gw.send(msg(delivery_id=43)).price_vnd is None  # only USD is converted

    def test_not_e164_is_refused_locally(self, gw: TwilioGateway,
                                         twilio_server: FakeTwilio) -> None:
        with pytest.raises(base.InvalidAddressError) as info:
            gw.send(msg(to="0912345678"))
        assert info.value.reason == "invalid-number"
        assert twilio_server.requests == []


# -- errors ------------------------------------------------------------------------------------


ERROR_CASES = [
    # (code, http status) -> (class, reason)
    ((21211, 400), base.InvalidAddressError, "invalid-number"),
    ((21612, 400), base.InvalidAddressError, "unroutable"),
    ((21614, 400), base.InvalidAddressError, "landline"),
    ((21635, 400), base.InvalidAddressError, "landline"),
    ((30005, 400), base.InvalidAddressError, "unknown-handset"),
    ((30006, 400), base.InvalidAddressError, "landline"),
    ((21610, 400), base.OptedOutError, "opted-out"),
    ((30003, 400), base.PermanentError, "unreachable"),
    ((30004, 400), base.PermanentError, "blocked"),
    ((30007, 400), base.PermanentError, "carrier-filtered"),
    ((21408, 400), base.StopRunError, "region-not-enabled"),
    ((21212, 400), base.StopRunError, "invalid-sender"),
    ((20003, 401), base.AuthenticationError, "authentication"),
    ((20005, 401), base.AuthenticationError, "account-inactive"),
    ((None, 403), base.AuthenticationError, "forbidden"),
    ((20429, 429), base.ThrottledError, "rate-limited"),
    ((30001, 400), base.ThrottledError, "queue-overflow"),
    ((20500, 500), base.UnavailableError, "provider-error"),
    ((None, 502), base.UnavailableError, "unavailable"),
    ((20503, 503), base.UnavailableError, "unavailable"),
    ((99999, 400), base.PermanentError, "rejected"),
]


class TestErrors:
    @pytest.mark.parametrize("answer, cls, reason", ERROR_CASES,
                             ids=[f"{c}-{s}" for (c, s), _, _ in ERROR_CASES])
    def test_error_bodies_are_mapped_by_the_table(self, gw: TwilioGateway,
                                                  twilio_server: FakeTwilio, answer: tuple,
                                                  cls: type, reason: str) -> None:
        code, status = answer
        twilio_server.script(TO, Fault.error(code, status=status,
                                             message=f"Twilio says no to {TO}"))
        with pytest.raises(base.GatewayError) as info:
            gw.send(msg())
        err = info.value
        assert type(err) is cls
        assert err.reason == reason
        assert err.provider_code == str(code if code is not None else status)
        assert twilio_server.messages == []
        # Twilio quotes the number; neither our error nor the chained SDK error repeats it.
        for text in (str(err), repr(err), err.detail, str(err.__cause__), repr(err.__cause__)):
            assert TO not in text and AUTH_TOKEN not in text
        assert "091****678" in err.detail
        assert err.__cause__ is not None

    def test_429_retry_after_seconds_parsed(self, gw: TwilioGateway,
                                            twilio_server: FakeTwilio) -> None:
        twilio_server.script(TO, Fault.error(20429, status=429, retry_after=7), "accept")
        with pytest.raises(base.ThrottledError) as info:
            gw.send(msg())
        assert info.value.retry_after == 7.0
        assert gw.send(msg()).provider_message_id
        assert len(twilio_server.creates()) == 2 and len(twilio_server.messages) == 1

    def test_429_retry_after_http_date_and_absent(self, gw: TwilioGateway,
                                                  twilio_server: FakeTwilio) -> None:
        later = email.utils.format_datetime(
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30), usegmt=True)
        twilio_server.script(TO, Fault.error(20429, status=429, retry_after=later),
                             Fault.error(20429, status=429))
        with pytest.raises(base.ThrottledError) as info:
            gw.send(msg())
        assert 25 <= info.value.retry_after <= 30
        with pytest.raises(base.ThrottledError) as info:
            gw.send(msg())
        assert info.value.retry_after is None

    def test_503_retry_after_is_kept(self, gw: TwilioGateway, twilio_server: FakeTwilio) -> None:
        twilio_server.script(TO, Fault.error(20503, status=503, retry_after=3))
        with pytest.raises(base.UnavailableError) as info:
            gw.send(msg())
        assert info.value.retry_after == 3.0

    def test_slow_reply_beyond_timeout_is_outcome_unknown_and_was_accepted(
            self, twilio_server: FakeTwilio) -> None:
        gw = TwilioGateway(**twilio_server.gateway_options(timeout=0.3))
        twilio_server.script(TO, "slow:1.5")
        started = time.monotonic()
        with pytest.raises(base.OutcomeUnknownError) as info:
            gw.send(msg())
        assert info.value.reason == "read-timeout"
        assert time.monotonic() - started < 1.4
        assert [m["to"] for m in twilio_server.messages] == [TO]

    def test_slow_reply_within_timeout_is_a_success(self, gw: TwilioGateway,
                                                    twilio_server: FakeTwilio) -> None:
        twilio_server.script(TO, "slow:0.2")
        assert gw.send(msg()).provider_message_id == twilio_server.messages[0]["sid"]

    def test_dropped_after_acceptance_is_outcome_unknown(self, gw: TwilioGateway,
                                                         twilio_server: FakeTwilio) -> None:
        twilio_server.script(TO, "drop_after")
        with pytest.raises(base.OutcomeUnknownError) as info:
            gw.send(msg())
        assert info.value.reason == "connection-lost"
        assert len(twilio_server.messages) == 1
        now = dt.datetime.now(dt.timezone.utc)
        found = gw.lookup(msg(), now - dt.timedelta(minutes=1), now)
        assert isinstance(found, StatusUpdate)
        assert found.provider_message_id == twilio_server.messages[0]["sid"]
        assert found.delivery_id == 42

    def test_dropped_before_acceptance_is_unknown_too_and_lookup_says_never_received(
            self, gw: TwilioGateway, twilio_server: FakeTwilio) -> None:
        """Once the request bytes are written, a dropped connection looks the same to the client
        whether or not the server read them: it must not be called "not sent" (that would risk a
        double send). Reconciliation settles it: the listing has no such message -> False."""
        twilio_server.script(TO, "drop_before")
        with pytest.raises(base.OutcomeUnknownError):
            gw.send(msg())
        assert twilio_server.messages == []
        now = dt.datetime.now(dt.timezone.utc)
        assert gw.lookup(msg(), now - dt.timedelta(minutes=1), now) is False

    def test_connection_refused_is_unavailable_not_sent(self, loopback_only: None) -> None:
        gw = TwilioGateway(**FakeTwilio().gateway_options(
            api_url=f"http://127.0.0.1:{closed_port()}"))
        with pytest.raises(base.UnavailableError) as info:
            gw.send(msg())
        assert info.value.reason == "connect-failed"
        assert not isinstance(info.value, base.OutcomeUnknownError)

    def test_connect_timeout_is_unavailable_not_sent(self, loopback_only: None) -> None:
        with blackhole() as port:
            gw = TwilioGateway(**FakeTwilio().gateway_options(
                api_url=f"http://127.0.0.1:{port}", timeout=0.3))
            with pytest.raises(base.UnavailableError) as info:
                gw.send(msg())
        assert info.value.reason == "connect-failed"

    def test_unreadable_success_is_outcome_unknown(self, gw: TwilioGateway,
                                                   twilio_server: FakeTwilio) -> None:
        twilio_server.script(TO, "garbage")
        with pytest.raises(base.OutcomeUnknownError) as info:
            gw.send(msg())
        assert info.value.reason == "bad-answer"
        assert len(twilio_server.messages) == 1

    def test_rfc9457_error_body_is_mapped_too(self, gw: TwilioGateway,
                                              twilio_server: FakeTwilio) -> None:
        twilio_server.script(TO, Fault.problem(21610))
        with pytest.raises(base.OptedOutError) as info:
            gw.send(msg())
        assert info.value.provider_code == "21610"
        assert TO not in str(info.value.__cause__) + repr(info.value.__cause__)

    def test_wrong_credentials_are_an_authentication_error(self, twilio_server: FakeTwilio) -> None:
        gw = TwilioGateway(**twilio_server.gateway_options(auth_token="wrong-token-123"))
        with pytest.raises(base.AuthenticationError) as info:
            gw.send(msg())
        assert info.value.provider_code == "20003"
        assert "wrong-token-123" not in str(info.value) + repr(info.value.__cause__)
        assert twilio_server.messages == []

    def test_logs_carry_no_number_and_no_secret(self, gw: TwilioGateway, twilio_server: FakeTwilio,
                                                caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        twilio_server.script(TO, "invalid")
        with pytest.raises(base.InvalidAddressError):
            gw.send(msg())
        gw.send(msg())
        now = dt.datetime.now(dt.timezone.utc)
        gw.lookup(msg(), now - dt.timedelta(minutes=1), now)
        twilio_server.queue("server_error", route="list")
        assert gw.lookup(msg(), now - dt.timedelta(minutes=1), now) is None
        assert caplog.records  # the SDK and we did log
        for record in caplog.records:
            text = record.getMessage()
            assert TO not in text and "%2B84912345678" not in text and AUTH_TOKEN not in text


# -- lookup, statuses, check -------------------------------------------------------------------


class TestLookup:
    def window(self) -> tuple[dt.datetime, dt.datetime]:
        now = dt.datetime.now(dt.timezone.utc)
        return now - dt.timedelta(minutes=2), now + dt.timedelta(minutes=2)

    def test_lists_by_number_and_matches_the_body(self, gw: TwilioGateway,
                                                  twilio_server: FakeTwilio) -> None:
        other = twilio_server.add_message(TO, "Tin khác")
        sent = gw.send(msg())
        twilio_server.add_message("+84912000000", TEXT)
        twilio_server.set_status(sent.provider_message_id, "delivered")
        found = gw.lookup(msg(), *self.window())
        assert found == StatusUpdate(
            status="delivered", provider_message_id=sent.provider_message_id, delivery_id=42,
            provider_status="delivered", error_code=None, error_reason=None,
            occurred_at=found.occurred_at, raw=found.raw)
        assert found.provider_message_id != other
        (listing,) = [r for r in twilio_server.requests if r.route == "list"]
        assert listing.params["To"] == TO

    def test_outside_the_window_is_not_a_match(self, gw: TwilioGateway,
                                               twilio_server: FakeTwilio) -> None:
        twilio_server.add_message(TO, TEXT, created=dt.datetime.now(dt.timezone.utc)
                                  - dt.timedelta(hours=3))
        assert gw.lookup(msg(), *self.window()) is False

    def test_two_identical_messages_are_ambiguous(self, gw: TwilioGateway,
                                                  twilio_server: FakeTwilio) -> None:
        gw.send(msg())
        gw.send(msg())
        assert gw.lookup(msg(), *self.window()) is None

    def test_listing_error_means_cannot_tell(self, gw: TwilioGateway,
                                             twilio_server: FakeTwilio) -> None:
        twilio_server.queue("unavailable", route="list")
        assert gw.lookup(msg(), *self.window()) is None
        assert twilio_server.unused() == []

    def test_long_listings_are_paged_then_give_up(self, gw: TwilioGateway,
                                                  twilio_server: FakeTwilio) -> None:
        from outreach.gateways import twilio as module

        for i in range(5):
            twilio_server.add_message(TO, f"tin {i}")
        gw.send(msg())
        old = module.LOOKUP_LIMIT
        try:
            module.LOOKUP_LIMIT = 3
            assert gw.lookup(msg(), *self.window()) is None  # more than the limit: not certain
            module.LOOKUP_LIMIT = 10
            assert isinstance(gw.lookup(msg(), *self.window()), StatusUpdate)
        finally:
            module.LOOKUP_LIMIT = old


class TestFetchStatuses:
    def test_statuses_are_mapped_with_error_codes(self, gw: TwilioGateway,
                                                  twilio_server: FakeTwilio) -> None:
        cases = [("queued", None, "sent"), ("sending", None, "sent"), ("sent", None, "sent"),
                 ("delivered", None, "delivered"), ("read", None, "delivered"),
                 ("undelivered", 30003, "undelivered"), ("failed", 30007, "failed"),
                 ("canceled", None, "failed")]
        sids = []
        for i, (status, code, _) in enumerate(cases):
            sid = gw.send(msg(to=f"+8491234{5000 + i}")).provider_message_id
            twilio_server.set_status(sid, status, error_code=code)
            sids.append(sid)
        updates = gw.fetch_statuses(sids + ["SM" + "0" * 32])  # the unknown id is left out
        assert [(u.provider_message_id, u.provider_status, u.status, u.error_code)
                for u in updates] == [(sid, st, ours, None if code is None else str(code))
                                      for sid, (st, code, ours) in zip(sids, cases)]
        assert [u.error_reason for u in updates][5:7] == ["unreachable", "carrier-filtered"]

    def test_429_is_waited_out_once(self, twilio_server: FakeTwilio) -> None:
        slept: list[float] = []
        gw = TwilioGateway(**twilio_server.gateway_options(), sleep=slept.append)
        sid = gw.send(msg()).provider_message_id
        twilio_server.queue(Fault.error(20429, status=429, retry_after=4), route="fetch")
        (update,) = gw.fetch_statuses([sid])
        assert update.provider_message_id == sid and slept == [4.0]

    def test_authentication_error_is_raised(self, gw: TwilioGateway,
                                            twilio_server: FakeTwilio) -> None:
        sid = gw.send(msg()).provider_message_id
        twilio_server.queue("auth", route="fetch")
        with pytest.raises(base.AuthenticationError):
            gw.fetch_statuses([sid])


class TestCheck:
    def test_good_credentials(self, gw: TwilioGateway, twilio_server: FakeTwilio) -> None:
        facts = gw.check()
        assert facts == {
            "gateway": "twilio", "ok": True, "account": "AC…cdef",
            "account_name": "Sở Y tế Cần Thơ (thử nghiệm)", "account_status": "active",
            "auth": "auth-token", "sender": "SYTECANTHO", "messaging_service_sid": None,
            "api_url": twilio_server.base_url, "status_callback_base": "https://hooks.example.vn",
            "validity_period": 600}
        # The Account resource carries the auth token: check() must not pass it on.
        assert AUTH_TOKEN not in json.dumps(facts, ensure_ascii=False)
        assert [r.route for r in twilio_server.requests] == ["account"]
        assert twilio_server.messages == []

    def test_bad_credentials(self, twilio_server: FakeTwilio) -> None:
        gw = TwilioGateway(**twilio_server.gateway_options(auth_token="not-the-token-42"))
        with pytest.raises(base.AuthenticationError) as info:
            gw.check()
        for text in (str(info.value), repr(info.value), str(info.value.__cause__), repr(gw)):
            assert "not-the-token-42" not in text

    def test_suspended_account(self, twilio_server: FakeTwilio) -> None:
        twilio_server.account_status = "suspended"
        with pytest.raises(base.AuthenticationError) as info:
            TwilioGateway(**twilio_server.gateway_options()).check()
        assert info.value.reason == "account-inactive"

    def test_unreachable(self, loopback_only: None) -> None:
        gw = TwilioGateway(**FakeTwilio().gateway_options(
            api_url=f"http://127.0.0.1:{closed_port()}"))
        with pytest.raises(base.UnavailableError):
            gw.check()


# -- the table and helpers ---------------------------------------------------------------------


def test_error_table_is_complete_and_sourced() -> None:
    table = error_table()
    for code, entry in table["codes"].items():
        assert issubclass(getattr(base, entry["class"]), base.GatewayError)
        assert entry["reason"] and " " not in entry["reason"]
        assert f"https://www.twilio.com/docs/api/errors/{code}" in entry["description"]
    for required in ("20003", "20005", "20429", "21211", "21408", "21610", "21612", "21614",
                     "21635", "30001", "30003", "30004", "30005", "30006", "30007"):
        assert required in table["codes"]
    assert classify(None, 418)[0] is base.PermanentError
    assert classify(None, 599)[0] is base.UnavailableError
    assert error_reason("30007") == "carrier-filtered"
    assert error_reason("") is None and error_reason("12345") is None


def test_status_map() -> None:
    assert {s: map_status(s) for s in ("queued", "accepted", "scheduled", "sending", "sent",
                                       "delivered", "read", "undelivered", "failed",
                                       "canceled", "received")} == {
        "queued": "sent", "accepted": "sent", "scheduled": "sent", "sending": "sent",
        "sent": "sent", "delivered": "delivered", "read": "delivered",
        "undelivered": "undelivered", "failed": "failed", "canceled": "failed",
        "received": None}
    assert map_status("DELIVERED") == "delivered" and map_status(None) is None
    assert set(STATUS_MAP.values()) <= {"sent", "delivered", "undelivered", "failed", None}


def test_parse_retry_after() -> None:
    now = dt.datetime(2024, 7, 30, 8, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Tue, 30 Jul 2024 08:00:09 GMT", now=now) == 9.0
    assert parse_retry_after("Tue, 30 Jul 2024 07:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None

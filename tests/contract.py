"""The gateway contract as tests: one suite every gateway (mock, Twilio, Zalo...) must pass."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from outreach.gateways import base
from outreach.gateways.base import Gateway, OutboundMessage, SendResult, StatusUpdate

#: The shared outcome vocabulary a ``make(script)`` must understand.
OUTCOMES = ("accept", "invalid", "opted_out", "throttled", "unavailable", "auth", "lost")

#: Vietnamese text in NFC (precomposed ờ, ế, ạ...): the provider must record these exact bytes.
BODY = unicodedata.normalize(
    "NFC", "Thông báo của UBND quận Ninh Kiều: tiêm chủng mở rộng ngày 30/7 tại trạm y tế "
           "phường. Đề nghị phụ huynh đưa trẻ đến đúng giờ.")

NUMBER = {
    "accept": "+84912345001", "invalid": "+84912345002", "opted_out": "+84912345003",
    "throttled": "+84912345004", "unavailable": "+84912345005", "auth": "+84912345006",
    "lost": "+84912345007", "never": "+84912345008",
}


@dataclass(frozen=True)
class ProviderRecord:
    """A message the provider accepted, as the provider (or its fake) recorded it.

    ``provider_message_id`` is None when the observer cannot see the provider's id.
    """

    to: str
    body: str
    provider_message_id: str | None = None


Script = dict[str, Sequence[str]]
Observer = Callable[[], list[ProviderRecord]]
Make = Callable[[Script], tuple[Gateway, Observer]]


class GatewayContract:
    """Behaviour every gateway must show. Not collected by itself (no ``Test`` prefix).

    To run it against a gateway, subclass it in a test module (``from tests.contract import
    GatewayContract``; ``class TestXContract(GatewayContract)``) and provide:

    - a pytest fixture named ``make`` returning a callable ``make(script) -> (gateway,
      observer)``. ``script`` maps an E.164 number to outcome names from :data:`OUTCOMES`,
      consumed one per send attempt to that number (then ``accept``):

      ============  ======================================================================
      accept        the provider accepts the message
      invalid       the provider says the number is invalid (InvalidAddressError)
      opted_out     the recipient unsubscribed (OptedOutError)
      throttled     provider rate limit (ThrottledError), with a Retry-After if it has one
      unavailable   provider down before accepting (TransientError); nothing recorded
      auth          credentials refused (AuthenticationError)
      lost          the provider RECORDS the message, then the answer is lost
                    (OutcomeUnknownError)
      ============  ======================================================================

      ``observer()`` returns the :class:`ProviderRecord` list of messages the provider
      actually accepted, in order (from the fake server, or the mock's outbox);
    - ``secrets`` (class attribute): strings that must never appear in ``check()``, ``repr``,
      or any exception text (auth token, app secret...);
    - ``retry_after`` (class attribute): the seconds ``ThrottledError.retry_after`` must carry
      for ``throttled``, or None if the provider sends none;
    - ``lookup_supported`` (class attribute): False if ``lookup`` always returns None;
    - ``unsupported`` (class attribute): outcome names the provider has no equivalent for
      (those tests are skipped; say why in the subclass).

    Numbers: :data:`NUMBER` (one per outcome) are Vietnamese mobile numbers in E.164; a
    gateway converts them to its provider's form (``84...`` for Zalo) itself.

    Examples: ``tests/test_contract_mock.py`` (in memory) and ``tests/test_contract_twilio.py``
    (the real SDK against ``tests/fakes/twilio_server.py``).
    """

    secrets: ClassVar[Sequence[str]] = ()
    retry_after: ClassVar[float | None] = None
    lookup_supported: ClassVar[bool] = True
    unsupported: ClassVar[frozenset[str]] = frozenset()

    @pytest.fixture
    def make(self) -> Make:  # pragma: no cover - provided by subclasses
        raise NotImplementedError("a GatewayContract subclass must provide the `make` fixture")

    # -- helpers -----------------------------------------------------------------------------

    def message(self, gateway: Gateway, outcome: str, delivery_id: int = 1,
                body: str = BODY) -> OutboundMessage:
        return OutboundMessage(delivery_id=delivery_id, campaign_id="contract",
                               channel=gateway.channel, to=NUMBER[outcome], body=body,
                               segments=2)

    def needs(self, *outcomes: str) -> None:
        missing = set(outcomes) & set(self.unsupported)
        if missing:
            pytest.skip(f"provider has no equivalent of {sorted(missing)}")

    def assert_no_secret(self, *texts: Any) -> None:
        for value in texts:
            dumped = value if isinstance(value, str) else json.dumps(value, default=str,
                                                                     ensure_ascii=False)
            for secret in self.secrets:
                assert secret not in dumped, "a secret leaked"

    def window(self) -> tuple[dt.datetime, dt.datetime]:
        now = dt.datetime.now(dt.timezone.utc)
        return now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=1)

    def failing_send(self, make: Make, outcome: str, error: type[base.GatewayError]
                     ) -> tuple[base.GatewayError, list[ProviderRecord], Gateway]:
        self.needs(outcome)
        gw, observer = make({NUMBER[outcome]: [outcome]})
        with pytest.raises(error) as info:
            gw.send(self.message(gw, outcome))
        self.assert_no_secret(str(info.value), repr(info.value), info.value.detail)
        return info.value, observer(), gw

    # -- the contract ------------------------------------------------------------------------

    def test_class_facts(self, make: Make) -> None:
        gw, _ = make({})
        assert gw.name and isinstance(gw.name, str)
        assert gw.channel in ("sms", "zalo")
        assert gw.rate_unit in ("messages", "segments")
        assert gw.rate_per_second >= 0 and gw.concurrency >= 1

    def test_accept_returns_provider_id_and_provider_records_exact_text(self, make: Make) -> None:
        self.needs("accept")
        gw, observer = make({})
        result = gw.send(self.message(gw, "accept"))
        assert isinstance(result, SendResult)
        assert result.provider_message_id
        assert result.status in ("sent", "delivered")
        records = observer()
        assert len(records) == 1
        assert records[0].to == NUMBER["accept"]
        assert records[0].body.encode("utf-8") == BODY.encode("utf-8")
        assert unicodedata.is_normalized("NFC", records[0].body)
        if records[0].provider_message_id is not None:
            assert records[0].provider_message_id == result.provider_message_id

    def test_invalid_number_is_invalid_address_with_provider_code(self, make: Make) -> None:
        err, records, _ = self.failing_send(make, "invalid", base.InvalidAddressError)
        assert isinstance(err, base.PermanentError)
        assert err.provider_code
        assert records == []

    def test_opted_out(self, make: Make) -> None:
        err, records, _ = self.failing_send(make, "opted_out", base.OptedOutError)
        assert err.provider_code
        assert records == []

    def test_throttled_carries_retry_after_and_a_retry_is_accepted_once(self, make: Make) -> None:
        self.needs("throttled")
        gw, observer = make({NUMBER["throttled"]: ["throttled", "accept"]})
        msg = self.message(gw, "throttled")
        with pytest.raises(base.ThrottledError) as info:
            gw.send(msg)
        assert isinstance(info.value, base.TransientError)
        assert info.value.retry_after == self.retry_after
        assert all(r.to != msg.to for r in observer())
        gw.send(msg)
        assert [r.to for r in observer()] == [msg.to]

    def test_unavailable_is_transient_and_nothing_recorded(self, make: Make) -> None:
        err, records, _ = self.failing_send(make, "unavailable", base.TransientError)
        assert not isinstance(err, base.OutcomeUnknownError)
        assert records == []

    def test_auth_stops_the_run(self, make: Make) -> None:
        err, records, _ = self.failing_send(make, "auth", base.AuthenticationError)
        assert isinstance(err, base.StopRunError)
        assert records == []

    def test_lost_answer_is_outcome_unknown_and_the_provider_has_it(self, make: Make) -> None:
        err, records, _ = self.failing_send(make, "lost", base.OutcomeUnknownError)
        assert not isinstance(err, (base.TransientError, base.PermanentError))
        assert [(r.to, r.body) for r in records] == [(NUMBER["lost"], BODY)]

    def test_lookup_finds_a_lost_message(self, make: Make) -> None:
        self.needs("lost")
        gw, observer = make({NUMBER["lost"]: ["lost"]})
        msg = self.message(gw, "lost", delivery_id=7)
        with pytest.raises(base.OutcomeUnknownError):
            gw.send(msg)
        found = gw.lookup(msg, *self.window())
        if not self.lookup_supported:
            assert found is None
            return
        assert isinstance(found, StatusUpdate)
        assert found.status in ("sent", "delivered")
        assert found.provider_message_id
        recorded = observer()[0].provider_message_id
        if recorded is not None:
            assert found.provider_message_id == recorded

    def test_lookup_of_a_message_never_received_is_false(self, make: Make) -> None:
        gw, _ = make({})
        gw.send(self.message(gw, "accept", delivery_id=1))  # another message exists
        found = gw.lookup(self.message(gw, "never", delivery_id=2), *self.window())
        assert found is (False if self.lookup_supported else None)

    def test_check_returns_facts_without_secrets(self, make: Make) -> None:
        gw, _ = make({})
        facts = gw.check()
        assert isinstance(facts, dict)
        assert facts.get("gateway") == gw.name
        json.dumps(facts, default=str)
        self.assert_no_secret(facts, repr(gw), str(gw))

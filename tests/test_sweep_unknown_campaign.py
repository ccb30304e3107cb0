"""A campaign id that is not in the database is an error naming the known campaigns in every
command that takes one (never an empty table, a silent zero or a provider's configuration
error), and `deliveries sync` refuses a gateway that has nobody to ask."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from outreach.cli import main
from outreach.gateways import REGISTRY
from outreach.gateways.base import StatusUpdate
from outreach.gateways.mock import MockGateway
from outreach.ledger.db import Database
from outreach.ledger.models import AuditEntry, Delivery
from tests.web_helpers import open_campaign

VI_KNOWN = "lỗi: không có chiến dịch nope trong cơ sở dữ liệu này; các chiến dịch: co-that"
EN_KNOWN = "error: no campaign nope in this database; campaigns: co-that"


def run(url: str, *args: str, lang: str = "en") -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--lang", lang, "--database-url", url, *args])
    return r.exit_code, r.stdout, r.stderr


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    toml = open_campaign(tmp_path, "co-that", "mock", n=3)
    code, _out, err = run(url, "campaign", "launch", str(toml), "--no-progress")
    assert code == 0, err
    return url


COMMANDS = [("deliveries", "sync", "nope"), ("deliveries", "sync", "nope", "--gateway", "mock"),
            ("deliveries", "sync", "nope", "--gateway", "outbox"),
            ("inbox", "list", "--campaign", "nope"),
            ("inbox", "list", "--campaign", "nope", "--all"),
            ("worker", "--campaign", "nope", "--exit-when-done"), ("report", "nope"),
            ("report", "nope", "--format", "json"), ("runs", "list", "nope"),
            ("deliveries", "list", "nope")]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_an_unknown_campaign_is_an_error_naming_the_known_ones(url: str, args: tuple[str, ...]
                                                              ) -> None:
    code, out, err = run(url, *args, lang="vi")
    assert (code, out) == (1, "") and flat(err) == VI_KNOWN
    code, out, err = run(url, *args)
    assert (code, out) == (1, "") and flat(err) == EN_KNOWN
    assert "TWILIO" not in err and "Traceback" not in err


def test_the_official_report_of_an_unknown_campaign_writes_nothing(url: str,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "bc.docx"
    code, _out, err = run(url, "report", "nope", "--official", "--out", str(out), lang="vi")
    assert code == 1 and flat(err) == VI_KNOWN and not out.exists()


def test_an_inbox_export_of_an_unknown_campaign_writes_and_audits_nothing(url: str,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    code, stdout, err = run(url, "inbox", "export", str(out), "--campaign", "nope", lang="vi")
    assert (code, stdout) == (1, "") and flat(err) == VI_KNOWN
    assert not out.exists()
    db = Database(url)
    with db.engine.connect() as conn:
        assert conn.execute(select(AuditEntry.id).where(AuditEntry.action == "export")).all() == []
    db.dispose()
    # the campaign that is there still exports (no reply yet: a header only)
    code, stdout, err = run(url, "inbox", "export", str(out), "--campaign", "co-that")
    assert code == 0 and "0 replies written to" in flat(stdout)


def test_no_campaign_at_all_says_none_was_launched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    code, _out, err = run(url, "report", "nope")
    assert code == 1 and flat(err).endswith(
        "error: no campaign nope in this database: no campaign was launched yet (`outreach "
        "campaign launch FILE.toml`)")


@pytest.mark.parametrize("gateway", ["outbox", "mock"])
def test_sync_through_a_gateway_with_nobody_to_ask_is_one_clear_line(url: str,
                                                                     gateway: str) -> None:
    code, out, err = run(url, "deliveries", "sync", "co-that", "--gateway", gateway, lang="vi")
    assert (code, out) == (1, "")
    assert flat(err) == (f"lỗi: cổng gửi {gateway} không có nhà cung cấp nào để hỏi trạng thái "
                         "tin nhắn: không có gì để đồng bộ (các cổng gửi đồng bộ được: esms, "
                         "esms-sandbox, smpp, twilio, zalo)")
    code, out, err = run(url, "deliveries", "sync", "co-that", "--gateway", gateway)
    assert flat(err) == (f"error: the {gateway} gateway has no provider to ask for delivery "
                         "statuses: nothing to sync (gateways that can be synced: esms, "
                         "esms-sandbox, smpp, twilio, zalo)")


class PollingMock(MockGateway):
    """The mock, able to answer a status poll: every message delivered."""

    def fetch_statuses(self, provider_message_ids: list[str]) -> list[StatusUpdate]:
        return [StatusUpdate(status="delivered", provider_message_id=i)
                for i in provider_message_ids]


def test_sync_prints_its_counts_in_words(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "polling-mock", f"{__name__}:PollingMock")
    code, out, err = run(url, "deliveries", "sync", "co-that", "--gateway", "polling-mock",
                         lang="vi")
    assert code == 0, err
    assert flat(out) == ("đã hỏi 3, có trạng thái 3, không được trả lời 0, không đổi 0, "
                         "đã cập nhật 3, đã đến 3, không đến được 0, lỗi 0, lô 1")
    db = Database(url)
    with db.engine.connect() as conn:
        assert set(conn.execute(select(Delivery.status)).scalars()) == {"delivered"}
    db.dispose()
    code, out, err = run(url, "deliveries", "sync", "co-that", "--gateway", "polling-mock")
    assert flat(out) == ("checked 0, fetched 0, missing 0, unchanged 0, applied 0, "
                         "delivered 0, undelivered 0, failed 0, batches 0")

"""What an operator reads on the console of the webhook server in Vietnamese: the start line,
the log lines of the Twilio, eSMS and Zalo routes (phone numbers masked), the log levels; and
the same lines in English with ``--lang en``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from twilio.request_validator import RequestValidator

from outreach import i18n
from outreach.cli import LOG_FORMAT, LogFormatter, main
from outreach.ledger.db import Database
from outreach.receipts.receiver import create_app
from tests.fakes.twilio_server import AUTH_TOKEN
from tests.helpers import english_words, fresh_db
from tests.test_zalo_webhook import add_delivery, client, db, event, post  # noqa: F401

PUBLIC = "https://hooks.example.vn"
SENDER = "+84912000123"


@pytest.fixture
def vi() -> Any:
    i18n.set_language("vi")
    yield
    i18n.set_language("en")


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("outreach")]


def _twilio_inbound(tmp_path: Path, body: str, *, token: str = AUTH_TOKEN) -> Any:
    db_ = fresh_db(tmp_path, "in.db")
    app = create_app(db_, twilio_auth_token=AUTH_TOKEN, public_base_url=PUBLIC,
                     reply_gateways={"twilio": None})
    params = {"MessageSid": "SM" + "a" * 32, "From": SENDER, "To": "+12025550100",
              "Body": body}
    sig = RequestValidator(token).compute_signature(PUBLIC + "/twilio/inbound", params)
    resp = app.test_client().post("/twilio/inbound", data=params,
                                  headers={"X-Twilio-Signature": sig})
    app.extensions["outreach_confirmations"].flush()
    db_.dispose()
    return resp


def test_twilio_reply_lines_in_vietnamese_with_the_number_masked(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, vi: None) -> None:
    caplog.set_level(logging.INFO, logger="outreach")
    assert _twilio_inbound(tmp_path, "TC").status_code == 200
    lines = _lines(caplog)
    assert "tin trả lời qua twilio từ 091****123: từ chối nhận tin (từ khóa TC)" in lines, lines
    assert "không có cổng gửi twilio để xác nhận tin trả lời #1; để chờ" in lines, lines
    assert all(SENDER not in line and "912000123" not in line for line in lines)
    assert all(english_words(line) == [] for line in lines), lines


def test_twilio_forged_reply_line(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  vi: None) -> None:
    caplog.set_level(logging.INFO, logger="outreach")
    assert _twilio_inbound(tmp_path, "TC", token="not-the-token").status_code == 403
    assert _lines(caplog) == ["đã từ chối một tin trả lời Twilio có chữ ký sai"]


def test_twilio_reply_line_in_english(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="outreach")
    assert _twilio_inbound(tmp_path, "TC").status_code == 200
    lines = _lines(caplog)
    assert "reply through twilio from 091****123: optout (keyword TC)" in lines, lines


def test_zalo_webhook_lines_in_vietnamese(client: Any, db: Database,  # noqa: F811
                                          caplog: pytest.LogCaptureFixture, vi: None) -> None:
    caplog.set_level(logging.INFO, logger="outreach")
    add_delivery(db)
    assert post(client, event()).status_code == 200
    assert post(client, event()).status_code == 200  # Zalo retries: the same signed body
    assert post(client, event(), signature="mac=0123").status_code == 403
    lines = _lines(caplog)
    assert lines[0] == ("webhook Zalo user_received_message: đã ghi 1, để chờ 0, từ chối 0")
    assert lines[1] == "webhook Zalo user_received_message: sự kiện gửi lại, đã từ chối"
    assert lines[2].startswith("webhook Zalo: chữ ký sai, gửi từ ")
    assert all(english_words(line) == [] for line in lines), lines


def test_zalo_webhook_lines_in_english(client: Any, db: Database,  # noqa: F811
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="outreach")
    add_delivery(db)
    assert post(client, event()).status_code == 200
    assert _lines(caplog) == ["Zalo webhook user_received_message: 1 applied, 0 kept pending, "
                              "0 refused"]


def test_log_levels_in_the_language() -> None:
    record = logging.LogRecord("outreach.receipts.receiver", logging.WARNING, __file__, 1,
                               "webhook Zalo: chữ ký sai", None, None)
    fmt = LogFormatter(LOG_FORMAT)
    i18n.set_language("vi")
    try:
        line = fmt.format(record)
    finally:
        i18n.set_language("en")
    assert line.endswith(" CẢNH_BÁO outreach.receipts.receiver: webhook Zalo: chữ ký sai")
    assert record.levelname == "WARNING"  # the record itself is left as it was
    assert fmt.format(record).endswith(" WARNING outreach.receipts.receiver: webhook Zalo: "
                                       "chữ ký sai")


def test_waitress_lines_in_the_language() -> None:
    """waitress's own lines (the server under ``webhooks serve`` and ``web serve``)."""
    fmt = LogFormatter("%(levelname)s %(message)s")
    listen = logging.LogRecord("waitress", logging.INFO, __file__, 1,
                               "Serving on http://127.0.0.1:8080", None, None)
    queue = logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1,
                              "Task queue depth is %d", (3,), None)
    i18n.set_language("vi")
    try:
        assert fmt.format(listen) == "THÔNG_TIN đang lắng nghe tại http://127.0.0.1:8080"
        assert fmt.format(queue) == ("CẢNH_BÁO 3 yêu cầu đang chờ một luồng máy chủ rảnh "
                                     "(thêm luồng: --threads)")
    finally:
        i18n.set_language("en")
    assert queue.getMessage() == "Task queue depth is 3"  # the record is left as it was
    assert fmt.format(queue) == ("WARNING 3 requests are waiting for a free server thread "
                                 "(more threads: --threads)")


def test_webhooks_serve_start_line_in_each_language(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    db_ = fresh_db(tmp_path, "serve.db")
    monkeypatch.setattr("outreach.receipts.receiver.serve", lambda *a, **k: None)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("OUTREACH_PUBLIC_BASE_URL", PUBLIC)
    args = ["--database-url", str(db_.url), "webhooks", "serve", "--threads", "4"]
    vi_out = CliRunner().invoke(main, ["--lang", "vi", *args])
    assert vi_out.exit_code == 0, vi_out.output
    text = " ".join(vi_out.output.split())
    assert text.startswith("outreach webhooks tại http://127.0.0.1:8080 (biên nhận Twilio và "
                           "SMS trả lời; "), text
    assert "từ khóa từ chối nhận tin và" in text and "4 luồng, cơ sở dữ liệu" in text
    assert english_words(vi_out.output) == [] and AUTH_TOKEN not in vi_out.output
    r = CliRunner().invoke(main, ["--lang", "vi", *args[:2], "webhooks", "serve", "--no-twilio"])
    assert "(không nhận từ Twilio; " in " ".join(r.output.split()), r.output
    en_out = CliRunner().invoke(main, ["--lang", "en", *args])
    assert "(Twilio receipts and inbound SMS; " in " ".join(en_out.output.split())
    db_.dispose()

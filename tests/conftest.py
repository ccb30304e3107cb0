"""Shared fixtures: every test gets its own data directory and never leaves 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN_FILE = ROOT / "campaigns" / "cantho-2024-pcmbn.toml"
#: A fixed Fernet key for the tests (outreach.secretstore); set before any test or subprocess runs.
TEST_SECRET_KEY = "dGVzdC1vbmx5LWtleS1ub3QtYS1yZWFsLXNlY3JldCE="
os.environ.setdefault("OUTREACH_SECRET_KEY", TEST_SECRET_KEY)
#: The tests assert English output unless they ask for Vietnamese (tests/test_i18n.py):
#: ``--lang vi`` or ``OUTREACH_LANG=vi`` in the test, never the machine's locale.
os.environ["OUTREACH_LANG"] = "en"
PLAN_TEXT = ("Toàn dân tích cực tham gia phòng, chống mua bán người. Khi phát hiện dấu hiệu liên "
             "quan đến mua bán người hãy thông báo ngay cho cơ quan Công an nơi gần nhất hoặc Tổng "
             "đài quốc gia 111 để được tư vấn, hỗ trợ, hướng dẫn kịp thời")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("OUTREACH_HOME", str(home))
    monkeypatch.delenv("OUTREACH_DATABASE_URL", raising=False)
    monkeypatch.delenv("OUTREACH_OUTBOX_DIR", raising=False)
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET",
                "ZALO_APP_ID", "ZALO_SECRET_KEY", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                "https_proxy", "TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("OUTREACH_LANG", "en")
    from outreach import i18n

    i18n.set_language("en")


@pytest.fixture
def home() -> Path:
    return Path(os.environ["OUTREACH_HOME"])

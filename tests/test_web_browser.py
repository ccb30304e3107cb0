"""The web application in a real browser (Playwright driving Debian's Chromium): sign in, follow
a run while it sends through the mock gateway, compare the page with the JSON report, download
the official report, ask for and give an approval as two people, a launch refused before it.

Needs /usr/bin/chromium (``apt-get install chromium``; .ci/run installs it). Skipped when it is
missing, except when OUTREACH_REQUIRE_BROWSER=1 (CI), where it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from outreach.input import campaigns
from outreach.ledger import runs
from outreach.web import create_app
from tests.fakes import waitress_on_loopback
from tests.fakes.twilio_server import FakeTwilio
from tests.helpers import numbers
from tests.web_helpers import PASSWORD, add_accounts, open_campaign, whole_number_patterns

CHROMIUM = os.environ.get("OUTREACH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("OUTREACH_REQUIRE_BROWSER"):
        raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

N = 40
FAIL = numbers(N)[7]


@pytest.fixture
def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    import datetime as dt

    from tests.helpers import fresh_db

    db = fresh_db(tmp_path)
    add_accounts(db)
    mock_file = open_campaign(tmp_path, "thu-mock", "mock", n=N, rate=12)
    twilio_file = open_campaign(tmp_path, "that-twilio", "twilio", n=4, start=500)
    now = dt.datetime.now(dt.timezone.utc)
    with db.engine.begin() as conn:
        for f in (mock_file, twilio_file):
            runs.sync_campaign(conn, campaigns.load(f), now=now)
    with FakeTwilio() as twilio:
        app = create_app(db, secret_key="b" * 32, gateway_options={
            "mock": {"script": {FAIL: ["invalid"]}}, "twilio": twilio.gateway_options()})
        with waitress_on_loopback(app, threads=4) as port:
            yield {"db": db, "base": f"http://127.0.0.1:{port}", "twilio": twilio,
                   "tmp": tmp_path}


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update"])
        yield b
        b.close()


def sign_in(page, base: str, user: str, then: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + then)
    assert "/login" in page.url  # no page without signing in
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + then)


def flash(page) -> str:  # type: ignore[no-untyped-def]
    return " ".join(page.locator(".flash").all_inner_texts())


def test_follow_a_run_compare_download_and_approve(site, browser) -> None:  # type: ignore[no-untyped-def]
    base, db = site["base"], site["db"]
    ctx = browser.new_context(accept_downloads=True, locale="vi-VN",
                              viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    sign_in(page, base, "olga", "/campaigns/thu-mock")

    # launch through the mock gateway and follow the run without reloading the page
    page.click("#btn-launch")
    page.wait_for_load_state()
    assert "Đã bắt đầu đợt gửi" in flash(page)
    page.evaluate("window.__notReloaded = 42")
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = int(page.inner_text('[data-live="done"]').replace(".", ""))
        seen.append(done)
        if done == N and "Hoàn thành" in page.inner_text('[data-live="run"]'):
            break
        time.sleep(0.25)
    assert seen[-1] == N, seen
    assert len(set(seen)) >= 3, f"progress did not move while sending: {seen}"
    assert seen == sorted(seen)
    assert page.evaluate("window.__notReloaded") == 42  # refreshed in place

    # every figure on the page equals the JSON report
    page.reload()
    from click.testing import CliRunner

    from outreach.cli import main

    out = CliRunner().invoke(main, ["--database-url", db.url, "report", "thu-mock",
                                    "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)  # `outreach report thu-mock --format json`
    figures = page.eval_on_selector_all(
        "[data-figure]", "els => els.map(e => [e.dataset.figure, e.dataset.value, e.innerText])")
    assert len(figures) >= 13
    from outreach.reporting.official import vn_int, vn_pct

    for key, value, text in figures:
        want = data["by_status"]["opted_out"] if key == "opted_out" else data[key]
        assert json.loads(value) == want, key
        assert text == (vn_pct(want) if key.endswith("rate") else vn_int(want)), key
    assert (data["deliveries"], data["failures"], data["awaiting"]) == (N, 1, N - 1)
    assert page.inner_text("#text-sha256") == data["text_sha256"]
    body = page.content()
    assert not any(p.search(body) for p in whole_number_patterns(numbers(N)))
    shot = site["tmp"] / "campaign-page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot of the campaign page: {shot}")
    keep = os.environ.get("OUTREACH_WEB_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)

    # the official report downloads as the same figures
    with page.expect_download() as dl:
        page.click("#dl-official")
    html = Path(dl.value.path()).read_text(encoding="utf-8")
    assert dl.value.suggested_filename == "bao-cao-thu-mock.html"
    assert data["text_sha256"] in html and data["text"] in html
    assert vn_int(data["deliveries"]) in html

    # a launch through a gateway that reaches phones is refused without approval
    page.goto(base + "/campaigns/that-twilio")
    page.click("#btn-launch")
    page.wait_for_load_state()
    assert "Chưa được phép" in flash(page)
    assert site["twilio"].creates() == []
    page.click("#btn-submit")
    page.wait_for_load_state()
    assert "Đã gửi đề nghị phê duyệt" in flash(page)
    assert page.get_attribute("#approval-state", "data-state") == "pending"
    assert page.locator("#btn-approve").count() == 0  # an operator has no approve button
    page.click("nav button")  # sign out
    page.wait_for_url("**/login")

    # a second person approves, then the launch goes through
    sign_in(page, base, "anna", "/campaigns/that-twilio")
    page.click("#btn-approve")
    page.wait_for_load_state()
    assert "Đã phê duyệt" in flash(page), flash(page)
    assert page.get_attribute("#approval-state", "data-state") == "valid"
    assert "olga" in page.inner_text("#approval") and "anna" in page.inner_text("#approval")
    page.click("#btn-launch")
    page.wait_for_load_state()
    assert "Đã bắt đầu đợt gửi" in flash(page), flash(page)
    deadline = time.monotonic() + 30
    while len(site["twilio"].creates()) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(site["twilio"].creates()) == 4
    ctx.close()

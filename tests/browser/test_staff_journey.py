"""A staff member's journey through the real platform in Debian's headless chromium.

Everything is real: the live server (pytest-django), a `manage.py qcluster` worker on the test
database, and the bundled Anthropic emulator; Playwright's Python package drives the browser.
"""

import time
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from allocation.money import usd_total
from tests.worker.test_worker import qcluster_factory  # noqa: F401 - a fixture

CHROMIUM = Path("/usr/bin/chromium")
# Playwright cannot download its own browsers here: it drives Debian's chromium, offline.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NEW_CARD_MODEL = "claude-haiku-4-5"  # the seed's global card model is claude-haiku-5-5
READING_TIMEOUT_S = 60


def wait_until_done(api, reading_url: str, cluster) -> dict:
    """GET the reading until the worker has finished it; fail with the worker's output."""
    deadline = time.monotonic() + READING_TIMEOUT_S
    reading = None
    while time.monotonic() < deadline:
        reading = api.get(reading_url).json()
        if reading["status"] in ("done", "failed"):
            assert reading["status"] == "done", f"the reading failed: {reading['error']}"
            return reading
        time.sleep(0.2)
    pytest.fail(
        f"the reading was not done after {READING_TIMEOUT_S} s: {reading and reading['progress']}"
        f"\nqcluster said:\n{cluster.output()}"
    )


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)",
)
# The seed (spreads, deck, global allocations) comes from migrations: keep it for later tests.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_staff_changes_the_card_model_and_finds_the_readings_cost_in_the_reports(
    live_server,
    alice,
    bob,
    qcluster_factory,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    cluster = qcluster_factory()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(base_url=live_server.url)
        page.set_default_timeout(15_000)

        # alice, staff, signs in to the admin...
        page.goto("/admin/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", "alice-pass-123")
        page.click("input[type=submit]")
        expect(page.locator("#site-name")).to_be_visible()

        # ...looks at how the Celtic Cross lies: the preview follows the places as typed...
        page.goto("/admin/spreads/spread/")
        page.get_by_role("link", name="Celtic Cross").click()
        preview = page.locator(".layout-preview li")
        expect(preview).to_have_count(10)
        expect(page.locator(".layout-preview li.crosswise")).to_have_text("2")
        page.select_option("#id_positions-1-rotation", "0")  # the crossing card, upright
        expect(page.locator(".layout-preview li.clash")).to_have_count(2)
        page.fill("#id_positions-6-row", "")  # the staff's first card, unplaced
        expect(page.locator(".layout-preview p")).to_contain_text("in rows")

        # ...and puts the Celtic Cross's card interpretations on another model.
        page.goto("/admin/allocation/modelallocation/add/")
        page.select_option("#id_task_type", "card_interpretation")
        page.select_option("#id_spread", label="Celtic Cross")
        page.fill("#id_model", NEW_CARD_MODEL)
        page.fill("#id_max_tokens", "1024")
        page.fill("#id_temperature", "1.0")
        page.fill("#id_fallback_models", "")
        page.click("input[name=_save]")
        expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
        expect(page.locator("#result_list")).to_contain_text(NEW_CARD_MODEL)

        # bob's app creates a Celtic Cross reading through the REST API with his token. (A request
        # context of its own: alice's session cookie would make DRF demand a CSRF token.)
        login = playwright.request.new_context(base_url=live_server.url)
        token = login.post("/api/auth/token/", data={"username": "bob", "password": "bob-pass-123"})
        assert token.ok, token.text()
        api = playwright.request.new_context(
            base_url=live_server.url,
            extra_http_headers={"Authorization": f"Token {token.json()['token']}"},
        )
        login.dispose()
        created = api.post(
            "/api/readings/",
            data={"spread": "celtic_cross", "question": "Where is my career going?"},
        )
        assert created.status == 202, created.text()
        reading_id = created.json()["id"]

        # The worker runs it; its card interpretations went to the new model.
        reading = wait_until_done(api, created.json()["url"], cluster)
        card_models = {
            task["model_used"]
            for task in reading["progress"]["tasks"]
            if task["task_type"] == "card_interpretation"
        }
        assert card_models == {NEW_CARD_MODEL}
        assert Decimal(reading["cost_usd"]) > 0

        # alice finds the reading and its cost among the most expensive readings.
        page.goto("/reports/costs/")
        page.screenshot(path=tmp_path / "costs.png", full_page=True)  # for debugging
        row = page.locator("#top-readings tbody tr").filter(
            has=page.locator(f'[title="{reading_id}"], a[href*="{reading_id}"]')
        )
        expect(row).to_have_count(1)
        expect(row.locator("td").first).to_have_text(reading_id[:8])
        # A reading's cost is a total: dollars and cents.
        expect(row.locator("td").last).to_have_text(usd_total(Decimal(reading["cost_usd"])))

        api.dispose()
        browser.close()

"""Every staff page at a desk (1,400 px) and on a phone (390 px), in Debian's headless chromium:
no sideways page scroll, no serious or critical axe-core finding, money in the right format.

axe-core is vendored under tests/browser/vendor/axe-core (MPL-2.0), so this runs offline.
"""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from allocation.models import CallOutcome, LLMCall
from readings.models import Reading, ReadingStatus
from readings.services import reading_create
from spreads.models import Spread, TaskType
from tests.browser.test_staff_journey import CHROMIUM, CHROMIUM_ARGS

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
WIDTHS = {"desk": 1400, "phone": 390}
TOTAL = re.compile(r"^(\$\d{1,3}(,\d{3})*\.\d\d|< \$0\.01)$")  # $1,234.56
ONE_CALL = re.compile(r"^\$\d+\.\d{2,8}$")  # $0.00229005


def staff_pages(reading: Reading, spread: Spread) -> list[str]:
    return [
        "/admin/",
        "/reports/costs/",
        "/admin/readings/reading/",
        f"/admin/readings/reading/{reading.pk}/change/",
        "/admin/allocation/llmcall/",
        "/admin/allocation/modelallocation/add/",
        "/admin/allocation/modellimit/add/",
        "/admin/allocation/modelprice/",
        "/admin/allocation/modelstate/",
        "/admin/spreads/spread/add/",
        f"/admin/spreads/spread/{spread.pk}/change/",
        "/admin/spreads/prompttemplate/",
        "/admin/spreads/prompttemplate/add/?name=celtic_cross_card.txt",
        "/api/docs/",
    ]


def make_history(owner) -> Reading:
    """A finished reading and a month of calls, some of them expensive, some rate-limited."""
    reading = reading_create(owner=owner, spread="celtic_cross", question="Where am I heading?")
    spread = reading.spread
    now = datetime.now(UTC)
    calls = []
    for day in range(30):
        for task_type in TaskType.values:
            for outcome in (CallOutcome.OK, CallOutcome.OK, CallOutcome.RATE_LIMITED):
                calls.append(
                    LLMCall(
                        reading=reading,
                        spread=spread,
                        task_type=task_type,
                        requested_model="claude-sonnet-4-5",
                        model="claude-haiku-4-5" if day % 3 else "claude-sonnet-4-5",
                        outcome=outcome,
                        is_retry=outcome == CallOutcome.RATE_LIMITED,
                        # Haiku days failed over from the requested model: the failover table.
                        is_fallback=bool(day % 3),
                        batched=day % 6 == 0,
                        input_tokens=123_456,
                        cache_read_tokens=45_678 if outcome == CallOutcome.OK else 0,
                        output_tokens=2_345,
                        cost_usd=Decimal("123.45678901") if outcome == CallOutcome.OK else 0,
                        latency_s=4.50759093399995,
                        started_at=now - timedelta(days=day),
                    )
                )
    LLMCall.objects.bulk_create(calls)
    for n, call in enumerate(LLMCall.objects.filter(reading=reading)):
        LLMCall.objects.filter(pk=call.pk).update(created_at=now - timedelta(days=n % 30))
    Reading.objects.filter(pk=reading.pk).update(
        status=ReadingStatus.DONE,
        cost_usd=Decimal("0.02290050"),
        wall_time_s=4.50759093399995,
        sequential_s=3.87,
        time_saved_s=-0.64,
        calls=len(calls),
    )
    return reading


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_staff_pages_fit_desks_and_phones_pass_axe_and_show_money_plainly(live_server, alice):
    reading = make_history(alice)
    pages = staff_pages(reading, Spread.objects.get(slug="celtic_cross"))
    problems = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for device, width in WIDTHS.items():
            context = browser.new_context(
                base_url=live_server.url, viewport={"width": width, "height": 900}
            )
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto("/admin/login/")
            page.fill("#id_username", "alice")
            page.fill("#id_password", "alice-pass-123")
            page.click("input[type=submit]")
            page.wait_for_selector("#site-name")
            for path in pages:
                response = page.goto(path)
                assert response.ok, f"{path}: HTTP {response.status}"
                page.wait_for_load_state("networkidle")
                scroll = page.evaluate("document.documentElement.scrollWidth")
                inner = page.evaluate("window.innerWidth")
                if scroll > inner:
                    problems.append(f"{device} {path}: the page is {scroll} px wide in {inner} px")
                page.add_script_tag(path=str(AXE))
                found = page.evaluate(
                    "async () => (await axe.run(document, {resultTypes: ['violations']}))"
                    ".violations.filter(v => ['serious', 'critical'].includes(v.impact))"
                    ".map(v => `${v.impact} ${v.id}: ${v.nodes.slice(0, 3)"
                    ".map(n => n.target.join(' ')).join(', ')}`)"
                )
                problems.extend(f"{device} {path}: {finding}" for finding in found)
            check_money_formats(page, reading, problems, device)
            check_scroll_hints(page, problems, device)
            context.close()
        browser.close()

    assert not problems, "\n".join(problems)


def check_scroll_hints(page, problems, device):
    """A report table wider than its box fades at the edge it continues past."""
    page.goto("/reports/costs/")
    boxes = page.locator(".table-scroll").all()
    wide = [box for box in boxes if box.evaluate("b => b.scrollWidth > b.clientWidth + 1")]
    if device == "phone":
        assert wide, "on a phone, some report tables are wider than the screen"
    for box in wide:
        if box.get_attribute("data-more") != "right":
            problems.append(f"{device} reports: a wide table gives no hint that it scrolls")
    if wide:
        wide[0].evaluate("b => b.scrollLeft = b.scrollWidth")
        expect(wide[0]).to_have_attribute("data-more", "left")


def cell_texts(page, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


def check_money_formats(page, reading, problems, device):
    page.goto("/reports/costs/")
    totals = [
        *cell_texts(page, "#total-cost"),
        *cell_texts(page, "#by-task-type td.num:nth-of-type(1)"),
        *cell_texts(page, "#top-readings td:last-child"),
    ]
    assert totals, "the reports show totals"
    problems.extend(
        f"{device} reports: {text!r} is not dollars and cents"
        for text in totals
        if not TOTAL.match(text)
    )
    assert cell_texts(page, "#total-cost") == ["$29,629.63"]  # 240 calls of $123.45678901

    page.goto("/admin/readings/reading/")
    assert cell_texts(page, "td.field-cost") == ["$0.02"]
    assert cell_texts(page, "td.field-wall_time") == ["4.51"]

    page.goto("/admin/allocation/llmcall/?outcome__exact=ok")
    costs = cell_texts(page, "td.field-cost")
    assert costs and set(costs) == {"$123.45678901"}, costs  # one call: every digit
    assert all(ONE_CALL.match(text) for text in costs)

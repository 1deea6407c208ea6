"""Staff watch the provider calls, the live limits and their history in the admin, read-only."""

import time
from datetime import datetime

import pytest

from allocation.limiter import get_params
from allocation.models import Lease, LimitChange, LLMCall, ModelLimit, ModelState
from readings.services import reading_create
from tests.reports import at, make_call

pytestmark = pytest.mark.django_db

CALLS_URL = "/admin/allocation/llmcall/"
STATES_URL = "/admin/allocation/modelstate/"
CHANGES_URL = "/admin/allocation/limitchange/"


def lease(model: str, *, expires_at: float) -> Lease:
    return Lease.objects.create(model=model, holder="test:1", expires_at=expires_at)


def limit_change(
    model: str, when: datetime, *, limit: int, reason: str, breaker_state: str = "closed"
) -> LimitChange:
    change = LimitChange.objects.create(
        model=model, limit=limit, reason=reason, breaker_state=breaker_state
    )
    LimitChange.objects.filter(pk=change.pk).update(created_at=when)  # auto_now_add
    return change


def open_breaker(model: str, *, opened_at: float, limit: int = 7) -> ModelState:
    return ModelState.objects.create(
        model=model,
        adaptive={"limit": limit, "last_reason": "overloaded"},
        breaker={"state": "open", "failures": 5, "opened_at": opened_at, "probes": 0},
    )


def test_it_lists_llm_calls_for_staff(staff_client):
    reading = reading_create(spread="three_card", question="Will it rain?")
    call = make_call(at("2025-03-02 18:00"), cost="0.0015", reading=reading, input_tokens=1200)
    LLMCall.objects.filter(pk=call.pk).update(
        requested_model="claude-sonnet-4-5", is_fallback=True, spread=reading.spread
    )

    response = staff_client.get(CALLS_URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert "claude-haiku-4-5</span> <small>(asked for claude-sonnet-4-5)</small>" in page
    assert "OK<br><small>fallback</small>" in page  # a word, not a red cross for "no"
    assert '<td class="field-cost">$0.0015</td>' in page  # one call: every digit
    assert "1,200 / 0" in page
    assert "LLM calls" in page and "Llm calls" not in page
    for heading in ("Cost (USD)", "Latency (s)", "When (UTC)"):
        assert heading in page
    assert f'/admin/readings/reading/{reading.pk}/change/">{str(reading.pk)[:8]}</a>' in page


def test_it_marks_a_lost_calls_cost_as_estimated(staff_client):
    call = make_call(at("2025-03-02 18:00"), cost="0.0021")
    LLMCall.objects.filter(pk=call.pk).update(outcome="lost", cost_estimated=True)

    page = staff_client.get(CALLS_URL).content.decode()

    assert "Lost (worker died mid-call)" in page
    assert "$0.0021<br><small>estimated</small>" in page


def test_it_offers_no_way_to_add_change_or_delete_llm_calls(staff_client):
    call = make_call(at("2025-03-02 18:00"))

    assert staff_client.get(f"{CALLS_URL}add/").status_code == 403
    detail = staff_client.get(f"{CALLS_URL}{call.pk}/change/")
    assert detail.status_code == 200  # viewable...
    assert 'name="_save"' not in detail.content.decode()  # ...but not editable
    assert staff_client.post(f"{CALLS_URL}{call.pk}/delete/").status_code == 403
    assert LLMCall.objects.filter(pk=call.pk).exists()


def test_it_does_not_count_the_whole_llm_call_table(staff_client):
    make_call(at("2025-03-02 18:00"), model="claude-haiku-4-5")
    make_call(at("2025-03-02 18:01"), model="claude-sonnet-4-5")

    page = staff_client.get(CALLS_URL, {"q": "sonnet"}).content.decode()

    assert "1 result" in page
    assert "2 total" not in page  # the full count is the slow query on a big table


def test_it_lists_the_calls_of_one_reading(staff_client):
    reading = reading_create(spread="three_card", question="Will it rain?")
    make_call(at("2025-03-02 18:00"), reading=reading, model="claude-sonnet-4-5")
    make_call(at("2025-03-02 18:01"), model="claude-opus-4-1")

    response = staff_client.get(CALLS_URL, {"reading__id__exact": str(reading.pk)})

    assert response.status_code == 200
    page = response.content.decode()
    assert "claude-sonnet-4-5" in page and "claude-opus-4-1</td>" not in page


def test_it_shows_live_limits_and_an_open_breaker(staff_client):
    ModelLimit.objects.update_or_create(model="*", defaults={"max_concurrent_calls": 10})
    open_breaker("claude-haiku-4-5", opened_at=at("2025-03-02 12:03:10").timestamp())
    now = time.time()
    lease("claude-haiku-4-5", expires_at=now + 10)
    lease("claude-haiku-4-5", expires_at=now + 10)
    lease("claude-haiku-4-5", expires_at=now - 10)  # a dead worker's, expired

    response = staff_client.get(STATES_URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Live limits and circuit breakers" in page
    assert "open since 2025-03-02 12:03:10 UTC" in page
    assert '<td class="field-calls_in_flight">2</td>' in page
    assert '<td class="field-adaptive_limit">7</td>' in page
    assert "10 (*)" in page
    assert "overloaded" in page


def test_it_prefers_a_model_s_own_limit_to_the_default(staff_client):
    ModelLimit.objects.update_or_create(model="*", defaults={"max_concurrent_calls": 10})
    ModelLimit.objects.create(model="claude-haiku-4-5", max_concurrent_calls=3)
    ModelState.objects.create(model="claude-haiku-4-5")
    ModelState.objects.create(model="claude-sonnet-4-5")

    page = staff_client.get(STATES_URL).content.decode()

    assert "3 (own row)" in page and "10 (*)" in page
    # No adaptive state yet: the controller's starting limit.
    assert f"{get_params().aimd.initial_limit} (initial)" in page


def test_it_lists_live_limits_in_a_bounded_number_of_queries(
    staff_client, django_assert_max_num_queries
):
    ModelLimit.objects.update_or_create(model="*", defaults={"max_concurrent_calls": 10})
    now = time.time()
    for n in range(12):
        model = f"model-{n}"
        open_breaker(model, opened_at=now - 5)
        lease(model, expires_at=now + 10)
        limit_change(model, at("2025-03-02 12:00"), limit=5, reason="increase")

    # session, user, two counts and the one changelist query with its subqueries; the limit
    # advisor's calls, states and limits
    with django_assert_max_num_queries(8):
        response = staff_client.get(STATES_URL)

    assert response.status_code == 200
    assert response.content.decode().count("open since") == 12


def test_it_shows_a_model_s_limit_history_on_its_page(staff_client):
    state = open_breaker("claude-haiku-4-5", opened_at=time.time())
    limit_change("claude-haiku-4-5", at("2025-03-02 12:00:00"), limit=6, reason="increase")
    limit_change(
        "claude-haiku-4-5",
        at("2025-03-02 12:03:10"),
        limit=3,
        reason="rate_limited",
        breaker_state="open",
    )
    limit_change("claude-sonnet-4-5", at("2025-03-02 12:05:00"), limit=9, reason="latency")

    response = staff_client.get(f"{STATES_URL}{state.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "<td>2025-03-02 12:03:10 UTC</td><td>3</td><td>rate_limited</td><td>open</td>" in page
    assert page.index("rate_limited") < page.index("increase")  # newest first
    assert "latency" not in page  # another model's change
    assert f"{CHANGES_URL}?model=claude-haiku-4-5" in page


def test_it_lists_limit_changes_by_model_and_reason(staff_client):
    limit_change("claude-haiku-4-5", at("2025-03-02 12:00"), limit=6, reason="increase")
    limit_change("claude-sonnet-4-5", at("2025-03-02 12:01"), limit=2, reason="rate_limited")

    everything = staff_client.get(CHANGES_URL)
    sonnet = staff_client.get(CHANGES_URL, {"model": "claude-sonnet-4-5"})
    increases = staff_client.get(CHANGES_URL, {"reason": "increase"})

    assert everything.status_code == 200
    assert "claude-haiku-4-5</td>" in everything.content.decode()
    assert "claude-haiku-4-5</td>" not in sonnet.content.decode()
    assert "claude-sonnet-4-5</td>" not in increases.content.decode()
    assert staff_client.get(f"{CHANGES_URL}add/").status_code == 403


def test_it_keeps_the_limit_pages_from_non_staff(client, bob):
    client.force_login(bob)

    for url in (CALLS_URL, STATES_URL, CHANGES_URL):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_it_says_when_a_model_s_limit_has_never_moved(staff_client):
    state = ModelState.objects.create(model="claude-haiku-4-5")

    page = staff_client.get(f"{STATES_URL}{state.pk}/change/").content.decode()

    assert "No changes yet" in page


def test_staff_set_a_fallback_cost_ceiling_and_see_when_it_rules_a_fallback_out(staff_client):
    from allocation.models import ModelAllocation
    from spreads.models import TaskType

    card = ModelAllocation.objects.get(task_type=TaskType.CARD_INTERPRETATION, spread=None)
    url = f"/admin/allocation/modelallocation/{card.pk}/change/"
    form = {
        "task_type": card.task_type,
        "spread": "",
        "model": card.model,
        "max_tokens": card.max_tokens,
        "temperature": card.temperature,
        "fallback_models": "claude-haiku-4-5",  # ten times claude-haiku-5-5's price
        "cache_ttl": "",
    }

    refused = staff_client.post(url, {**form, "fallback_cost_ceiling": "2"})

    assert refused.status_code == 200
    assert "claude-haiku-4-5 costs 10.00x claude-haiku-5-5" in refused.content.decode()
    card.refresh_from_db()
    assert card.fallback_cost_ceiling is None  # nothing stored

    saved = staff_client.post(url, {**form, "fallback_cost_ceiling": "10"})

    assert saved.status_code == 302
    card.refresh_from_db()
    assert str(card.fallback_cost_ceiling) == "10.00"


def test_limits_read_with_thousands_separators(staff_client):
    ModelLimit.objects.update_or_create(
        model="claude-haiku-5-5",
        defaults={"requests_per_minute": 4000, "input_tokens_per_minute": 2_000_000},
    )
    page = staff_client.get("/admin/allocation/modellimit/").content.decode()
    assert '<td class="field-requests">4,000</td>' in page
    assert '<td class="field-input_tokens">2,000,000</td>' in page

"""The limit advisor tells staff which limit held calls back and what a tighter max_tokens
would allow, from a real run: readings through the engine, against the emulator's limits."""

import pytest

from allocation.limit_advisor import advise, allowed_with
from allocation.limiter import get_backend
from allocation.limiter.backends import forget_limits
from allocation.models import CallOutcome, LLMCall, ModelLimit
from readings.engine import run_reading_sync
from readings.models import ReadingStatus
from readings.services import CardChoice, reading_create
from spreads.models import TaskType

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# 60,000 output tokens a minute is 1,000 a second, a bucket of 1,000 at the provider and 900
# in the platform's limiter. A card call's max_tokens (1,024) fills it: while one call runs,
# the next waits for its unused tokens to come back. Calls take 0.6 s and answer 120-320
# tokens, so at max_tokens 400 two or three could run at once.
OTPM = 60_000
CARD_MODEL = "claude-haiku-5-5"
DRAWN = [
    "the-fool",
    "the-magician",
    "the-high-priestess",
    "the-empress",
    "the-emperor",
    "the-hierophant",
    "the-lovers",
    "the-chariot",
    "strength",
    "the-hermit",
]


@pytest.fixture
def output_bound_run(emulator):
    emulator.configure(otpm=OTPM, ttft_ms=600)
    ModelLimit.objects.update(output_tokens_per_minute=OTPM)
    forget_limits()
    get_backend().reset()
    # Cards drawn once for all: the emulator's answer lengths follow the prompt, and the
    # figures below follow the answer lengths.
    cards = [CardChoice(slug) for slug in DRAWN]
    reading = reading_create(spread="celtic_cross", question="My work?", cards=cards)
    reading = run_reading_sync(reading.pk)
    assert reading.status == ReadingStatus.DONE
    return reading


def test_it_names_the_output_tokens_as_the_limit_that_held_the_cards_back(output_bound_run):
    [haiku] = [advice for advice in advise() if advice.model == CARD_MODEL]

    assert haiku.binding == "otpm"
    assert haiku.binding_name == "output tokens"
    assert haiku.seconds_bound["otpm"] > 0.5  # four calls, one at a time, 0.6 s each


def test_it_shows_the_answers_p99_against_max_tokens(output_bound_run):
    [haiku] = [advice for advice in advise() if advice.model == CARD_MODEL]
    [cards] = haiku.tasks
    answers = LLMCall.objects.filter(
        model=CARD_MODEL, task_type=TaskType.CARD_INTERPRETATION, outcome=CallOutcome.OK
    ).values_list("output_tokens", flat=True)

    assert cards.task_type == TaskType.CARD_INTERPRETATION
    assert cards.calls == 4
    assert cards.max_tokens == 1024
    assert cards.p99_output_tokens == cards.longest_output_tokens == max(answers)
    assert cards.suggested_max_tokens is not None
    assert cards.suggested_max_tokens < cards.max_tokens
    assert cards.suggested_max_tokens >= max(answers) * 1.25


def test_it_says_how_many_more_calls_a_minute_a_max_tokens_of_400_would_allow(output_bound_run):
    [haiku] = [advice for advice in advise() if advice.model == CARD_MODEL]
    [cards] = haiku.tasks
    answers = LLMCall.objects.filter(model=CARD_MODEL, outcome=CallOutcome.OK)
    mean_answer = sum(call.output_tokens for call in answers) / answers.count()

    at_400 = allowed_with(CARD_MODEL, TaskType.CARD_INTERPRETATION, 400)

    # With 400 held a call, the minute's output tokens themselves are the bound...
    assert at_400.binding == "otpm"
    assert at_400.calls_per_minute == pytest.approx(OTPM / mean_answer, rel=0.05)
    # ...where 1,024 let one call run at a time: about one a call's latency.
    assert cards.calls_per_min < at_400.calls_per_minute / 2
    assert cards.readings_per_min == pytest.approx(cards.calls_per_min / 4, rel=0.01)


def test_staff_see_the_advice_on_the_limits_page_and_in_the_reports(staff_client, output_bound_run):
    limits_page = staff_client.get("/admin/allocation/modelstate/").content.decode()
    report = staff_client.get("/reports/costs/").content.decode()
    api = staff_client.get("/reports/api/costs/").json()

    for page in (limits_page, report):
        assert 'id="limit-advisor"' in page
        assert "<strong>output tokens</strong>" in page
    [haiku] = [a for a in api["limits"]["advisor"] if a["model"] == CARD_MODEL]
    assert haiku["binding"] == "otpm"
    assert haiku["tasks"][0]["max_tokens"] == 1024

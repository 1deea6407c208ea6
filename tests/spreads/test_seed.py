import pytest
from django.core.exceptions import ValidationError

from allocation.models import ModelAllocation
from spreads.models import Arcana, Card, Spread, TaskType

pytestmark = pytest.mark.django_db


def test_it_ships_the_whole_rider_waite_smith_deck():
    assert Card.objects.count() == 78
    assert Card.objects.filter(arcana=Arcana.MAJOR).count() == 22
    for suit in ["wands", "cups", "swords", "pentacles"]:
        assert Card.objects.filter(suit=suit).count() == 14
    fool = Card.objects.get(slug="the-fool")
    assert fool.keywords and fool.upright and fool.reversed


@pytest.mark.parametrize(
    ("slug", "card_count", "batch_size", "max_concurrent_calls", "max_tokens"),
    [
        ("three_card", 3, 3, 5, 2048),
        ("celtic_cross", 10, 3, 5, 2048),
        ("horoscope", 12, 4, 6, 4096),
    ],
)
def test_it_seeds_the_three_spreads(slug, card_count, batch_size, max_concurrent_calls, max_tokens):
    spread = Spread.objects.get(slug=slug)
    assert (spread.card_count, spread.batch_size) == (card_count, batch_size)
    assert spread.max_concurrent_calls == max_concurrent_calls
    assert spread.max_tokens == max_tokens
    assert list(spread.positions.values_list("index", flat=True)) == list(range(1, card_count + 1))
    spread.full_clean()


def test_it_seeds_the_celtic_cross_positions_in_order():
    names = list(Spread.objects.get(slug="celtic_cross").positions.values_list("name", flat=True))
    assert names[0] == "The Present"
    assert names[1] == "The Challenge"
    assert names[-1] == "The Outcome"


def test_it_seeds_a_valid_global_allocation_for_every_task_type():
    for task_type in TaskType.values:
        allocation = ModelAllocation.objects.get(task_type=task_type, spread=None)
        allocation.full_clean()
        assert allocation.fallbacks, f"{task_type} has no fallback"


def test_it_puts_cards_on_a_haiku_and_the_overall_reading_on_a_sonnet():
    card = ModelAllocation.objects.get(task_type=TaskType.CARD_INTERPRETATION, spread=None)
    overall = ModelAllocation.objects.get(task_type=TaskType.OVERALL_READING, spread=None)
    assert "haiku" in card.model
    assert "sonnet" in overall.model


def test_the_seeded_data_survives_full_clean_of_every_spread():
    for spread in Spread.objects.all():
        try:
            spread.full_clean()
        except ValidationError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{spread.slug}: {exc}")

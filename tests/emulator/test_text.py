"""The answers: deterministic, about the cards the prompt names, in the requested length."""

import json

import anthropic
import pytest

from emulator import Emulator, Knobs
from emulator.prompt import parse
from emulator.text import answer, load_deck

TOWER_UPRIGHT = "Sudden upheaval clears away what was built on false ground."
TOWER_REVERSED = "You may be resisting a change that has already begun."
KING_UPRIGHT = "Emotional steadiness lets you hold others without drowning."

DECK = [
    {
        "slug": "the-tower",
        "name": "The Tower",
        "arcana": "major",
        "suit": None,
        "number": 16,
        "keywords": ["upheaval", "revelation"],
        "upright": TOWER_UPRIGHT,
        "reversed": TOWER_REVERSED,
    },
    {
        "slug": "king-of-cups",
        "name": "King of Cups",
        "arcana": "minor",
        "suit": "cups",
        "number": 14,
        "keywords": ["calm", "diplomacy"],
        "upright": KING_UPRIGHT,
        "reversed": "Moods may be ruling you.",
    },
    # Not a real card: here to show that the longest name wins.
    {"slug": "cups", "name": "Cups", "keywords": ["vessels"], "upright": "CUPS", "reversed": "X"},
    {"slug": "the-star", "name": "The Star", "keywords": ["hope"], "upright": "Hope returns."},
]


@pytest.fixture
def deck_path(tmp_path):
    path = tmp_path / "deck.json"
    path.write_text(json.dumps(DECK))
    return path


@pytest.fixture
def client(deck_path):
    with (
        Emulator(Knobs(ttft_ms=1, ms_per_token=0), deck_path=deck_path) as emu,
        anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client,
    ):
        yield client


def read(client, text, model="m", max_tokens=1024, system=anthropic.NOT_GIVEN):
    message = client.messages.create(
        model=model,
        max_tokens=max_tokens,
        system=system,
        messages=[{"role": "user", "content": text}],
    )
    return message.content[0].text


def test_the_same_prompt_always_gets_the_same_text(client):
    prompt = "Read The Tower for me."

    assert read(client, prompt) == read(client, prompt) == read(client, prompt, model="other")
    assert read(client, prompt) != read(client, "Read The Star for me.")


def test_the_text_uses_the_meaning_of_a_named_card(client):
    text = read(client, "Please interpret the King of Cups in the present position.")

    assert "King of Cups" in text
    assert KING_UPRIGHT in text
    assert "calm" in text


def test_a_card_marked_reversed_gets_its_reversed_meaning(client):
    text = read(client, "Cards: The Tower (reversed); King of Cups (upright).")

    assert TOWER_REVERSED in text and TOWER_UPRIGHT not in text
    assert KING_UPRIGHT in text


def test_the_longest_card_name_wins(deck_path):
    deck = load_deck(deck_path)

    assert [d.card.name for d in deck.find("The King of Cups, then Cups alone.")] == [
        "King of Cups",
        "Cups",
    ]
    assert [d.card.name for d in deck.find("King of Cups")] == ["King of Cups"]


def test_a_reversed_belongs_to_the_card_just_before_it(deck_path):
    deck = load_deck(deck_path)
    found = deck.find("1. Past: The Star (upright); 2. Present: The Tower (reversed)")

    assert [(d.card.name, d.is_reversed) for d in found] == [
        ("The Star", False),
        ("The Tower", True),
    ]


def test_cards_named_again_after_the_spread_list_are_the_subject(deck_path):
    deck = load_deck(deck_path)
    prompt = (
        "The whole spread: The Star (upright); The Tower (reversed); King of Cups (upright).\n"
        "Interpret these cards:\nCard: The Tower, reversed."
    )

    assert [d.card.name for d in deck.find(prompt)] == ["The Tower"]


def test_without_a_deck_the_answer_is_generic_but_well_formed(tmp_path):
    prompt = parse(
        {"model": "m", "max_tokens": 1024, "messages": [{"role": "user", "content": "The Tower"}]}
    )
    reply = answer(prompt, 200, load_deck(tmp_path / "missing.json"))

    assert reply.stop_reason == "end_turn"
    assert 150 <= reply.output_tokens <= 200
    assert reply.text.endswith(".")


def test_the_answer_length_stays_in_the_configured_range(deck_path):
    lengths = []
    with (
        Emulator(
            Knobs(ttft_ms=0, ms_per_token=0, output_tokens_min=50, output_tokens_max=60),
            deck_path=deck_path,
        ) as emu,
        anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client,
    ):
        for i in range(10):
            message = client.messages.create(
                model="m", max_tokens=1024, messages=[{"role": "user", "content": f"Q{i}"}]
            )
            lengths.append(message.usage.output_tokens)

    # Cut back to the end of a sentence, so a little under the chosen length is fine.
    assert all(30 <= n <= 60 for n in lengths)


def test_the_system_prompt_is_used_when_the_messages_name_no_card(client):
    text = read(client, "What should I focus on?", system="The querent drew The Star.")

    assert "Hope returns." in text

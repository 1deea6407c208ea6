"""Deterministic answers that read like a tarot reading.

The answer talks about the cards the prompt names, using their keywords and upright or
reversed meanings from the project's deck, in wording picked by a hash of the prompt: the same
prompt always gets the same answer. Without the deck file it falls back to generic sentences.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import korean
from .prompt import CHARS_PER_TOKEN, Prompt, estimate_tokens

DEFAULT_DECK_PATH = Path(__file__).resolve().parent.parent / "spreads" / "data" / "deck.json"

# How far after a card's name "reversed" may appear and still belong to that card:
# "The Tower (reversed)", "The Tower, reversed", "The Tower\nOrientation: reversed".
REVERSED_WINDOW = 24
REVERSED = re.compile(r"\breversed\b|역방향", re.IGNORECASE)  # the Korean prompts say 역방향


@dataclass(frozen=True)
class Card:
    name: str
    keywords: tuple[str, ...]
    upright: str
    reversed: str


@dataclass(frozen=True)
class Drawn:
    card: Card
    is_reversed: bool

    @property
    def title(self) -> str:
        return f"{self.card.name} reversed" if self.is_reversed else self.card.name

    @property
    def meaning(self) -> str:
        return self.card.reversed if self.is_reversed else self.card.upright


@dataclass(frozen=True)
class Answer:
    text: str  # for a tool call, its input as JSON (what streams as input_json_delta)
    output_tokens: int
    stop_reason: str  # "end_turn", "tool_use" or "max_tokens"
    tool_name: str = ""  # the tool the answer calls, if any

    @property
    def tool_input(self) -> dict:
        return json.loads(self.text)


class Deck:
    def __init__(self, cards: list[Card]):
        self.cards = {card.name: card for card in cards}
        # Longest names first, so "King of Cups" wins over any shorter name inside it.
        names = sorted(self.cards, key=len, reverse=True)
        self._names = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b")

    def find(self, text: str) -> list[Drawn]:
        """The cards the text asks about, in order of first mention, with their orientation.

        A prompt often lists the whole spread for context and then names the cards to
        interpret again, so when some cards are named more than once, only those count.
        """
        matches = list(self._names.finditer(text))
        drawn: dict[str, Drawn] = {}
        mentions: dict[str, int] = {}
        for i, match in enumerate(matches):
            name = match.group()
            mentions[name] = mentions.get(name, 0) + 1
            if name in drawn:
                continue
            # The orientation comes from the first mention. The window stops at the next card
            # so that card's "reversed" is not borrowed.
            end = match.end()
            following = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            stop = min(end + REVERSED_WINDOW, following)
            drawn[name] = Drawn(self.cards[name], bool(REVERSED.search(text, end, stop)))
        if any(count > 1 for count in mentions.values()):
            return [d for name, d in drawn.items() if mentions[name] > 1]
        return list(drawn.values())


@functools.lru_cache(maxsize=8)
def load_deck(path: Path = DEFAULT_DECK_PATH) -> Deck | None:
    """The deck at `path`, read once per path; None when it is missing or unreadable."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cards = [
        Card(
            name=entry["name"],
            keywords=tuple(str(k) for k in entry.get("keywords") or ()),
            upright=_sentence(entry.get("upright") or ""),
            reversed=_sentence(entry.get("reversed") or ""),
        )
        for entry in raw
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"]
    ]
    return Deck(cards) if cards else None


def output_tokens_for(prompt: Prompt, low: int, high: int) -> int:
    """The answer's natural length, before max_tokens: a hash of the prompt within [low, high]."""
    return low + int.from_bytes(prompt.digest[:4], "big") % (high - low + 1)


def answer(prompt: Prompt, natural_tokens: int, deck: Deck | None) -> Answer:
    """The answer to `prompt`, about `natural_tokens` long, cut off at max_tokens if shorter."""
    rng = random.Random(prompt.digest)
    drawn = []
    if deck is not None:
        drawn = deck.find(prompt.conversation_text) or deck.find(prompt.system_text)
    in_korean = korean.wanted(prompt.system_text)
    positions = _positions_asked(prompt.tool)
    if positions is not None:
        return _interpretations(prompt, rng, drawn, positions, natural_tokens, in_korean)
    capped = natural_tokens > prompt.max_tokens
    tokens = min(natural_tokens, prompt.max_tokens)
    limit = tokens * CHARS_PER_TOKEN
    if in_korean:
        text = korean.reading(rng, [(d.card.name, d.is_reversed) for d in drawn], limit)
    else:
        text = _reading(rng, drawn, limit)
    if capped:
        # Cut mid-sentence, as a real model stopped by max_tokens is.
        return Answer(text[:limit], tokens, "max_tokens")
    text = _cut_at_sentence(text, limit)
    return Answer(text, estimate_tokens(text), "end_turn")


def _positions_asked(tool: dict | None) -> list | None:
    """The positions a forced tool asks an interpretation of (the platform's card batches:
    {"interpretations": [{"position": <one of an enum>, "text": ...}]}), else None."""
    try:
        items = tool["input_schema"]["properties"]["interpretations"]["items"]
        return list(items["properties"]["position"]["enum"])
    except (KeyError, TypeError):
        return None


def _interpretations(prompt, rng, drawn, positions, natural_tokens, in_korean) -> Answer:
    """A card batch's answer as a tool call: each position's card read under its number.

    The cards the batch names are in position order, as the positions are; a position
    with no card to pair gets general words rather than another card's."""
    share = natural_tokens * CHARS_PER_TOKEN // max(1, len(positions))
    items = []
    for i, position in enumerate(positions):
        d = drawn[i] if i < len(drawn) and len(drawn) == len(positions) else None
        if in_korean:
            english = d.card.name if d else ""
            text = korean.card_paragraph(rng, english, bool(d and d.is_reversed), share)
        else:
            text = _card_paragraph(rng, d, share)
        items.append({"position": position, "text": text})
    text = json.dumps({"interpretations": items}, ensure_ascii=False)
    tokens = estimate_tokens(text)
    if tokens > prompt.max_tokens:
        # Cut mid-JSON, as a real model stopped by max_tokens is: not a valid call.
        limit = prompt.max_tokens * CHARS_PER_TOKEN
        return Answer(text[:limit], prompt.max_tokens, "max_tokens", prompt.tool["name"])
    return Answer(text, tokens, "tool_use", prompt.tool["name"])


def _card_paragraph(rng: random.Random, drawn: Drawn | None, min_chars: int) -> str:
    if drawn is None:
        keywords = GENERIC_KEYWORDS
        sentences = ["This position speaks of a quiet lesson of its own."]
    else:
        keywords = list(drawn.card.keywords) or GENERIC_KEYWORDS
        sentences = [
            rng.choice(CARD_LINES).format(
                title=drawn.title, keywords=_join(keywords[:3]), meaning=drawn.meaning
            )
        ]
    reflections = _shuffled_forever(rng, REFLECTIONS)
    sentences.append(next(reflections).format(keyword=rng.choice(keywords)))
    while len(" ".join(sentences)) < min_chars:
        sentences.append(next(reflections).format(keyword=rng.choice(keywords)))
    return " ".join(sentences)


OPENINGS = [
    "The cards speak plainly here.",
    "Let us look at what the spread is showing you.",
    "There is a clear thread running through this reading.",
    "Take a breath before reading on; the cards have a lot to say.",
    "This is a reading about movement, and about what you choose to carry forward.",
    "Something in this spread has been waiting for your attention.",
]

CARD_LINES = [
    "{title} appears, bringing {keywords}. {meaning}",
    "With {title}, the themes are {keywords}. {meaning}",
    "{title} points to {keywords}. {meaning}",
    "Here {title} speaks of {keywords}. {meaning}",
    "{title} sits at the heart of this, carrying {keywords}. {meaning}",
]

REFLECTIONS = [
    "Notice where {keyword} already shows up in your days.",
    "Sit with the idea of {keyword} before you act on it.",
    "Ask yourself what {keyword} would look like if you trusted it.",
    "The invitation is to meet {keyword} with patience rather than force.",
    "Small, steady choices will tell you more about {keyword} than any single moment.",
    "Let {keyword} be a question you carry, not a verdict.",
    "You do not have to resolve {keyword} today; it is enough to name it.",
    "Consider who in your life already models {keyword}, and what you might learn from them.",
    "If {keyword} feels uncomfortable, that discomfort is worth listening to.",
    "There is more room for {keyword} than you have been allowing yourself.",
]

GENERIC_KEYWORDS = ["change", "patience", "clarity", "courage", "rest", "honesty", "growth"]

CLOSINGS = [
    "Taken together, these cards ask you to move with intention.",
    "Whatever you decide, let it come from a settled place.",
    "The spread ends on a hopeful note: the next step is yours to take.",
    "Return to this reading in a few days; it may say more then.",
]


def _reading(rng: random.Random, drawn: list[Drawn], min_chars: int) -> str:
    """Paragraphs until there is at least `min_chars` of text (the caller trims)."""
    keywords = [k for d in drawn for k in d.card.keywords] or GENERIC_KEYWORDS
    reflections = _shuffled_forever(rng, REFLECTIONS)
    paragraphs = [rng.choice(OPENINGS)]
    for d in drawn:
        line = rng.choice(CARD_LINES).format(
            title=d.title,
            keywords=_join(list(d.card.keywords[:3]) or ["its own quiet lesson"]),
            meaning=d.meaning,
        )
        paragraphs.append(f"{line} {next(reflections).format(keyword=_pick(rng, d))}")
    paragraphs.append(rng.choice(CLOSINGS))
    length = sum(len(p) + 2 for p in paragraphs) - 2  # paragraphs are joined by a blank line
    while length < min_chars:
        # Longer answers than the cards fill: more reflection, before the closing line.
        paragraph = " ".join(
            next(reflections).format(keyword=rng.choice(keywords)) for _ in range(3)
        )
        paragraphs.insert(-1, paragraph)
        length += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def _shuffled_forever(rng: random.Random, lines: list[str]) -> Iterator[str]:
    # Every line once before any repeats, so a long answer does not echo itself.
    while True:
        yield from rng.sample(lines, len(lines))


def _pick(rng: random.Random, drawn: Drawn) -> str:
    return rng.choice(drawn.card.keywords) if drawn.card.keywords else rng.choice(GENERIC_KEYWORDS)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def _cut_at_sentence(text: str, limit: int) -> str:
    """At most `limit` characters, ending at a sentence (or failing that, a word) boundary."""
    if len(text) <= limit:
        return text
    end = max(text.rfind(mark, 0, limit + 1) for mark in (". ", ".\n", "? ", "! "))
    if end < limit // 2:
        end = text.rfind(" ", 0, limit + 1)
        return text[:end] if end > 0 else text[:limit]
    return text[: end + 1]

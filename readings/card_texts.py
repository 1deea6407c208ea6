"""Attributing a card batch's text to its positions.

The card prompts ask for one paragraph per card, each beginning with its position's name and
a colon. Models mostly comply; when one does not, each position gets the whole text rather
than a wrong slice of it (and later phases' prompts get that text once, not once per card).
"""

import re

# What later phases' prompts say under a card whose batch text could not be attributed.
SEE_ABOVE = "(interpreted together with the card above)"


def split_by_card(text: str, position_names: list[str]) -> list[str]:
    parts = _attribute(text, position_names)
    return parts if parts is not None else [text.strip()] * len(position_names)


def texts_for_later_phases(text: str, position_names: list[str]) -> list[str]:
    """What each position hands to the overall reading, relationships and advice prompts:
    its own paragraph, or, when the batch's text cannot be attributed, the whole text once
    under the batch's first position. Repeating it under every position would make each
    later prompt pay for the same text as many times as the batch has cards."""
    parts = _attribute(text, position_names)
    if parts is not None:
        return parts
    return [text.strip()] + [SEE_ABOVE] * (len(position_names) - 1)


def _attribute(text: str, position_names: list[str]) -> list[str] | None:
    text = text.strip()
    count = len(position_names)
    if count == 1:
        return [text]
    by_name = _split_at_names(text, position_names)
    if by_name:
        return by_name
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paragraphs) == count:
        return paragraphs
    return None


def _split_at_names(text: str, names: list[str]) -> list[str] | None:
    starts = []
    for name in names:
        match = re.search(rf"(?im)^\W*{re.escape(name)}\W*:", text)
        if match is None:
            return None
        starts.append(match.start())
    if starts != sorted(starts):
        return None
    ends = [*starts[1:], len(text)]
    return [text[start:end].strip() for start, end in zip(starts, ends, strict=True)]

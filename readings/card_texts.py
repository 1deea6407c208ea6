"""Attributing a card batch's text to its positions.

The card prompts ask for one paragraph per card, each beginning with its position's name and
a colon. Models mostly comply; when one does not, each position gets the whole text rather
than a wrong slice of it.
"""

import re


def split_by_card(text: str, position_names: list[str]) -> list[str]:
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
    return [text] * count


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

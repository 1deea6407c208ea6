"""Usernames that look like another: `аlice` (a Cyrillic а) beside `alice` would let one
reader pass for another. A name is reduced to a skeleton (after Unicode TS #39): NFKC, case
folded, and every character replaced by the plainest one it is confusable with, using the
confusable-homoglyphs library's Unicode data. Two names with one skeleton look alike.
"""

import unicodedata
from functools import lru_cache

from confusable_homoglyphs import confusables
from django.contrib.auth import get_user_model
from django.db.models.functions import Length


@lru_cache(maxsize=4096)
def _prototype(character: str) -> str:
    """The character that stands for every character `character` can be mistaken for: the
    smallest ASCII one among them, else the smallest, so all of them map to the same one."""
    found = confusables.is_confusable(character, greedy=True, preferred_aliases=[])
    if not found:
        return character
    group = [character, *(glyph["c"].strip("\u200e") for glyph in found[0]["homoglyphs"])]
    plain = [c for c in group if len(c) == 1 and c.isascii()]
    return min(plain or [c for c in group if len(c) == 1] or [character])


def skeleton(name: str) -> str:
    return "".join(_prototype(c) for c in unicodedata.normalize("NFKC", name).casefold())


def look_alike_of(name: str) -> str | None:
    """An existing username that looks like `name` (itself excluded), or None."""
    wanted = skeleton(name)
    users = get_user_model().objects.annotate(length=Length("username"))
    for existing in users.filter(length=len(name)).values_list("username", flat=True):
        if existing != name and skeleton(existing) == wanted:
            return existing
    return None

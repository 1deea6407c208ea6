"""What readers see of a spread in their page's language: its name, description and positions'
names. Staff's own text for that language (SpreadText) first, then the shipped translation of
the English (locale/, readings/display_names.py), then the English as written."""

from django.utils.translation import get_language, gettext

from spreads.models import Spread, SpreadText


def _text(spread: Spread, language: str) -> SpreadText | None:
    # From a prefetch when the caller made one (texts), else one query.
    return next((t for t in spread.texts.all() if t.language == language), None)


def _language() -> str:
    return (get_language() or "en").split("-")[0]


def spread_name(spread: Spread) -> str:
    own = _text(spread, _language()) if _language() != "en" else None
    return (own and own.name) or gettext(spread.name)


def spread_description(spread: Spread) -> str:
    own = _text(spread, _language()) if _language() != "en" else None
    return (own and own.description) or spread.description


def position_name(spread: Spread, index: int, name: str) -> str:
    own = _text(spread, _language()) if _language() != "en" else None
    return (own and own.position_name(index)) or gettext(name)

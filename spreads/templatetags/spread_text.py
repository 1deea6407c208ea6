"""{% load spread_text %}: a spread's words in the page's language (spreads/display.py)."""

from django import template

from spreads import display

register = template.Library()


@register.filter
def spread_name(spread):
    return display.spread_name(spread)


@register.filter
def spread_description(spread):
    return display.spread_description(spread)


@register.simple_tag
def position_name(spread, index, name):
    return display.position_name(spread, index, name)

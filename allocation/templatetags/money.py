"""{% load money %}: {{ total|usd }} for totals, {{ call.cost_usd|usd_exact }} for one call."""

from django import template

from allocation.money import usd_exact, usd_total

register = template.Library()
register.filter("usd", usd_total)
register.filter("usd_exact", usd_exact)

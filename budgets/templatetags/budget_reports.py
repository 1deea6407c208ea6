"""The cost reports page's budget parts, self-contained so the page only includes them:
{% budget_alert_banner %} near the top, {% budget_section %} among the tables."""

from django import template
from django.utils import timezone

from budgets.selectors import budget_standings, current_alerts

register = template.Library()


@register.inclusion_tag("reports/_budget_alerts.html")
def budget_alert_banner():
    return {"alerts": current_alerts()}


@register.inclusion_tag("reports/_budgets.html")
def budget_section():
    now = timezone.now()
    return {
        "rows": [
            {"standing": s, "forecast_usd": s.forecast_usd(now)} for s in budget_standings(now=now)
        ]
    }

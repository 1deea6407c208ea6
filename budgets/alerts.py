"""Soft thresholds: when a budget's spending crosses one, staff hear about it once per
period: a BudgetAlert row (admin and reports page), and an email through Django's mail
settings once the spending is committed. When a budget first makes an admitted reading wait
for money, staff hear about that once per period too (an alert at 100%)."""

import logging
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction

from budgets.models import BudgetAlert, BudgetLedger

logger = logging.getLogger(__name__)

# The alert a waiting reading raises: the limit itself, which no soft threshold may be.
WAITING = Decimal(100)


def raise_alerts(ledger: BudgetLedger) -> list[BudgetAlert]:
    """Record every threshold the ledger's spending has crossed and no alert yet covers.
    Called with the ledger row locked, so two processes cannot both raise the same alert
    (and the unique constraint would refuse a second row anyway)."""
    budget = ledger.budget
    spent_percent = ledger.spent_usd * 100 / budget.limit_usd
    crossed = [t for t in budget.thresholds if spent_percent >= t]
    if not crossed:
        return []
    already = set(
        BudgetAlert.objects.filter(budget=budget, period_start=ledger.period_start).values_list(
            "threshold_percent", flat=True
        )
    )
    raised = [
        BudgetAlert.objects.create(
            budget=budget,
            period_start=ledger.period_start,
            threshold_percent=threshold,
            spent_usd=ledger.spent_usd,
            limit_usd=budget.limit_usd,
        )
        for threshold in crossed
        if threshold not in already
    ]
    for alert in raised:
        transaction.on_commit(lambda alert=alert: email_staff(alert.pk))
    return raised


def raise_waiting_alert(standing) -> None:
    """An admitted reading waits because this budget (a BudgetStanding) has no room for its
    next phase: tell staff, once per period."""
    alert, created = BudgetAlert.objects.get_or_create(
        budget=standing.budget,
        period_start=standing.period_start,
        threshold_percent=WAITING,
        defaults={"spent_usd": standing.spent_usd, "limit_usd": standing.limit_usd},
    )
    if created:
        logger.warning("readings wait for budget %s", standing.budget)
        transaction.on_commit(lambda: email_staff(alert.pk))


def alert_message(alert: BudgetAlert) -> tuple[str, str]:
    budget = alert.budget
    start, resets = budget.bounds(alert.period_start)
    if alert.threshold_percent == WAITING:
        subject = f"[tarot] Readings are waiting for budget {budget}"
        body = (
            f"{budget} ({budget.scope_label}, {budget.get_period_display()}) has no room for "
            f"the next step of a reading it admitted: {alert.spent_usd:.4f} USD of its "
            f"{alert.limit_usd} USD limit spent, the rest claimed by readings in progress. "
            "Waiting readings go on as money is released, when the limit is raised, or when "
            f"the period resets at {resets:%Y-%m-%d %H:%M} UTC.\n\n"
            "Raise the limit or switch the budget off in the admin."
        )
        return subject, body
    threshold = f"{alert.threshold_percent.normalize():f}"
    subject = f"[tarot] Budget {budget} has passed {threshold}% of its limit"
    body = (
        f"{budget} ({budget.scope_label}, {budget.get_period_display()}) has spent "
        f"{alert.spent_usd:.4f} USD of its {alert.limit_usd} USD limit "
        f"({alert.spent_usd * 100 / alert.limit_usd:.1f}%) in the period from "
        f"{start:%Y-%m-%d} UTC. It resets at {resets:%Y-%m-%d %H:%M} UTC.\n\n"
        "Readings that would go over the limit are refused with HTTP 402 until then. "
        "Raise the limit or switch the budget off in the admin."
    )
    return subject, body


def email_staff(alert_id) -> None:
    """Email every active staff member with an address. A mail server that fails is logged,
    never allowed to fail the reading whose call crossed the threshold."""
    alert = BudgetAlert.objects.select_related("budget").get(pk=alert_id)
    recipients = sorted(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return
    subject, body = alert_message(alert)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except OSError:
        logger.exception("could not email the alert for %s", alert)
        return
    BudgetAlert.objects.filter(pk=alert.pk).update(emailed_to=", ".join(recipients))

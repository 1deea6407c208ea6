"""Spend control: budgets and what is reserved and spent against them, alerts, and the
throttle overrides and exemptions staff grant.

Money is Decimal. Every change to a period's spent or reserved happens under a row lock on
its BudgetLedger (see budgets/services.py), so no two processes can both take the last dollar.
"""

import calendar
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from budgets.rates import rate_problem

DEFAULT_THRESHOLDS = "80, 95"
MONEY = dict(max_digits=14, decimal_places=8)


class BudgetScope(models.TextChoices):
    PLATFORM = "platform", "The whole platform"
    USER = "user", "One user"
    SPREAD = "spread", "One spread"


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Day (UTC)"
    MONTH = "month", "Calendar month (UTC)"


def parse_thresholds(text: str) -> list[Decimal]:
    """ "80, 95" -> [Decimal(80), Decimal(95)]; ValueError names the first bad entry."""
    values = []
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip().rstrip("%").strip()
        if not part:
            continue
        try:
            value = Decimal(part)
        except InvalidOperation:
            raise ValueError(f"{part!r} is not a number.") from None
        if not value.is_finite() or not 0 < value < 100:
            raise ValueError(f"{part}% is outside 0-100%: a threshold warns before the limit.")
        values.append(value)
    return sorted(set(values))


def period_bounds(period: str, at: datetime) -> tuple[datetime, datetime]:
    """The UTC period containing `at`: [start, end)."""
    at = at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAY:
        return day, day + timedelta(days=1)
    start = day.replace(day=1)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days)


class Budget(models.Model):
    name = models.CharField(max_length=100, blank=True, help_text="Shown in alerts and reports.")
    scope = models.CharField(max_length=10, choices=BudgetScope.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="budgets",
        help_text="Only for a user budget.",
    )
    spread = models.ForeignKey(
        "spreads.Spread",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="budgets",
        help_text="Only for a spread budget.",
    )
    period = models.CharField(max_length=10, choices=BudgetPeriod.choices)
    limit_usd = models.DecimalField("limit (USD)", max_digits=14, decimal_places=4)
    alert_thresholds = models.CharField(
        max_length=100,
        default=DEFAULT_THRESHOLDS,
        help_text="Percentages of the limit, comma-separated; staff are told once per period "
        "when spending crosses each.",
    )
    is_active = models.BooleanField("on", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "name", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(limit_usd__gt=0), name="budget_limit_positive"),
            models.CheckConstraint(
                condition=(
                    Q(scope=BudgetScope.PLATFORM, user__isnull=True, spread__isnull=True)
                    | Q(scope=BudgetScope.USER, user__isnull=False, spread__isnull=True)
                    | Q(scope=BudgetScope.SPREAD, user__isnull=True, spread__isnull=False)
                ),
                name="budget_scope_matches_target",
            ),
        ]

    def __str__(self):
        return self.name or f"{self.scope_label}, per {self.period}"

    @property
    def scope_label(self) -> str:
        if self.scope == BudgetScope.USER and self.user_id:
            return f"User {self.user}"
        if self.scope == BudgetScope.SPREAD and self.spread_id:
            return f"Spread {self.spread}"
        return "Platform"

    @property
    def thresholds(self) -> list[Decimal]:
        try:
            return parse_thresholds(self.alert_thresholds)
        except ValueError:
            return []

    def bounds(self, at: datetime) -> tuple[datetime, datetime]:
        return period_bounds(self.period, at)

    def clean(self):
        errors = {}
        if self.limit_usd is not None and self.limit_usd <= 0:
            errors["limit_usd"] = "The limit must be more than 0 USD (switch the budget off "
            "instead of setting it to nothing)."
        try:
            parse_thresholds(self.alert_thresholds)
        except ValueError as exc:
            errors["alert_thresholds"] = str(exc)
        if self.scope == BudgetScope.USER:
            if not self.user_id:
                errors["user"] = "A user budget needs the user it applies to."
            if self.spread_id:
                errors["spread"] = "A user budget applies to every spread: leave this empty."
        elif self.scope == BudgetScope.SPREAD:
            if not self.spread_id:
                errors["spread"] = "A spread budget needs the spread it applies to."
            if self.user_id:
                errors["user"] = "A spread budget applies to every user: leave this empty."
        elif self.scope == BudgetScope.PLATFORM:
            if self.user_id:
                errors["user"] = "A platform budget applies to everyone: leave this empty."
            if self.spread_id:
                errors["spread"] = "A platform budget applies to every spread: leave this empty."
        if errors:
            raise ValidationError(errors)


class BudgetLedger(models.Model):
    """A budget's spent and reserved money in one period: the row that reservations lock."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="ledgers")
    period_start = models.DateTimeField()
    spent_usd = models.DecimalField(**MONEY, default=Decimal(0))
    reserved_usd = models.DecimalField(**MONEY, default=Decimal(0))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_start"], name="one_ledger_per_period"
            ),
            models.CheckConstraint(condition=Q(reserved_usd__gte=0), name="ledger_reserved_gte_0"),
        ]

    def __str__(self):
        return f"{self.budget} from {self.period_start:%Y-%m-%d}"


class ReservationState(models.TextChoices):
    HELD = "held", "Held"
    RELEASED = "released", "Released"


class Reservation(models.Model):
    """One reading's claim on one budget's period until the reading ends: the larger of what
    its current step could still spend at worst (held_usd) and what it is still expected to
    spend (expected_usd less spent_usd); the ledger's reserved money is the sum of its
    readings' claims (budgets/services.py). It belongs to the reading, so a resumed reading
    keeps it."""

    reading = models.ForeignKey(
        "readings.Reading",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reservations",
        help_text="Empty once the reading is deleted; its hold then expires.",
    )
    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="reservations")
    ledger = models.ForeignKey(BudgetLedger, on_delete=models.CASCADE, related_name="reservations")
    worst_case_usd = models.DecimalField(
        **MONEY,
        help_text="The whole reading at worst: every task at max_tokens, on the dearest "
        "model it may fall back to.",
    )
    expected_usd = models.DecimalField(
        **MONEY,
        default=Decimal(0),
        help_text="What the reading was admitted at: its expected cost with the margin.",
    )
    largest_step_usd = models.DecimalField(
        **MONEY,
        default=Decimal(0),
        help_text="The worst case of its dearest phase: room later admissions leave it.",
    )
    spent_usd = models.DecimalField(**MONEY, default=Decimal(0))
    held_usd = models.DecimalField(
        **MONEY, help_text="What the step now running could still spend at worst."
    )
    state = models.CharField(
        max_length=10, choices=ReservationState.choices, default=ReservationState.HELD
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["reading", "budget"],
                condition=Q(reading__isnull=False),
                name="one_reservation_per_reading_and_budget",
            ),
            models.CheckConstraint(condition=Q(held_usd__gte=0), name="reservation_held_gte_0"),
        ]
        indexes = [models.Index(fields=["ledger", "state"])]

    def __str__(self):
        return f"{self.claim_usd} claimed on {self.budget}"

    @property
    def claim_usd(self) -> Decimal:
        """What the reading keeps from others on the budget now (0 once released)."""
        if self.state != ReservationState.HELD:
            return Decimal(0)
        return max(self.held_usd, self.expected_usd - self.spent_usd, Decimal(0))


class CostEstimate(models.Model):
    """What a reading was expected to cost when it was created, and its worst case."""

    reading = models.OneToOneField(
        "readings.Reading", on_delete=models.CASCADE, related_name="cost_estimate"
    )
    expected_usd = models.DecimalField(**MONEY)
    worst_case_usd = models.DecimalField(**MONEY)
    sources = models.JSONField(
        default=dict, blank=True, help_text="Where each task's expected cost came from."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.expected_usd} expected, {self.worst_case_usd} at worst"


class BudgetAlert(models.Model):
    """A soft threshold crossed: one row per budget, period and threshold, never two."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateTimeField()
    threshold_percent = models.DecimalField(max_digits=5, decimal_places=2)
    spent_usd = models.DecimalField(**MONEY)
    limit_usd = models.DecimalField(max_digits=14, decimal_places=4)
    emailed_to = models.TextField(blank=True, help_text="The staff addresses told by email.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_start", "threshold_percent"],
                name="one_alert_per_threshold_and_period",
            )
        ]

    def __str__(self):
        return f"{self.budget}: {self.threshold_percent:g}% reached"


class QuotaOverride(models.Model):
    """A user's or group's own reading-creation rate, or an exemption from throttles and
    budgets (e.g. for a benchmark account)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="quota_override",
    )
    group = models.OneToOneField(
        "auth.Group",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="quota_override",
    )
    reading_rate = models.CharField(
        max_length=20,
        blank=True,
        help_text="Readings a user may create, e.g. 20/min, 100/hour or 500/day. Empty: the "
        "default from settings.",
    )
    exempt_from_throttles = models.BooleanField(
        default=False, help_text="Create readings at any rate."
    )
    exempt_from_budgets = models.BooleanField(
        default=False,
        help_text="Readings reserve nothing and no budget refuses them (their calls are still "
        "logged and priced). For accounts such as a benchmark's.",
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False, group__isnull=True))
                | Q(user__isnull=True, group__isnull=False),
                name="quota_override_user_xor_group",
            )
        ]

    def __str__(self):
        who = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{who}: {self.reading_rate or 'default rate'}"

    def clean(self):
        errors = {}
        if bool(self.user_id) == bool(self.group_id):
            errors["user"] = "Choose either a user or a group (one, not both)."
        if self.reading_rate:
            problem = rate_problem(self.reading_rate)
            if problem:
                errors["reading_rate"] = problem
        elif not (self.exempt_from_throttles or self.exempt_from_budgets):
            errors["reading_rate"] = "Give a rate (e.g. 20/min), or tick an exemption."
        if errors:
            raise ValidationError(errors)


class ThrottleBucket(models.Model):
    """One client's bucket of one throttle (budgets/rate_buckets.py): when it is full again."""

    key = models.CharField(max_length=200, primary_key=True)
    full_at = models.FloatField(
        help_text="Unix time at which the bucket is full again (GCRA's theoretical arrival time)."
    )

    def __str__(self):
        return self.key

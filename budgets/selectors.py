"""Reads for spend control: which budgets apply, where each stands, who is exempt."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from allocation.staff_config import StaffTable
from budgets.models import Budget, BudgetAlert, BudgetLedger, BudgetScope, QuotaOverride
from budgets.rates import most_generous


@dataclass(frozen=True)
class Quota:
    reading_rate: str = ""
    exempt_from_throttles: bool = False
    exempt_from_budgets: bool = False


def _by_holder(rows) -> tuple[dict, dict]:
    users, groups = {}, {}
    for row in rows:
        if row.user_id is not None:
            users[row.user_id] = row
        else:
            groups[row.group_id] = row
    return users, groups


# Staff's overrides and budgets: every new reading reads them (allocation/staff_config.py).
_overrides = StaffTable(QuotaOverride, _by_holder)
_budgets = StaffTable(
    Budget, lambda rows: list(rows.filter(is_active=True).select_related("user", "spread"))
)


def quota_for(user) -> Quota:
    """The user's own override wins; else their groups' (exempt if any group is, the most
    generous rate among them); else nothing, and settings' default applies."""
    if user is None or not user.is_authenticated:
        return Quota()
    by_user, by_group = _overrides.get()
    own = by_user.get(user.pk)
    if own is not None:
        return Quota(own.reading_rate, own.exempt_from_throttles, own.exempt_from_budgets)
    if not by_group:
        return Quota()
    groups = [by_group[g] for g in user.groups.values_list("pk", flat=True) if g in by_group]
    if not groups:
        return Quota()
    return Quota(
        most_generous([g.reading_rate for g in groups if g.reading_rate]),
        any(g.exempt_from_throttles for g in groups),
        any(g.exempt_from_budgets for g in groups),
    )


def budgets_applying(*, owner, spread) -> list[Budget]:
    """Every switched-on budget a reading of `owner` on `spread` must fit in."""
    spread_id = spread.pk if spread is not None else None
    owner_id = owner.pk if owner is not None else None

    def applies(budget: Budget) -> bool:
        if budget.scope == BudgetScope.SPREAD:
            return spread_id is not None and budget.spread_id == spread_id
        if budget.scope == BudgetScope.USER:
            return owner_id is not None and budget.user_id == owner_id
        return budget.scope == BudgetScope.PLATFORM

    return sorted((b for b in _budgets.get() if applies(b)), key=lambda budget: budget.pk)


@dataclass(frozen=True)
class BudgetStanding:
    budget: Budget
    period_start: datetime
    resets_at: datetime
    spent_usd: Decimal
    reserved_usd: Decimal

    @property
    def limit_usd(self) -> Decimal:
        return self.budget.limit_usd

    @property
    def remaining_usd(self) -> Decimal:
        return max(Decimal(0), self.limit_usd - self.spent_usd - self.reserved_usd)

    @property
    def spent_percent(self) -> Decimal:
        return self.spent_usd * 100 / self.limit_usd

    def forecast_usd(self, now: datetime) -> Decimal:
        """Spending so far, carried on at the same pace to the end of the period."""
        elapsed = (now - self.period_start).total_seconds()
        whole = (self.resets_at - self.period_start).total_seconds()
        if elapsed <= 0:
            return self.spent_usd
        return self.spent_usd * Decimal(whole) / Decimal(elapsed)

    def has_room(self, amount: Decimal) -> bool:
        """Whether `amount` more can be claimed without going over the limit."""
        return self.spent_usd + self.reserved_usd + amount <= self.limit_usd

    def as_dict(self) -> dict:
        return {
            "id": self.budget.pk,
            "name": str(self.budget),
            "scope": self.budget.scope,
            "period": self.budget.period,
            "period_start": self.period_start.isoformat(),
            "resets_at": self.resets_at.isoformat(),
            "limit_usd": str(self.limit_usd),
            "spent_usd": str(self.spent_usd),
            "reserved_usd": str(self.reserved_usd),
            "remaining_usd": str(self.remaining_usd),
        }


def standing(budget: Budget, *, now: datetime | None = None) -> BudgetStanding:
    now = now or timezone.now()
    start = budget.bounds(now)[0]
    ledger = BudgetLedger.objects.filter(budget=budget, period_start=start).first()
    return _standing(budget, now, ledger)


def _standing(budget: Budget, now: datetime, ledger: BudgetLedger | None) -> BudgetStanding:
    start, end = budget.bounds(now)
    return BudgetStanding(
        budget=budget,
        period_start=start,
        resets_at=end,
        spent_usd=ledger.spent_usd if ledger else Decimal(0),
        reserved_usd=ledger.reserved_usd if ledger else Decimal(0),
    )


def budget_standings(*, now: datetime | None = None) -> list[BudgetStanding]:
    """Every budget (on or off) with its current period's figures, for the reports page."""
    now = now or timezone.now()
    budgets = list(Budget.objects.select_related("user", "spread").order_by("-is_active", "pk"))
    starts = {b.pk: b.bounds(now)[0] for b in budgets}
    ledgers = {
        (ledger.budget_id, ledger.period_start): ledger
        for ledger in BudgetLedger.objects.filter(
            budget__in=budgets, period_start__in=set(starts.values())
        )
    }
    return [_standing(b, now, ledgers.get((b.pk, starts[b.pk]))) for b in budgets]


def current_alerts(*, now: datetime | None = None) -> list[BudgetAlert]:
    """Alerts raised in their budget's current period: the reports page's banner."""
    now = now or timezone.now()
    alerts = BudgetAlert.objects.select_related("budget").order_by("-created_at")[:200]
    return [a for a in alerts if a.period_start == a.budget.bounds(now)[0]]


def estimate_answer(request, estimate, room_usd: Decimal) -> dict:
    """An estimate as the API gives it: the figures, and whether each applicable budget has
    the room to admit the reading now. `request` is a readings.services.ReadingRequest."""
    exempt = quota_for(request.owner).exempt_from_budgets
    budgets = [] if exempt else budgets_applying(owner=request.owner, spread=request.spread)
    now = timezone.now()
    checks = []
    for budget in budgets:
        current = standing(budget, now=now)
        checks.append({**current.as_dict(), "allows": current.has_room(room_usd)})
    return {
        "spread": request.spread.slug,
        "expected_usd": estimate.expected_usd,
        "worst_case_usd": estimate.worst_case_usd,
        "room_needed_usd": room_usd,
        "exempt_from_budgets": exempt,
        "allowed": all(check["allows"] for check in checks),
        "budgets": checks,
        "tasks": estimate.tasks,
    }

"""Staff edit budgets and quota overrides; ledgers, reservations and alerts are read-only
records of what the services did."""

from django.contrib import admin
from django.utils import timezone

from allocation.admin import ReadOnlyAdmin
from budgets.models import Budget, BudgetAlert, BudgetLedger, QuotaOverride, Reservation
from budgets.selectors import standing


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "scope",
        "target",
        "period",
        "limit_usd",
        "spent_now",
        "reserved_now",
        "alert_thresholds",
        "is_active",
    ]
    list_filter = ["scope", "period", "is_active"]
    list_select_related = ["user", "spread"]
    autocomplete_fields = ["user"]
    fields = [
        "name",
        "scope",
        "user",
        "spread",
        "period",
        "limit_usd",
        "alert_thresholds",
        "is_active",
    ]

    @admin.display(description="applies to")
    def target(self, budget):
        return budget.user or budget.spread or "everything"

    @admin.display(description="spent this period (USD)")
    def spent_now(self, budget):
        return f"{standing(budget, now=timezone.now()).spent_usd:.4f}"

    @admin.display(description="reserved now (USD)")
    def reserved_now(self, budget):
        return f"{standing(budget, now=timezone.now()).reserved_usd:.4f}"


@admin.register(BudgetLedger)
class BudgetLedgerAdmin(ReadOnlyAdmin):
    list_display = ["budget", "period_start", "spent_usd", "reserved_usd", "updated_at"]
    list_filter = ["budget"]
    list_select_related = ["budget"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = [
        "reading",
        "budget",
        "state",
        "worst_case_usd",
        "spent_usd",
        "held_usd",
        "created_at",
        "expires_at",
    ]
    list_filter = ["state", "budget"]
    list_select_related = ["budget", "reading__spread"]
    show_full_result_count = False


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = [
        "budget",
        "threshold_percent",
        "spent_usd",
        "limit_usd",
        "period_start",
        "created_at",
        "emailed_to",
    ]
    list_filter = ["budget"]
    list_select_related = ["budget"]


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "reading_rate",
        "exempt_from_throttles",
        "exempt_from_budgets",
        "note",
    ]
    list_select_related = ["user", "group"]
    autocomplete_fields = ["user"]

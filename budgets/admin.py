"""Staff edit budgets and quota overrides; ledgers, reservations and alerts are read-only
records of what the services did."""

from django.contrib import admin
from django.utils import timezone

from allocation.admin import ReadOnlyAdmin
from allocation.money import usd_exact, usd_total
from budgets.alerts import WAITING
from budgets.models import Budget, BudgetAlert, BudgetLedger, QuotaOverride, Reservation
from budgets.selectors import standing


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "scope",
        "target",
        "period",
        "limit",
        "spent_now",
        "reserved_now",
        "counts_from",
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

    @admin.display(description="limit", ordering="limit_usd")
    def limit(self, budget):
        return usd_total(budget.limit_usd)

    @admin.display(description="spent this period")
    def spent_now(self, budget):
        return usd_total(standing(budget, now=timezone.now()).spent_usd)

    @admin.display(description="reserved now")
    def reserved_now(self, budget):
        return usd_total(standing(budget, now=timezone.now()).reserved_usd)

    @admin.display(description="counts spend from (UTC)")
    def counts_from(self, budget):
        # A budget counts what is spent after it was made: in its first period, not the
        # whole period's spend.
        start = max(budget.bounds(timezone.now())[0], budget.created_at)
        return f"{start:%Y-%m-%d %H:%M}"


@admin.register(BudgetLedger)
class BudgetLedgerAdmin(ReadOnlyAdmin):
    list_display = ["budget", "period_start", "spent", "reserved", "updated_at"]

    @admin.display(description="spent", ordering="spent_usd")
    def spent(self, ledger):
        return usd_total(ledger.spent_usd)

    @admin.display(description="reserved", ordering="reserved_usd")
    def reserved(self, ledger):
        return usd_total(ledger.reserved_usd)

    list_filter = ["budget"]
    list_select_related = ["budget"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = [
        "reading",
        "budget",
        "state",
        "reading_status",
        "claimed",
        "expected",
        "held",
        "spent",
        "worst_case",
        "created_at",
        "expires_at",
    ]
    list_filter = ["state", "budget"]
    list_select_related = ["budget", "reading__spread"]
    show_full_result_count = False

    # One reading's hold is cents or less: every stored digit.
    @admin.display(description="worst case", ordering="worst_case_usd")
    def worst_case(self, reservation):
        return usd_exact(reservation.worst_case_usd)

    @admin.display(description="spent", ordering="spent_usd")
    def spent(self, reservation):
        return usd_exact(reservation.spent_usd)

    @admin.display(description="held by its phase", ordering="held_usd")
    def held(self, reservation):
        return usd_exact(reservation.held_usd)

    @admin.display(description="admitted at", ordering="expected_usd")
    def expected(self, reservation):
        return usd_exact(reservation.expected_usd)

    @admin.display(description="claimed now")
    def claimed(self, reservation):
        return usd_exact(reservation.claim_usd)

    @admin.display(description="reading")
    def reading_status(self, reservation):
        # A reading waiting for budget stands out here, next to what it holds.
        return reservation.reading.get_status_display() if reservation.reading else "deleted"


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = [
        "budget",
        "threshold",
        "spent",
        "limit",
        "period_start",
        "created_at",
        "emailed_to",
    ]
    list_filter = ["budget"]
    list_select_related = ["budget"]

    @admin.display(description="spent", ordering="spent_usd")
    def spent(self, alert):
        return usd_total(alert.spent_usd)

    @admin.display(description="threshold", ordering="threshold_percent")
    def threshold(self, alert):
        if alert.threshold_percent == WAITING:
            return "100%: readings waiting for budget"
        return f"{alert.threshold_percent.normalize():f}%"

    @admin.display(description="limit", ordering="limit_usd")
    def limit(self, alert):
        return usd_total(alert.limit_usd)


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

"""Reserve, settle, release: how budgets govern spend across every process.

- reserve_for_reading() runs inside the transaction that creates the reading. It locks the
  current period's ledger row of every budget that applies (in id order, so two creations
  never deadlock), refuses if any would go over its limit, else adds the reading's worst case
  to each ledger's reserved money. The lock is held until the reading is committed, so two
  processes can never both take the last dollar, and a refused reading leaves nothing behind.
- settle_call() moves a call's real cost from reserved to spent, in the transaction that
  logs the call: a resumed reading neither loses nor double-counts a call.
- release_reading() gives back what is still held when the reading ends, in the transaction
  that marks it ended.
- A hold whose reading is gone (deleted), ended without releasing, or past its expiry is
  released the next time its ledger is locked (or by `manage.py expire_reservations`).
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from budgets.alerts import raise_alerts
from budgets.models import Budget, BudgetLedger, Reservation, ReservationState
from budgets.selectors import BudgetStanding, _standing, budgets_applying

logger = logging.getLogger(__name__)


@dataclass
class BudgetExceeded(Exception):
    """The reading's worst case does not fit in this budget's period."""

    standing: BudgetStanding
    needed_usd: Decimal

    def __str__(self):
        s = self.standing
        return (
            f"Budget {s.budget} ({s.budget.get_period_display()}) cannot take this reading: "
            f"its worst case is {self.needed_usd:.4f} USD and {s.remaining_usd:.4f} of "
            f"{s.limit_usd} remain until {s.resets_at:%Y-%m-%d %H:%M} UTC."
        )

    def as_dict(self) -> dict:
        return {
            "detail": str(self),
            "budget": self.standing.as_dict(),
            "needed_usd": str(self.needed_usd.quantize(Decimal("0.00000001"))),
        }


def reservation_ttl() -> timedelta:
    return timedelta(seconds=settings.BUDGET_RESERVATION_TTL_S)


def _ledgers_that_allow(budgets: list[Budget], worst_case_usd: Decimal, now):
    """The budgets' current ledgers, locked, once each has room for `worst_case_usd`;
    BudgetExceeded naming the first that has not."""
    ledgers = _locked_ledgers(budgets, now)
    _expire_holds(list(ledgers.values()), now)
    for budget in budgets:
        standing = _standing(budget, now, ledgers[budget.pk])
        if not standing.allows(worst_case_usd):
            raise BudgetExceeded(standing, worst_case_usd)
    return ledgers


def _locked_ledgers(budgets: list[Budget], now) -> dict[int, BudgetLedger]:
    """The current period's ledger of each budget, created if missing, locked in id order."""
    starts = {b.pk: b.bounds(now)[0] for b in budgets}
    BudgetLedger.objects.bulk_create(
        [BudgetLedger(budget=b, period_start=starts[b.pk]) for b in budgets],
        ignore_conflicts=True,
    )
    wanted = Q()
    for budget_id, start in starts.items():
        wanted |= Q(budget_id=budget_id, period_start=start)
    locked = BudgetLedger.objects.select_for_update().filter(wanted).order_by("pk")
    return {ledger.budget_id: ledger for ledger in locked}


def reserve_for_reading(*, reading, worst_case_usd: Decimal) -> list[Reservation]:
    """Hold `worst_case_usd` against every budget that applies to `reading`, or raise
    BudgetExceeded naming the first budget that cannot take it. Call inside the transaction
    that creates the reading."""
    budgets = budgets_applying(owner=reading.owner, spread=reading.spread)
    if not budgets:
        return []
    now = timezone.now()
    with transaction.atomic():
        ledgers = _ledgers_that_allow(budgets, worst_case_usd, now)
        reservations = []
        for budget in budgets:
            ledger = ledgers[budget.pk]
            ledger.reserved_usd += worst_case_usd
            ledger.save(update_fields=["reserved_usd", "updated_at"])
            reservations.append(
                Reservation(
                    reading=reading,
                    budget=budget,
                    ledger=ledger,
                    worst_case_usd=worst_case_usd,
                    held_usd=worst_case_usd,
                    expires_at=now + reservation_ttl(),
                )
            )
        return Reservation.objects.bulk_create(reservations)


def reserve_for_retry(*, reading, worst_case_usd: Decimal) -> None:
    """A failed reading goes again: hold `worst_case_usd` against every budget that applies
    now, in this period, or raise BudgetExceeded. Its reservation on a budget is held again
    (one per reading and budget); what it spent before stays spent, and its calls settle
    against the new hold as before."""
    budgets = budgets_applying(owner=reading.owner, spread=reading.spread)
    if not budgets:
        return
    now = timezone.now()
    with transaction.atomic():
        ledgers = _ledgers_that_allow(budgets, worst_case_usd, now)
        earlier = {
            r.budget_id: r
            for r in Reservation.objects.select_for_update().filter(
                reading=reading, state=ReservationState.RELEASED
            )
        }
        for budget in budgets:
            ledger = ledgers[budget.pk]
            ledger.reserved_usd += worst_case_usd
            ledger.save(update_fields=["reserved_usd", "updated_at"])
            reservation = earlier.get(budget.pk) or Reservation(reading=reading, budget=budget)
            reservation.ledger = ledger
            reservation.worst_case_usd = reservation.spent_usd + worst_case_usd
            reservation.held_usd = worst_case_usd
            reservation.state = ReservationState.HELD
            reservation.released_at = None
            reservation.expires_at = now + reservation_ttl()
            reservation.save()


def _locked_reservations(reading_id) -> list[Reservation]:
    """The reading's reservations, their ledgers locked first (in id order, as reserving
    does), then the reservations themselves."""
    ledger_ids = list(
        Reservation.objects.filter(reading_id=reading_id).values_list("ledger_id", flat=True)
    )
    if not ledger_ids:
        return []
    list(BudgetLedger.objects.select_for_update().filter(pk__in=ledger_ids).order_by("pk"))
    return list(
        Reservation.objects.select_for_update(of=("self",))
        .filter(reading_id=reading_id)
        .select_related("ledger", "budget")
        .order_by("ledger_id")
    )


def settle_call(*, reading_id, cost_usd: Decimal) -> None:
    """A call of the reading cost `cost_usd`: it is now spent, and held no longer (the hold
    never drops below nothing; a reading that costs more than its worst case still
    finishes, and its spend still counts)."""
    if not cost_usd:
        return
    with transaction.atomic():
        for reservation in _locked_reservations(reading_id):
            ledger = reservation.ledger
            reservation.spent_usd += cost_usd
            ledger.spent_usd += cost_usd
            if reservation.state == ReservationState.HELD:
                held = max(Decimal(0), reservation.worst_case_usd - reservation.spent_usd)
                ledger.reserved_usd = max(
                    Decimal(0), ledger.reserved_usd - (reservation.held_usd - held)
                )
                reservation.held_usd = held
            reservation.save(update_fields=["spent_usd", "held_usd"])
            ledger.save(update_fields=["spent_usd", "reserved_usd", "updated_at"])
            raise_alerts(ledger)


def release_reading(reading_id) -> None:
    """The reading ended: what it still holds goes back to its budgets."""
    with transaction.atomic():
        now = timezone.now()
        for reservation in _locked_reservations(reading_id):
            if reservation.state == ReservationState.HELD:
                _release(reservation, reservation.ledger, now)


def _release(reservation: Reservation, ledger: BudgetLedger, now) -> None:
    ledger.reserved_usd = max(Decimal(0), ledger.reserved_usd - reservation.held_usd)
    ledger.save(update_fields=["reserved_usd", "updated_at"])
    reservation.held_usd = Decimal(0)
    reservation.state = ReservationState.RELEASED
    reservation.released_at = now
    reservation.save(update_fields=["held_usd", "state", "released_at"])


def _expire_holds(ledgers: list[BudgetLedger], now) -> int:
    """Release holds on these ledgers (locked by the caller, which is what guards their
    reservations too) whose reading is gone, has ended, or is past its expiry."""
    stale = list(
        Reservation.objects.filter(ledger__in=ledgers, state=ReservationState.HELD).filter(
            Q(reading__isnull=True)
            # Ended, done or failed: only an ending sets finished_at (readings/store.py).
            | Q(reading__finished_at__isnull=False)
            | Q(expires_at__lt=now)
        )
    )
    by_id = {ledger.pk: ledger for ledger in ledgers}
    for reservation in stale:
        logger.info("releasing an orphaned hold of %s on %s", reservation.held_usd, reservation)
        _release(reservation, by_id[reservation.ledger_id], now)
    return len(stale)


def expire_reservations() -> int:
    """Release every orphaned or expired hold, ledger by ledger; returns how many."""
    now = timezone.now()
    released = 0
    ledger_ids = set(
        Reservation.objects.filter(state=ReservationState.HELD).values_list("ledger_id", flat=True)
    )
    for ledger_id in sorted(ledger_ids):
        with transaction.atomic():
            ledger = BudgetLedger.objects.select_for_update().get(pk=ledger_id)
            released += _expire_holds([ledger], now)
    return released

"""Admit, hold, settle, release: how budgets govern spend across every process.

A reading's claim on a budget is the larger of two figures (Reservation.claim_usd):
- what the step now running could still spend at worst (held_usd): every call of the phase
  at max_tokens on the dearest model it may fall back to, less what the phase has spent;
- what the reading is still expected to spend (expected_usd, its estimate with the admission
  margin, less what it has spent).
A ledger's reserved money is the sum of its readings' claims, and no claim grows unless
spent + reserved stays within the limit, so a budget is never exceeded; and a reading is
not failed by its budget once admitted: a step that does not fit waits for money instead.

- reserve_for_reading() admits a reading, inside the transaction that creates it, when its
  expected cost with the margin fits, and its largest step's worst case fits beside every
  other reading's claim (so it can finish once the others have). It locks the period's ledger
  row of every budget that applies (in id order, so two creations never deadlock) until the
  reading is committed: two processes can never both take the last dollar, and a refused
  reading leaves nothing behind. An economy reading holds its whole worst case from the
  start: its batches are not run phase by phase under the engine's eye.
- hold_for_step() raises the claim to the next phase's worst case just before the phase
  starts (BudgetExceeded, changing nothing, when it does not fit now).
- settle_call() moves a call's real cost from the claim to spent, in the transaction that
  logs the call: a resumed reading neither loses nor double-counts a call.
- release_reading() gives back the claim when the reading ends, in the transaction that
  marks it ended.
- A claim whose reading is gone (deleted), ended without releasing, or past its expiry is
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

from budgets.alerts import raise_alerts, raise_waiting_alert
from budgets.models import Budget, BudgetLedger, Reservation, ReservationState
from budgets.selectors import BudgetStanding, _standing, budgets_applying

logger = logging.getLogger(__name__)


@dataclass
class BudgetExceeded(Exception):
    """The reading (or its next step) does not fit in this budget's period now."""

    standing: BudgetStanding
    needed_usd: Decimal

    def __str__(self):
        s = self.standing
        return (
            f"Budget {s.budget} ({s.budget.get_period_display()}) cannot take this reading: "
            f"it needs room for {self.needed_usd:.4f} USD and {s.remaining_usd:.4f} of "
            f"{s.limit_usd} remain until {s.resets_at:%Y-%m-%d %H:%M} UTC."
        )

    def as_dict(self) -> dict:
        return {
            "detail": str(self),
            "budget": self.standing.as_dict(),
            "needed_usd": str(self.needed_usd.quantize(Decimal("0.00000001"))),
        }


@dataclass(frozen=True)
class Admission:
    """What a reading asks of its budgets when it is created (or retried)."""

    expected_usd: Decimal  # its expected cost, with the admission margin
    largest_step_usd: Decimal  # the worst case of its dearest phase: room it must be able to get
    worst_case_usd: Decimal  # the whole reading at worst
    hold_whole: bool = False  # an economy reading: held at its worst case from the start

    @property
    def claim_usd(self) -> Decimal:
        """What it claims from the moment it is admitted."""
        return self.worst_case_usd if self.hold_whole else self.expected_usd

    @property
    def headroom_usd(self) -> Decimal:
        """What must stay free beside its claim for its dearest phase to fit."""
        return (
            Decimal(0)
            if self.hold_whole
            else max(Decimal(0), self.largest_step_usd - self.claim_usd)
        )

    @property
    def room_usd(self) -> Decimal:
        """The room a budget with nothing else claimed must have to admit it."""
        return self.claim_usd + self.headroom_usd

    @property
    def first_hold_usd(self) -> Decimal:
        return self.worst_case_usd if self.hold_whole else Decimal(0)


def with_margin(expected_usd: Decimal) -> Decimal:
    """The expected cost as admission counts it: a reading that costs more than expected
    (a longer answer, a retry) is still covered by its own claim."""
    return expected_usd * (100 + settings.BUDGET_ADMISSION_MARGIN_PERCENT) / 100


def reservation_ttl() -> timedelta:
    return timedelta(seconds=settings.BUDGET_RESERVATION_TTL_S)


def _ledgers_with_room(budgets: list[Budget], admission: Admission, now):
    """The budgets' current ledgers, locked, once each can take the admission; BudgetExceeded
    naming the first that cannot.

    A budget can take it if, once it is claimed, what stays free is enough for the dearest
    phase of any reading admitted and not finished, this one included (beyond what each
    already claims). Then whenever every reading is waiting for its next phase, the neediest
    still fits; as it ends it releases more than it spent, and the next fits: nobody waits
    for the next period while the money admitted them all."""
    ledgers = _locked_ledgers(budgets, now)
    _expire_holds(list(ledgers.values()), now)
    for budget in budgets:
        ledger = ledgers[budget.pk]
        standing = _standing(budget, now, ledger)
        needed = admission.claim_usd + max(admission.headroom_usd, _largest_headroom(ledger))
        if not standing.has_room(needed):
            raise BudgetExceeded(standing, needed)
    return ledgers


def _largest_headroom(ledger: BudgetLedger) -> Decimal:
    """The most any unfinished reading on the ledger may still claim beyond its claim now."""
    held = Reservation.objects.filter(ledger=ledger, state=ReservationState.HELD).only(
        "largest_step_usd", "held_usd", "expected_usd", "spent_usd", "state"
    )
    return max(
        (max(Decimal(0), r.largest_step_usd - r.claim_usd) for r in held), default=Decimal(0)
    )


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


def _reclaim(reservation: Reservation, ledger: BudgetLedger, change) -> None:
    """Apply `change` to the reservation and move the ledger's reserved money by what that
    does to the reading's claim."""
    before = reservation.claim_usd
    change(reservation)
    ledger.reserved_usd = max(Decimal(0), ledger.reserved_usd + reservation.claim_usd - before)


def reserve_for_reading(*, reading, admission: Admission) -> list[Reservation]:
    """Admit `reading` on every budget that applies to it, or raise BudgetExceeded naming the
    first budget that cannot take it. Call inside the transaction that creates the reading."""
    budgets = budgets_applying(owner=reading.owner, spread=reading.spread)
    if not budgets:
        return []
    now = timezone.now()
    with transaction.atomic():
        ledgers = _ledgers_with_room(budgets, admission, now)
        reservations = []
        for budget in budgets:
            ledger = ledgers[budget.pk]
            reservation = Reservation(
                reading=reading,
                budget=budget,
                ledger=ledger,
                worst_case_usd=admission.worst_case_usd,
                expected_usd=admission.expected_usd,
                largest_step_usd=admission.largest_step_usd,
                held_usd=admission.first_hold_usd,
                expires_at=now + reservation_ttl(),
            )
            ledger.reserved_usd += reservation.claim_usd
            ledger.save(update_fields=["reserved_usd", "updated_at"])
            reservations.append(reservation)
        return Reservation.objects.bulk_create(reservations)


def reserve_for_retry(*, reading, admission: Admission) -> None:
    """A failed reading goes again: admit what is left of it (`admission`) on every budget
    that applies now, in this period, or raise BudgetExceeded. Its reservation on a budget is
    claimed again (one per reading and budget); what it spent before stays spent."""
    budgets = budgets_applying(owner=reading.owner, spread=reading.spread)
    if not budgets:
        return
    now = timezone.now()
    with transaction.atomic():
        ledgers = _ledgers_with_room(budgets, admission, now)
        earlier = {
            r.budget_id: r
            for r in Reservation.objects.select_for_update().filter(
                reading=reading, state=ReservationState.RELEASED
            )
        }
        for budget in budgets:
            ledger = ledgers[budget.pk]
            reservation = earlier.get(budget.pk) or Reservation(reading=reading, budget=budget)
            reservation.ledger = ledger
            reservation.worst_case_usd = reservation.spent_usd + admission.worst_case_usd
            reservation.expected_usd = reservation.spent_usd + admission.expected_usd
            reservation.largest_step_usd = admission.largest_step_usd
            reservation.held_usd = admission.first_hold_usd
            reservation.state = ReservationState.HELD
            reservation.released_at = None
            reservation.expires_at = now + reservation_ttl()
            reservation.save()
            ledger.reserved_usd += reservation.claim_usd
            ledger.save(update_fields=["reserved_usd", "updated_at"])


def hold_for_step(reading_id, worst_usd: Decimal) -> None:
    """The reading's next phase may spend up to `worst_usd`: claim it on every budget the
    reading holds a reservation on (in place of what its last phase still held), or raise
    BudgetExceeded when one cannot take it now. A reading refused gives back what its last
    phase still held, keeping only what it is expected to spend: readings waiting while
    holding money the others wait for would wait for ever. Staff are told, once a period
    per budget, that a reading waits."""
    refusal = None
    with transaction.atomic():
        reservations = [
            r for r in _locked_reservations(reading_id) if r.state == ReservationState.HELD
        ]
        for reservation in reservations:
            growth = max(worst_usd, reservation.expected_usd - reservation.spent_usd)
            growth -= reservation.claim_usd
            standing = _standing(reservation.budget, timezone.now(), reservation.ledger)
            if growth > 0 and not standing.has_room(growth):
                refusal = BudgetExceeded(standing, worst_usd)
                break
        held = Decimal(0) if refusal else worst_usd
        for reservation in reservations:
            ledger = reservation.ledger
            _reclaim(reservation, ledger, lambda r: setattr(r, "held_usd", held))
            reservation.save(update_fields=["held_usd"])
            ledger.save(update_fields=["reserved_usd", "updated_at"])
    if refusal is not None:
        raise_waiting_alert(refusal.standing)
        raise refusal


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
    """A call of the reading cost `cost_usd`: it is now spent, and no longer part of the
    reading's claim (which never drops below nothing; a reading that costs more than its
    worst case still finishes, and its spend still counts)."""
    if not cost_usd:
        return
    with transaction.atomic():
        for reservation in _locked_reservations(reading_id):
            ledger = reservation.ledger

            def spend(r: Reservation):
                r.spent_usd += cost_usd
                r.held_usd = max(Decimal(0), r.held_usd - cost_usd)

            _reclaim(reservation, ledger, spend)
            ledger.spent_usd += cost_usd
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
    ledger.reserved_usd = max(Decimal(0), ledger.reserved_usd - reservation.claim_usd)
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
        logger.info("releasing an orphaned claim: %s", reservation)
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

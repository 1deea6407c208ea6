"""Which waiting call goes next: finish what was started, at the rate the limits allow.

Every call waiting for a model belongs to a job (a reading) that arrived at some time and
has stages left to run, its own included (a reading's phases). Two orders are right in two
regimes:

- With capacity to spare against one job, earlier stages go first among jobs that arrived
  within a few stages' time of each other (a call's key is its job's arrival brought
  forward by STAGE_LOOKAHEAD_S per stage it has left): every job's later stages are ready
  before the provider runs out of work, so a burst ends with the provider busy until its
  last call.
- When the limits bind hard, the job that arrived first goes first, among those with a
  call ready: jobs finish in arrival order one after another, instead of all advancing
  together and none finishing until the very end.

Which regime holds is measured, not configured. When the limits admit calls more slowly than
calls finish (fewer than ARRIVAL_ORDER_BELOW calls in flight would use all they allow, as
when a token bucket lets one call through at a time), the calls of the oldest jobs alone
keep the provider as busy as it may be: arrival order costs nothing and finishes jobs
early. When the limits allow many calls at once, the critical path keeps them all in use.
"""

import math
from collections import deque
from dataclasses import dataclass

# About one stage's time under ordinary load: a call of a job that arrived this much later
# may go first if it has one more stage still to run.
STAGE_LOOKAHEAD_S = 5.0
# Arrival order once fewer calls than this in flight would use all the limits allow.
ARRIVAL_ORDER_BELOW = 2.0
# The admission rate that says which regime holds is measured over this long.
RATE_WINDOW_S = 30.0


@dataclass(frozen=True)
class CallOrder:
    """What the gate needs to place one call: its job, when the job arrived (Unix seconds),
    and the stages the job has left counting the call's own. `let_in_at`: when the job was
    let in, if an admission queue held it back after it arrived; its place in arrival order
    is then that moment, so no job already running is overtaken by one let in later."""

    job: object
    arrived_at: float
    stages_left: int = 1
    let_in_at: float | None = None

    @property
    def place(self) -> float:
        return self.arrived_at if self.let_in_at is None else self.let_in_at


def key(order: CallOrder | None, *, arrival_first: bool) -> tuple:
    """A call's sort key (smaller goes first). A call without an order goes after every
    ordered one."""
    if order is None:
        return (math.inf, "")
    if arrival_first:
        return (order.place, str(order.job))
    return (order.arrived_at - order.stages_left * STAGE_LOOKAHEAD_S, str(order.job))


class Pace:
    """How fast a model's calls have been admitted lately in this process, and how long they
    ran: together, how many calls in flight it takes to use what the limits allow."""

    def __init__(self):
        self._admitted: deque[float] = deque(maxlen=64)
        self._held_s: deque[float] = deque(maxlen=16)

    def admitted(self, at: float) -> None:
        self._admitted.append(at)

    def released(self, held_s: float) -> None:
        self._held_s.append(held_s)

    def seconds_per_call(self, now: float) -> float:
        recent = [t for t in self._admitted if now - t <= RATE_WINDOW_S]
        if not recent:
            return RATE_WINDOW_S  # nothing admitted lately: the limits bind hard
        return max(now - recent[0], 1.0) / len(recent)

    def arrival_first(self, now: float) -> bool:
        """Whether the limits admit calls so slowly that arrival order costs nothing. Until a
        call has ended nothing says so: the critical path, as every reading starts with its
        card batches anyway."""
        if not self._held_s:
            return False
        held_s = sum(self._held_s) / len(self._held_s)
        return held_s / self.seconds_per_call(now) < ARRIVAL_ORDER_BELOW

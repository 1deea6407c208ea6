"""The in-process gate over a backend: permits, per-model queues, a poller per model, the
shared clock and the lease renewer.

Callers wait in one queue per model, in the order call_order.py gives (the critical path
while capacity is plentiful, arrival order once the limits bind hard), and only the first
of the queue ask the backend: one poller per model per process, not one per call.

The poller does not poll. Every answer says when asking again could succeed: a refusal
how long its bucket needs to refill, an admission when the next request token is due, and
a release in this process (which gives back tokens) what the first waiting call would be
answered now. The poller sleeps until then, or until a release tells it anew, asking at
least every `max_wait_s` for what other processes gave back meanwhile. A call therefore
costs the limiter about two round trips (admission, release) however long it waits.
"""

import asyncio
import heapq
import itertools
import logging
import math
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from asgiref.sync import sync_to_async

from allocation.limiter import call_order
from allocation.limiter.backends import LimiterBackend, get_backend
from allocation.limiter.call_order import CallOrder, Pace
from allocation.limiter.params import LimiterParams, get_params
from allocation.limiter.state import CallCost, CallReport, LogRow, Wait
from allocation.outcomes import FAILURES, CallOutcome

logger = logging.getLogger(__name__)


_executors: dict[int, ThreadPoolExecutor] = {}


def on_limiter_thread(fn):
    """`fn` run on this process's limiter thread. Not on the thread that serves the rest of
    the process's database work (sync_to_async's default): a burst of readings setting up
    would queue admissions and releases behind their set-up, and the provider would sit
    idle while slots are free. One thread (one database connection) per process; created
    after a fork, never inherited."""
    executor = _executors.get(os.getpid())
    if executor is None:
        executor = _executors[os.getpid()] = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="limiter"
        )
    return sync_to_async(fn, thread_sensitive=False, executor=executor)


# Waiting callers of one model asked for in one step: one transaction admits as many of them
# as the limits allow (the rest learn how long to wait).
ASK_AT_ONCE = 8


def close_limiter_connections() -> None:
    """Close the database connection of this process's limiter thread (tests, before the
    test database is dropped)."""
    from django.db import connections

    executor = _executors.get(os.getpid())
    if executor is not None:
        executor.submit(connections.close_all).result(timeout=10)


class BreakerOpen(Exception):
    """The model's circuit is open: its calls go to the next model until it is probed."""


class Permit:
    """One call's slot, after Netflix concurrency-limits' Limiter.Listener: the holder
    leaves through exactly one exit, which says what the call taught the limiter.

    success       the provider answered: its tokens settle the buckets, its latency feeds
                  the controller, the breaker counts a success
    rate_limited  a 429: the buckets empty, an unexplained one cuts the limit
    failed        overloaded, an error or a timeout (the provider's fault): the controller
                  backs off (overload, timeout) and the breaker counts a failure
    ignore        nothing to learn (cancelled, or our own bug): the slot returns, no sample

    A permit left by an exception without an exit is ignored; left normally without one is
    a bug, reported as such once the slot is back."""

    def __init__(self):
        self.report: CallReport | None = None
        self._exited = False
        # The call's log row, if its admission wrote it (GlobalLimiter.permit's `log_row`).
        self.call_id: int | None = None

    def success(
        self,
        *,
        latency_s: float,
        input_tokens: int,
        output_tokens: int,
        headers: Mapping | None = None,
    ) -> None:
        self._exit(
            CallReport(CallOutcome.OK, latency_s, input_tokens, output_tokens, headers or {})
        )

    def rate_limited(self, *, latency_s: float, headers: Mapping | None = None) -> None:
        self._exit(CallReport(CallOutcome.RATE_LIMITED, latency_s, headers=headers or {}))

    def failed(
        self, outcome: CallOutcome, *, latency_s: float, headers: Mapping | None = None
    ) -> None:
        if outcome not in FAILURES:
            raise ValueError(f"a failed call is one of {sorted(FAILURES)}, not {outcome!r}")
        self._exit(CallReport(CallOutcome(outcome), latency_s, headers=headers or {}))

    def ignore(self) -> None:
        self._exit(None)

    @property
    def exited(self) -> bool:
        return self._exited

    def _exit(self, report: CallReport | None) -> None:
        if self._exited:
            raise RuntimeError("a permit has exactly one exit")
        self._exited, self.report = True, report


class SharedClock:
    """The backend server's time, read here as the local clock plus an offset measured now and
    then. Buckets and leases are shared between machines, so they must not each run on their
    own machine's clock; asking the server on every admission would cost a round trip."""

    def __init__(self):
        self._offset = 0.0
        self._measured_at = -math.inf

    async def now(self, params: LimiterParams, backend: LimiterBackend) -> float:
        local = time.monotonic()
        if local - self._measured_at > params.clock_refresh_s:
            before = time.time()
            server = await on_limiter_thread(backend.clock)()
            after = time.time()
            self._offset = server - (before + after) / 2
            self._measured_at = local
        return time.time() + self._offset


@dataclass(eq=False)
class Waiting:
    """One call waiting for a slot, with its place in either order (call_order.py), computed
    once: the queue is ranked at every ask and release."""

    cost: CallCost
    order: CallOrder | None
    seq: int
    future: asyncio.Future

    def __post_init__(self):
        self._places = tuple(
            (*call_order.key(self.order, arrival_first=arrival_first), self.seq)
            for arrival_first in (False, True)
        )

    def place(self, *, arrival_first: bool) -> tuple:
        return self._places[arrival_first]


class ModelQueue:
    """The callers of this process waiting for one model, the poller that asks for them, and
    what the poller knows about when asking again could succeed."""

    def __init__(self):
        self.entries: list[Waiting] = []
        self.wakeup = asyncio.Event()
        self.poller: asyncio.Task | None = None
        self.pace = Pace()
        # Asking before this (time.monotonic()) would be refused, for `reason`.
        self.not_before = 0.0
        self.reason = ""
        # What the callers waited for since the poller last asked, for the shared record.
        self.waits: list[Wait] = []

    def in_order(self, limit: int | None = None) -> list[Waiting]:
        """The waiting calls, the one that goes first first (call_order.py). With a limit,
        only the first ones are ranked: hundreds may wait, and the poller asks for eight."""
        place = partial(Waiting.place, arrival_first=self.pace.arrival_first(time.monotonic()))
        if limit is None:
            return sorted(self.entries, key=place)
        return heapq.nsmallest(limit, self.entries, key=place)

    def head_cost(self) -> CallCost | None:
        waiting = [e for e in self.in_order(1) if not e.future.done()]
        return waiting[0].cost if waiting else None

    def ask_after(self, wait_s: float, reason: str) -> None:
        """Asking again is worth it after `wait_s` seconds (0: now); wake the poller to
        sleep for that long instead."""
        self.not_before, self.reason = time.monotonic() + wait_s, reason
        self.wakeup.set()

    async def sleep(self, timeout: float) -> bool:
        """Sleep until woken (True) or `timeout` seconds have passed (False)."""
        try:
            await asyncio.wait_for(self.wakeup.wait(), timeout=timeout)
        except TimeoutError:
            return False
        self.wakeup.clear()
        return True

    def remove(self, entry: Waiting) -> None:
        self.entries.remove(entry)


class GlobalLimiter:
    """One per event loop: hands out permits for calls to a model, within the limits every
    process shares through the backend."""

    def __init__(self):
        self._clock = SharedClock()
        self._queues: dict[str, ModelQueue] = {}
        self._order = itertools.count()
        self._renewer: asyncio.Task | None = None
        # This loop's leases: when each was taken, and last renewed (time.monotonic()).
        self._held: dict[int, tuple[float, float]] = {}

    @asynccontextmanager
    async def permit(
        self,
        model: str,
        *,
        input_estimate: int,
        max_tokens: int = 0,
        order: CallOrder | None = None,
        log_row: LogRow | None = None,
    ):
        """Wait for a slot (raises BreakerOpen if the model's circuit is open), hold it for
        the block, give it back with what the block's exit reported. `max_tokens` is held in
        the output bucket until then; `order` places the call among the waiting ones;
        `log_row` is written with the admission where the backend can (LogRow): the
        permit's call_id is then its id, else None."""
        params, backend = get_params(), get_backend()
        cost = CallCost(input_estimate, max_tokens, log_row)
        lease_id, delay_s, call_id = await self._acquire(model, cost, order, params, backend)
        permit = Permit()
        permit.call_id = call_id
        entered = False
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)  # the request token it reserved is due then
            entered = True
            yield permit
        finally:
            if not entered and call_id is not None:  # cancelled before the request left
                await asyncio.shield(on_limiter_thread(log_row.delete)(call_id))
            # Shielded: a cancelled caller must still give its slot back.
            await asyncio.shield(self._release(backend, lease_id, model, permit.report, params))
        if not permit.exited:
            raise RuntimeError(f"a permit for {model} was left without an exit")

    async def _release(self, backend, lease_id, model, report, params) -> None:
        queue = self._queue(model)
        admitted_at, _ = self._held.pop(lease_id, (None, None))
        if report is not None and admitted_at is not None:
            queue.pace.released(time.monotonic() - admitted_at)
        now = await self._clock.now(params, backend)
        hint = await on_limiter_thread(backend.release)(
            lease_id, model, report, params=params, now=now, next_cost=queue.head_cost()
        )
        if hint is not None:
            # The release says when the next waiting call could go: no asking before then.
            queue.ask_after(hint.wait_s, hint.reason)

    async def _acquire(self, model, cost, order, params, backend) -> tuple[int, float, int | None]:
        self._ensure_renewer()
        future = asyncio.get_running_loop().create_future()
        queue = self._queue(model)
        queue.entries.append(Waiting(cost, order, next(self._order), future))
        if queue.poller is None or queue.poller.done():
            queue.poller = asyncio.create_task(self._poll(model, queue, params, backend))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                # Admitted just as the caller was cancelled: the answer never reached it, so
                # nobody else would give the slot back or delete the call's row.
                lease_id, _, call_id = future.result()
                await asyncio.shield(self._unused(backend, model, lease_id, call_id, cost, params))
            raise

    async def _unused(self, backend, model, lease_id, call_id, cost, params) -> None:
        """An admitted call that will never be sent: its slot given back, its row deleted."""
        await self._release(backend, lease_id, model, None, params)
        if call_id is not None:
            await on_limiter_thread(cost.log_row.delete)(call_id)

    async def _poll(self, model: str, queue: ModelQueue, params, backend):
        while queue.entries:
            # What the last answer said about asking again holds for a caller that joins an
            # empty queue too: it waits like the others instead of being refused first.
            pause = queue.not_before - time.monotonic()
            if pause > 0:
                began, reason = await self._clock.now(params, backend), queue.reason
                woken = await queue.sleep(min(params.max_wait_s, pause))
                queue.waits.append(Wait(reason, began, await self._clock.now(params, backend)))
                if woken:
                    continue  # told anew when to ask (a release): sleep for that instead
            # The waiting callers in order, asked for in one step; a cancelled caller's
            # entry is dropped on the way.
            entries = queue.in_order(ASK_AT_ONCE)
            for entry in [e for e in entries if e.future.done()]:
                queue.remove(entry)
                entries.remove(entry)
            if not entries:
                continue
            waits, queue.waits = queue.waits, []
            # Cleared before asking, so a release that lands while we ask is not missed.
            queue.wakeup.clear()
            try:
                answers = await on_limiter_thread(backend.try_acquire_many)(
                    model,
                    costs=[entry.cost for entry in entries],
                    params=params,
                    now=await self._clock.now(params, backend),
                    waits=[w for w in waits if w.limit],
                )
            except Exception as exc:  # noqa: BLE001 - hand the backend's error to the caller
                answers = [exc]
            # Callers placed earlier may have joined meanwhile: settle the entries we asked
            # for, not whatever is first now.
            wait_s, reason = 0.0, ""
            for entry, answer in zip(entries, answers, strict=False):
                future = entry.future
                if isinstance(answer, Exception):
                    queue.remove(entry)
                    if not future.done():
                        future.set_exception(answer)
                elif answer.lease_id is not None:
                    queue.remove(entry)
                    now = time.monotonic()
                    queue.pace.admitted(now)
                    self._held[answer.lease_id] = (now, now)
                    if future.done():  # cancelled while we asked: give the slot back
                        await self._unused(
                            backend, model, answer.lease_id, answer.call_id, entry.cost, params
                        )
                    else:
                        future.set_result((answer.lease_id, answer.delay_s, answer.call_id))
                    # The request bucket says when another call could go: not sooner.
                    wait_s, reason = answer.next_in_s, "rpm"
                elif answer.breaker_open:
                    queue.remove(entry)
                    if not future.done():
                        future.set_exception(BreakerOpen(model))
                else:
                    wait_s, reason = max(answer.wait_s, 0.001), answer.reason
            if wait_s > 0:
                at = time.monotonic() + wait_s
                if queue.wakeup.is_set():  # a release told us meanwhile: the sooner holds
                    at, reason = min((at, reason), (queue.not_before, queue.reason))
                queue.not_before, queue.reason = at, reason

    def _queue(self, model: str) -> ModelQueue:
        queue = self._queues.get(model)
        if queue is None:
            queue = self._queues[model] = ModelQueue()
        return queue

    def _ensure_renewer(self):
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self):
        while True:
            every_s = get_params().lease_ttl_s / 3
            await asyncio.sleep(every_s)
            # Only leases that would expire within two thirds of their lifetime need it: most
            # calls end long before, and a round trip for nothing is a round trip.
            due = time.monotonic() - every_s
            if not any(renewed <= due for _, renewed in self._held.values()):
                continue
            # Read each round: settings say which backend holds this process's leases.
            params, backend = get_params(), get_backend()
            try:
                now = await self._clock.now(params, backend)
                await on_limiter_thread(backend.renew)(params, now)
            except Exception:  # noqa: BLE001 - try again next round; leases outlive one miss
                logger.exception("could not renew leases")
                continue
            renewed_at = time.monotonic()
            for lease_id, (admitted_at, _) in self._held.items():
                self._held[lease_id] = (admitted_at, renewed_at)


_limiters: dict[tuple[int, int], GlobalLimiter] = {}


def get_limiter() -> GlobalLimiter:
    """One limiter per event loop (its queues and tasks belong to that loop) and process (a
    forked worker starts with none of its parent's)."""
    key = (os.getpid(), id(asyncio.get_running_loop()))
    limiter = _limiters.get(key)
    if limiter is None:
        limiter = _limiters[key] = GlobalLimiter()
    return limiter

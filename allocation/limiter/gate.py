"""The in-process gate over a backend: permits, per-model priority queues, a poller per
model, the shared clock and the lease renewer.

Callers wait in one queue per model, ordered by priority (later phases and older readings
first, so readings in progress finish before new ones start), and only the head of the
queue asks the backend: one poller per model per process, not one per call. Between asks
the poller sleeps until the buckets say a slot may be free, or until a release in this
process wakes it (`ModelQueue.notify`); a slot freed by another process is seen at the
next ask. Waking on other processes' releases too is a matter of calling `notify` from a
backend's notification (LISTEN/NOTIFY, pub/sub): nothing else here would change.
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
from contextlib import asynccontextmanager, suppress

from asgiref.sync import sync_to_async

from allocation.limiter.backends import LimiterBackend, get_backend
from allocation.limiter.params import LimiterParams, get_params
from allocation.limiter.state import CallReport
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


class ModelQueue:
    """The callers of this process waiting for one model, by priority, and the event that
    wakes its poller early."""

    def __init__(self):
        self.entries: list = []
        self.wakeup = asyncio.Event()
        self.poller: asyncio.Task | None = None
        # Why the poller sleeps: only a wait for a concurrency slot ends early on a release.
        # Waiting for the buckets to refill, a release changes nothing, and asking anyway
        # would cost a refused transaction per release.
        self.waiting_for_slot = True
        # Asking before this (time.monotonic()) would be refused; for_slot: what it waits for.
        self.not_before = 0.0
        self.for_slot = True

    async def wait(self, timeout: float, *, for_slot: bool = True) -> None:
        """Sleep until notified (if waiting for a slot) or `timeout` seconds have passed."""
        self.waiting_for_slot = for_slot
        with suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), timeout=timeout)
        self.waiting_for_slot = True

    def notify(self) -> None:
        """A slot may be free: let the poller ask again now, if a slot is what it waits for."""
        if self.waiting_for_slot:
            self.wakeup.set()

    def remove(self, entry: tuple) -> None:
        self.entries.remove(entry)
        heapq.heapify(self.entries)


class GlobalLimiter:
    """One per event loop: hands out permits for calls to a model, within the limits every
    process shares through the backend."""

    def __init__(self):
        self._clock = SharedClock()
        self._queues: dict[str, ModelQueue] = {}
        self._order = itertools.count()
        self._renewer: asyncio.Task | None = None

    @asynccontextmanager
    async def permit(self, model: str, *, input_estimate: int, priority: tuple = ()):
        """Wait for a slot (raises BreakerOpen if the model's circuit is open), hold it for
        the block, give it back with what the block's exit reported."""
        params, backend = get_params(), get_backend()
        lease_id, delay_s = await self._acquire(model, input_estimate, priority, params, backend)
        permit = Permit()
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)  # the request token it reserved is due then
            yield permit
        finally:
            # Shielded: a cancelled caller must still give its slot back.
            await asyncio.shield(self._release(backend, lease_id, model, permit.report, params))
        if not permit.exited:
            raise RuntimeError(f"a permit for {model} was left without an exit")

    async def _release(self, backend, lease_id, model, report, params) -> None:
        now = await self._clock.now(params, backend)
        await on_limiter_thread(backend.release)(lease_id, model, report, params=params, now=now)
        self._queue(model).notify()

    async def _acquire(self, model, input_estimate, priority, params, backend) -> tuple[int, float]:
        self._ensure_renewer()
        future = asyncio.get_running_loop().create_future()
        queue = self._queue(model)
        heapq.heappush(queue.entries, (priority, next(self._order), input_estimate, future))
        if queue.poller is None or queue.poller.done():
            queue.poller = asyncio.create_task(self._poll(model, queue, params, backend))
        return await future

    async def _poll(self, model: str, queue: ModelQueue, params, backend):
        while queue.entries:
            # What the last answer said about asking again holds for a caller that joins an
            # empty queue too: it waits like the others instead of being refused first.
            pause = queue.not_before - time.monotonic()
            if pause > 0:
                await queue.wait(min(params.max_wait_s, pause), for_slot=queue.for_slot)
                queue.not_before = 0.0
            # The waiting callers in priority order, asked for in one step; a cancelled
            # caller's entry is dropped on the way.
            entries = heapq.nsmallest(ASK_AT_ONCE, queue.entries)
            for entry in [e for e in entries if e[3].done()]:
                queue.remove(entry)
                entries.remove(entry)
            if not entries:
                continue
            # Cleared before asking, so a release that lands while we ask is not missed.
            queue.wakeup.clear()
            try:
                answers = await on_limiter_thread(backend.try_acquire_many)(
                    model,
                    input_estimates=[entry[2] for entry in entries],
                    params=params,
                    now=await self._clock.now(params, backend),
                )
            except Exception as exc:  # noqa: BLE001 - hand the backend's error to the caller
                answers = [exc]
            # Callers with a higher priority may have joined meanwhile: settle the entries we
            # asked for, not whatever is at the head now.
            wait_s, for_slot = 0.0, True
            for entry, answer in zip(entries, answers, strict=False):
                future = entry[3]
                if isinstance(answer, Exception):
                    queue.remove(entry)
                    if not future.done():
                        future.set_exception(answer)
                elif answer.lease_id is not None:
                    queue.remove(entry)
                    if future.done():  # cancelled while we asked: give the slot back
                        await self._release(backend, answer.lease_id, model, None, params)
                    else:
                        future.set_result((answer.lease_id, answer.delay_s))
                    # The buckets say when another call could go: asking sooner is refused.
                    wait_s, for_slot = answer.next_in_s, False
                elif answer.breaker_open:
                    queue.remove(entry)
                    if not future.done():
                        future.set_exception(BreakerOpen(model))
                else:
                    wait_s = max(answer.wait_s, 0.001)
                    for_slot = answer.reason == "concurrency"
            if wait_s > 0:
                queue.not_before, queue.for_slot = time.monotonic() + wait_s, for_slot

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
            await asyncio.sleep(get_params().lease_ttl_s / 3)
            # Read each round: settings say which backend holds this process's leases.
            params, backend = get_params(), get_backend()
            try:
                now = await self._clock.now(params, backend)
                await on_limiter_thread(backend.renew)(params, now)
            except Exception:  # noqa: BLE001 - try again next round; leases outlive one miss
                logger.exception("could not renew leases")


_limiters: dict[tuple[int, int], GlobalLimiter] = {}


def get_limiter() -> GlobalLimiter:
    """One limiter per event loop (its queues and tasks belong to that loop) and process (a
    forked worker starts with none of its parent's)."""
    key = (os.getpid(), id(asyncio.get_running_loop()))
    limiter = _limiters.get(key)
    if limiter is None:
        limiter = _limiters[key] = GlobalLimiter()
    return limiter

"""Prometheus metrics, collected from the database at scrape time.

Calls are made by worker processes and readings run there, so in-process counters in the web
process would see none of it (and prometheus-client's multiprocess mode needs a shared
directory every process agrees on). The ledger already holds every call, so a custom collector
turns one aggregate query per family into metrics: counters stay monotonic because LLMCall
rows are never deleted by the platform, and a call counts once it has ended (not while
pending: its row is written as the request leaves, see allocation/usage.py).
"""

from django.db.models import Count, Q, Sum
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import CollectorRegistry

from allocation.models import CallOutcome, LLMCall, ModelState
from operations.health import queue_depth
from readings.models import Reading, ReadingStatus

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
# Wall time of a reading, seconds: a three-card reading takes a few, a Celtic Cross tens.
DURATION_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300)


class LedgerCollector:
    def collect(self):
        yield from self._calls()
        yield from self._limiter()
        yield from self._readings()
        depth = GaugeMetricFamily("tarot_queue_depth", "Tasks in the worker queue.")
        depth.add_metric([], queue_depth())
        yield depth

    def _calls(self):
        calls = CounterMetricFamily(
            "tarot_llm_calls", "Provider calls by model and outcome.", labels=["model", "outcome"]
        )
        rate_limited = CounterMetricFamily(
            "tarot_llm_rate_limited", "429 answers by model.", labels=["model"]
        )
        tokens = CounterMetricFamily(
            "tarot_llm_tokens", "Tokens by model and kind.", labels=["model", "kind"]
        )
        cost = CounterMetricFamily("tarot_llm_cost_usd", "Spend in USD by model.", labels=["model"])
        # A call counts once it has ended: a pending row's outcome and tokens are still to come.
        ended = LLMCall.objects.exclude(outcome=CallOutcome.PENDING)
        by_outcome = ended.values("model", "outcome").annotate(n=Count("id")).order_by()
        for row in by_outcome:
            calls.add_metric([row["model"], row["outcome"]], row["n"])
            if row["outcome"] == CallOutcome.RATE_LIMITED:
                rate_limited.add_metric([row["model"]], row["n"])
        totals = (
            ended.values("model")
            .annotate(
                input=Sum("input_tokens"),
                output=Sum("output_tokens"),
                cache_read=Sum("cache_read_tokens"),
                cache_write=Sum("cache_write_tokens"),
                cost=Sum("cost_usd"),
            )
            .order_by()
        )
        for row in totals:
            for kind in ("input", "output", "cache_read", "cache_write"):
                tokens.add_metric([row["model"], kind], row[kind] or 0)
            # Prometheus samples are floats; the Decimal stays exact in the ledger.
            cost.add_metric([row["model"]], float(row["cost"] or 0))
        in_flight = GaugeMetricFamily(
            "tarot_llm_calls_in_flight", "Calls sent and not yet answered.", labels=["model"]
        )
        pending = LLMCall.objects.filter(outcome=CallOutcome.PENDING)
        for row in pending.values("model").annotate(n=Count("id")).order_by():
            in_flight.add_metric([row["model"]], row["n"])
        yield from (calls, rate_limited, tokens, cost, in_flight)

    def _limiter(self):
        breaker = GaugeMetricFamily(
            "tarot_breaker_state",
            "Circuit breaker per model: 0 closed, 1 half-open, 2 open.",
            labels=["model"],
        )
        limit = GaugeMetricFamily(
            "tarot_adaptive_limit", "Adaptive concurrency limit per model.", labels=["model"]
        )
        for state in ModelState.objects.only("model", "breaker", "adaptive"):
            name = (state.breaker or {}).get("state", "closed")
            breaker.add_metric([state.model], BREAKER_STATES.get(name, 0))
            if (state.adaptive or {}).get("limit") is not None:
                limit.add_metric([state.model], state.adaptive["limit"])
        yield from (breaker, limit)

    def _readings(self):
        readings = CounterMetricFamily("tarot_readings", "Readings by status.", labels=["status"])
        counts = dict(Reading.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in ReadingStatus.values:
            readings.add_metric([status], counts.get(status, 0))
        finished = Reading.objects.filter(status=ReadingStatus.DONE, wall_time_s__isnull=False)
        aggregates = finished.aggregate(
            total=Sum("wall_time_s"),
            n=Count("id"),
            **{
                f"le_{i}": Count("id", filter=Q(wall_time_s__lte=bucket))
                for i, bucket in enumerate(DURATION_BUCKETS)
            },
        )
        buckets = [(str(b), aggregates[f"le_{i}"]) for i, b in enumerate(DURATION_BUCKETS)]
        buckets.append(("+Inf", aggregates["n"]))
        duration = HistogramMetricFamily(
            "tarot_reading_duration_seconds", "Wall time of finished readings."
        )
        duration.add_metric([], buckets, sum_value=aggregates["total"] or 0)
        yield from (readings, duration)


def registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector())
    return registry

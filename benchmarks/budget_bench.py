"""The spend-control benchmark (`bench --budget-usd X`): readings submitted through the REST
API by one user whose daily budget is X, run by real qcluster workers.

It shows that budgets block spend (some readings are refused with 402, and what was spent
stays within the budget), that every reservation is settled or released by the end, and how
close the expected cost given at creation came to each reading's real cost. The estimator
learns from history, and bench readings are discarded after each run, so the bench first
runs a few unbudgeted warm-up readings in this process (reported apart, with the error of
their own history-less estimates) and removes them afterwards.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from allocation.client_pool import runtime
from benchmarks.bench import POLL_INTERVAL_S, BenchConfig, BenchResult, create_readings, run_ids
from budgets.models import Budget, BudgetPeriod, BudgetScope, CostEstimate, QuotaOverride
from budgets.selectors import standing
from readings.models import Reading, ReadingStatus

BENCH_USER = "bench-budget"
# Each worker process runs many readings at once (WORKER_CONCURRENCY); a budget of a few
# dimes admits about ten at a time. More processes would only cost the machine memory and
# database connections.
MAX_WORKERS = 4


def estimate_mape(reading_ids) -> float | None:
    """Mean absolute percentage error of the expected cost given at creation, over the
    finished readings."""
    errors = []
    for estimate in CostEstimate.objects.filter(
        reading_id__in=reading_ids, reading__status=ReadingStatus.DONE
    ).select_related("reading"):
        actual = estimate.reading.cost_usd
        if actual > 0:
            errors.append(abs(actual - estimate.expected_usd) / actual)
    return round(float(sum(errors) / len(errors)), 4) if errors else None


def admission_efficiency(readings_ok: int, spent_usd: Decimal, budget_usd: Decimal):
    """The readings the budget admitted and finished, over how many its money would have
    paid for at their mean cost: what a stricter reservation rule throws away."""
    if not readings_ok or not spent_usd:
        return None
    mean_cost = spent_usd / readings_ok
    affordable = int(budget_usd / mean_cost)
    return round(readings_ok / affordable, 3) if affordable else None


def bench_user():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
    # Throttles would pace the clients; the budget is what is being measured.
    QuotaOverride.objects.update_or_create(
        user=user,
        defaults={
            "exempt_from_throttles": True,
            "exempt_from_budgets": False,
            "note": "The spend-control benchmark's client.",
        },
    )
    return user


def run_with_budget(
    config: BenchConfig, progress, *, base_url: str, budget_usd: Decimal, warmup: int
) -> tuple[BenchResult, dict, list]:
    """Returns the accepted readings' result, the budget figures, and the warm-up readings'
    ids (for the caller to discard with the rest)."""
    from django.db import connections
    from rest_framework.test import APIClient

    from benchmarks.workers import WorkerCluster

    warmup_ids = (
        create_readings(BenchConfig(spread=config.spread, readings=warmup)) if warmup else []
    )
    if warmup_ids:
        runtime.run(run_ids(warmup_ids, concurrency=min(warmup, config.concurrency)))
    user = bench_user()
    Budget.objects.filter(user=user).delete()
    budget = Budget.objects.create(
        name="bench daily budget",
        scope=BudgetScope.USER,
        user=user,
        period=BudgetPeriod.DAY,
        limit_usd=budget_usd,
    )
    cluster = WorkerCluster(workers=min(config.concurrency, MAX_WORKERS), base_url=base_url)
    result = BenchResult(wall_s=0.0)
    refused = 0
    submitted = 0

    def one_client(count: int):
        nonlocal refused, submitted
        api = APIClient(HTTP_HOST="127.0.0.1")
        api.force_authenticate(user)

        def request(method, *args, **kwargs):
            # Django's test client keeps its thread's connection between requests; twenty
            # clients waiting on admitted readings would hold every connection of the pool.
            try:
                return getattr(api, method)(*args, **kwargs)
            finally:
                connections.close_all()

        try:
            for _ in range(count):
                started = time.monotonic()
                created = request(
                    "post",
                    "/api/readings/",
                    {"spread": config.spread, "question": config.question},
                    format="json",
                )
                if created.status_code == 402:
                    refused += 1
                elif created.status_code == 202:
                    url = f"/api/readings/{created.json()['id']}/"
                    while request("get", url).json()["status"] not in ("done", "failed"):
                        time.sleep(POLL_INTERVAL_S)
                    result.e2e_s.append(time.monotonic() - started)
                    result.reading_ids.append(created.json()["id"])
                else:
                    raise RuntimeError(
                        f"creating a reading answered {created.status_code}: "
                        f"{created.content[:300]}"
                    )
                submitted += 1
                progress(submitted, config.readings)
        finally:
            connections.close_all()

    try:
        cluster.wait_until_ready()
        shares = [
            config.readings // config.concurrency + (i < config.readings % config.concurrency)
            for i in range(config.concurrency)
        ]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            list(pool.map(one_client, shares))
        result.wall_s = time.monotonic() - started
    finally:
        cluster.stop()
    result.queue_delay_s = [
        (r.started_at - r.created_at).total_seconds()
        for r in Reading.objects.filter(pk__in=result.reading_ids, started_at__isnull=False)
    ] or [0.0]
    now = standing(budget)
    finished = Reading.objects.filter(pk__in=result.reading_ids, status=ReadingStatus.DONE)
    figures = {
        "readings_refused": refused,
        "spent_usd": str(now.spent_usd.quantize(Decimal("0.000001"))),
        "reserved_usd": str(now.reserved_usd.quantize(Decimal("0.000001"))),
        "budget_usd": str(budget_usd),
        "admission_efficiency": admission_efficiency(finished.count(), now.spent_usd, budget_usd),
        "estimate_mape": estimate_mape(result.reading_ids),
        "warmup_readings": len(warmup_ids),
        "estimate_mape_without_history": estimate_mape(warmup_ids),
    }
    budget.delete()  # its ledger, reservations and alerts go with it
    return result, figures, warmup_ids

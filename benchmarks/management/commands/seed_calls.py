"""Fill the usage log with synthetic readings and calls, to measure the cost reports.

Rows are shaped like real readings (card batches, overall, relationships, advice, with
some 429 retries, errors and fallbacks) and spread over the last --days days. Seeded rows
are tagged (request_id "seed-...", question "[seed] ...") so --clear removes only them.
"""

import math
import random
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from allocation.models import CallOutcome, LLMCall
from readings.models import Reading, ReadingStatus
from spreads.models import Spread, TaskType

BATCH_SIZE = 5_000
SEED_TAG = "seed-"
SEED_QUESTION = "[seed] What does the usage log look like at scale?"

# Synthetic list prices, USD per million tokens (input, output); cache reads cost a tenth
# of input, cache writes a quarter more. Close enough to real ones for a load test.
PRICES = {
    "claude-haiku-4-5": (Decimal(1), Decimal(5)),
    "claude-3-5-haiku-latest": (Decimal("0.8"), Decimal(4)),
    "claude-sonnet-4-5": (Decimal(3), Decimal(15)),
    "claude-sonnet-4-0": (Decimal(3), Decimal(15)),
}
MODELS = {
    TaskType.CARD_INTERPRETATION: ("claude-haiku-4-5", "claude-3-5-haiku-latest"),
    TaskType.OVERALL_READING: ("claude-sonnet-4-5", "claude-sonnet-4-0"),
    TaskType.RELATIONSHIPS: ("claude-sonnet-4-0", "claude-haiku-4-5"),
    TaskType.ADVICE: ("claude-sonnet-4-0", "claude-haiku-4-5"),
}
MILLION = Decimal(1_000_000)


@contextmanager
def keep_given_created_at(*models):
    """bulk_create would stamp created_at with now(): let the seeded times through."""
    fields = [model._meta.get_field("created_at") for model in models]
    try:
        for field in fields:
            field.auto_now_add = False
        yield
    finally:
        for field in fields:
            field.auto_now_add = True


def price(model: str, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int):
    per_in, per_out = PRICES[model]
    cost = (
        input_tokens * per_in
        + output_tokens * per_out
        + cache_read * per_in / 10
        + cache_write * per_in * Decimal("1.25")
    ) / MILLION
    return cost.quantize(Decimal("0.00000001"))


class Command(BaseCommand):
    help = "Bulk-insert synthetic LLM calls (and their readings) for measuring the reports."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=100_000, help="LLMCall rows to add.")
        parser.add_argument("--days", type=int, default=60, help="Spread them over this many days.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeats.")
        parser.add_argument(
            "--clear", action="store_true", help="First delete the rows an earlier run seeded."
        )

    def handle(self, *args, rows, days, seed, clear, **options):
        if rows < 1 or days < 1:
            raise CommandError("--rows and --days must be at least 1.")
        spreads = list(Spread.objects.all())
        if not spreads:
            raise CommandError("No spreads: run `python manage.py migrate` first.")
        if clear:
            calls, _ = LLMCall.objects.filter(request_id__startswith=SEED_TAG).delete()
            readings, _ = Reading.objects.filter(question=SEED_QUESTION).delete()
            self.stdout.write(f"Deleted {calls} seeded calls and {readings} seeded readings.")

        rng = random.Random(seed)
        now = datetime.now(UTC)
        began = time.monotonic()
        written = 0
        while written < rows:
            count = min(BATCH_SIZE, rows - written)
            readings, calls = self.build_batch(rng, spreads, count, now=now, days=days)
            with transaction.atomic(), keep_given_created_at(Reading, LLMCall):
                Reading.objects.bulk_create(readings)
                LLMCall.objects.bulk_create(calls)
            written += count
            rate = written / max(time.monotonic() - began, 1e-6)
            self.stdout.write(f"  {written:>9,}/{rows:,} calls inserted ({rate:,.0f} rows/s)")
        # Fresh planner statistics, or the first reports plan for an empty table.
        with connection.cursor() as cursor:
            for model in (LLMCall, Reading):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {written:,} calls over {days} days in {time.monotonic() - began:.1f} s."
            )
        )

    def build_batch(self, rng, spreads, count, *, now, days):
        """Whole readings' worth of calls until `count`; the last reading may be cut short."""
        readings, calls = [], []
        while len(calls) < count:
            spread = rng.choice(spreads)
            created = now - timedelta(seconds=rng.uniform(0, days * 86_400))
            reading = Reading(
                spread=spread,
                question=SEED_QUESTION,
                status=ReadingStatus.DONE,
                created_at=created,
                started_at=created,
                finished_at=created + timedelta(seconds=30),
            )
            readings.append(reading)
            batches = math.ceil(spread.card_count / spread.batch_size)
            tasks = [TaskType.CARD_INTERPRETATION] * batches + [
                TaskType.OVERALL_READING,
                TaskType.RELATIONSHIPS,
                TaskType.ADVICE,
            ]
            for task_type in tasks:
                calls.extend(self.task_calls(rng, reading, spread, task_type, created))
        calls = calls[:count]
        used = {id(call.reading) for call in calls}
        return [r for r in readings if id(r) in used], calls

    def task_calls(self, rng, reading, spread, task_type, at):
        """One task's attempts: maybe a 429 or an error first, maybe a fallback."""
        requested, fallback = MODELS[task_type]
        roll = rng.random()
        failures = (
            [CallOutcome.RATE_LIMITED]
            if roll < 0.06
            else [CallOutcome.OVERLOADED]
            if roll < 0.08
            else [CallOutcome.ERROR]
            if roll < 0.09
            else [CallOutcome.TIMEOUT]
            if roll < 0.095
            else []
        )
        attempts = []
        for outcome in failures:
            attempts.append((outcome, requested, False))
        uses_fallback = bool(failures) and failures[0] != CallOutcome.RATE_LIMITED
        attempts.append((CallOutcome.OK, fallback if uses_fallback else requested, uses_fallback))

        made = []
        for n, (outcome, model, is_fallback) in enumerate(attempts, start=1):
            ok = outcome == CallOutcome.OK
            input_tokens = rng.randint(600, 2_500) if ok else 0
            output_tokens = rng.randint(150, 1_200) if ok else 0
            cache_read = rng.choice((0, 0, rng.randint(500, 2_000))) if ok else 0
            cache_write = rng.choice((0, 0, 0, rng.randint(500, 1_500))) if ok else 0
            latency = rng.uniform(0.8, 12.0) if ok else rng.uniform(0.05, 2.0)
            at += timedelta(seconds=latency)
            made.append(
                LLMCall(
                    reading=reading,
                    task_type=task_type,
                    spread=spread,
                    requested_model=requested,
                    model=model,
                    outcome=outcome,
                    status_code={
                        CallOutcome.OK: 200,
                        CallOutcome.RATE_LIMITED: 429,
                        CallOutcome.OVERLOADED: 529,
                        CallOutcome.ERROR: 500,
                    }.get(outcome),
                    attempt=n,
                    is_retry=n > 1,
                    is_fallback=is_fallback,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cache_read_tokens=cache_read,
                    cache_write_tokens=cache_write,
                    cache_write_5m_tokens=cache_write,
                    cost_usd=(
                        price(model, input_tokens, output_tokens, cache_read, cache_write)
                        if ok
                        else Decimal(0)
                    ),
                    latency_s=latency,
                    request_id=f"{SEED_TAG}{rng.getrandbits(48):012x}",
                    started_at=at - timedelta(seconds=latency),
                    created_at=at,
                )
            )
        return made

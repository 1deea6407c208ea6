"""Run given readings in this process: the bench's way to spread engine work over several
processes (`bench --workers N`), each sharing the global limiter through the database."""

from django.core.management.base import BaseCommand

from allocation.client_pool import runtime
from benchmarks.bench import run_ids


class Command(BaseCommand):
    help = "Run the given readings on this process's engine, N at a time."

    def add_arguments(self, parser):
        parser.add_argument("reading_ids", nargs="+")
        parser.add_argument("--concurrency", type=int, default=2)

    def handle(self, *args, reading_ids, concurrency, **options):
        runtime.run(run_ids(reading_ids, concurrency=concurrency))
        self.stdout.write(f"ran {len(reading_ids)} readings")

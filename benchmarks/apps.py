import os

from django.apps import AppConfig


class BenchmarksConfig(AppConfig):
    """Benchmark and development tooling: the bench, its worker processes, the seed's design
    to compare against and synthetic usage for the reports. Nothing here serves a querent."""

    name = "benchmarks"

    def ready(self):
        # Set by the service bench for the platform it starts (benchmarks/statement_counts.py).
        if directory := os.environ.get("BENCH_STATEMENTS_DIR"):
            from benchmarks import statement_counts

            statement_counts.install(directory)

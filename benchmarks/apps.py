from django.apps import AppConfig


class BenchmarksConfig(AppConfig):
    """Benchmark and development tooling: the bench, its worker processes, the seed's design
    to compare against and synthetic usage for the reports. Nothing here serves a querent."""

    name = "benchmarks"

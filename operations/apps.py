from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """What keeps the platform safe and observable in production: request limits applied
    before any parsing, health checks and Prometheus metrics."""

    name = "operations"
    verbose_name = "Operations"

    def ready(self):
        from operations import connection_pools

        connection_pools.install()

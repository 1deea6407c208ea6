from django.apps import AppConfig


class ReadingsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "readings"

    def ready(self):
        from django_q.signals import post_spawn, pre_execute

        from readings import broker, watchdog

        # Each worker process beats its heartbeat and recovers dead workers' readings.
        post_spawn.connect(watchdog.start, dispatch_uid="readings.watchdog")
        # A job's claim names the worker running it (readings/broker.py).
        pre_execute.connect(broker.claim_for_worker, dispatch_uid="readings.claim_for_worker")

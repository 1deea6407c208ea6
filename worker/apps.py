from django.apps import AppConfig


class WorkerConfig(AppConfig):
    """The runtime that runs readings: the django-q2 job, the fair queue, many readings per
    process, the broker that names who holds each job, heartbeats and recovery.

    It calls into readings; readings never imports it. What readings announces (a reading
    submitted, a reading ended) reaches the worker through readings.signals."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "worker"
    verbose_name = "Worker"

    def ready(self):
        from django_q.signals import post_spawn, pre_execute

        from readings.signals import reading_ended, reading_submitted
        from worker import broker, dispatch, watchdog

        # Each worker process beats its heartbeat and recovers dead workers' readings.
        post_spawn.connect(watchdog.start, dispatch_uid="worker.watchdog")
        # A job's claim names the worker running it (worker/broker.py).
        pre_execute.connect(broker.claim_for_worker, dispatch_uid="worker.claim_for_worker")
        # New readings join the fair queue; an ended one lets its owner's next one in.
        reading_submitted.connect(dispatch.on_submitted, dispatch_uid="worker.on_submitted")
        reading_ended.connect(dispatch.on_ended, dispatch_uid="worker.on_ended")

from django.apps import AppConfig


class ReadingsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "readings"

    def ready(self):
        from django_q.signals import post_spawn

        from readings import watchdog

        # Each worker process beats its heartbeat and recovers dead workers' readings.
        post_spawn.connect(watchdog.start, dispatch_uid="readings.watchdog")

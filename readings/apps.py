from django.apps import AppConfig


class ReadingsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "readings"

    def ready(self):
        from readings.estimate_history import on_reading_ended
        from readings.signals import reading_ended

        # Cost estimates learn from every reading that ends, however it ran.
        reading_ended.connect(on_reading_ended, dispatch_uid="readings.estimate_history")

from django.apps import AppConfig


class SpreadsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "spreads"

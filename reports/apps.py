from django.apps import AppConfig


class ReportsConfig(AppConfig):
    """Where the money goes: the cost page, its CSV and its JSON, staff only. It reads the
    call log and the readings; nothing below it imports it."""

    name = "reports"
    verbose_name = "Reports"

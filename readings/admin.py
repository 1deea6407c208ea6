from datetime import datetime

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from allocation.admin import ReadOnlyAdmin
from readings.models import DrawnCard, Reading, ReadingTask


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DrawnCardInline(ReadOnlyInline):
    model = DrawnCard
    fields = ["position", "card", "reversed"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("position", "card")


class ReadingTaskInline(ReadOnlyInline):
    model = ReadingTask
    fields = [
        "task_type",
        "phase",
        "batch_index",
        "position_indexes",
        "status",
        "model_used",
        "attempts",
        "cost",
        "started",
        "finished",
        "error",
    ]
    readonly_fields = fields

    @admin.display(description="Cost")
    def cost(self, obj):
        return f"${obj.cost_usd:.6f}"

    @admin.display(description="Started (UTC)")
    def started(self, obj):
        return _moment(obj.started_at)

    @admin.display(description="Finished (UTC)")
    def finished(self, obj):
        return _moment(obj.finished_at)


def _moment(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    """Readings are made through the API and the command line; here staff only look."""

    list_display = [
        "created_at",
        "spread",
        "owner",
        "status",
        "cost_usd",
        "wall_time_s",
        "calls",
        "rate_limit_hits",
        "fallbacks",
    ]
    list_filter = ["status", "spread"]
    list_select_related = ["spread", "owner"]
    search_fields = ["question", "id"]
    date_hierarchy = "created_at"
    inlines = [DrawnCardInline, ReadingTaskInline]
    fieldsets = [
        (None, {"fields": ["id", "owner", "spread", "question", "status", "error"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "attempts"]}),
        ("Metrics", {"fields": ["metrics"]}),
    ]
    readonly_fields = ["id", "created_at", "metrics"]

    @admin.display(description="Summary")
    def metrics(self, obj):
        speedup = (
            f" ({obj.sequential_s / obj.wall_time_s:.1f}x faster than one call at a time)"
            if obj.wall_time_s and obj.sequential_s
            else ""
        )
        rows = [
            ("Wall time", _seconds(obj.wall_time_s)),
            ("Sum of call latencies", _seconds(obj.sequential_s)),
            ("Time saved by running in parallel", _seconds(obj.time_saved_s) + speedup),
            ("Critical path (slowest call per phase)", _seconds(obj.critical_path_s)),
            ("Peak calls in flight", obj.peak_concurrent_calls),
            ("Provider calls", obj.calls),
            ("Rate-limit hits (429)", obj.rate_limit_hits),
            ("Retries", obj.retries),
            ("Fallbacks", obj.fallbacks),
            ("Tokens in / out", f"{obj.input_tokens:,} / {obj.output_tokens:,}"),
            ("Cost", f"${obj.cost_usd:.6f}"),
        ]
        return format_html(
            '<table>{}</table><p><a href="{}?{}">Every provider call of this reading</a></p>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
            reverse("admin:allocation_llmcall_changelist"),
            urlencode({"reading__id__exact": obj.pk}),
        )

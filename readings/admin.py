from datetime import datetime

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import Truncator

from allocation.admin import ReadOnlyAdmin
from allocation.money import usd_exact, usd_total
from readings.models import BatchRequest, DrawnCard, ProviderBatch, Reading, ReadingTask
from readings.selectors import reading_results


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
    fields = ["position", "card", "orientation"]
    readonly_fields = fields

    # Upright or reversed are both fine: words, not the admin's green tick and red cross.
    @admin.display(description="Orientation")
    def orientation(self, obj):
        return "Reversed" if obj.reversed else "Upright"

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

    @admin.display(description="Cost (USD)")
    def cost(self, obj):
        return usd_exact(obj.cost_usd)  # a task is one call, or a few retries of it

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


def cost_in_words(cost) -> str:
    """The total in dollars and cents, then every digit when rounding hid some."""
    total, exact = usd_total(cost), usd_exact(cost)
    return total if total == exact else f"{total} ({exact} exactly)"


def time_saved(reading: Reading) -> str:
    """The time parallel calls saved, in words; a negative saving says what it means."""
    saved, wall, sequential = reading.time_saved_s, reading.wall_time_s, reading.sequential_s
    if saved is None or not wall or not sequential:
        return _seconds(saved)
    if saved >= 0:
        return f"{saved:.2f} s ({sequential / wall:.1f}x faster than one call at a time)"
    return (
        f"None: the reading took {-saved:.2f} s longer than its calls one after another "
        f"({wall:.2f} s against {sequential:.2f} s). Its calls waited for something other "
        "than the model: a rate limit or concurrency slot (see the model's limits), retries "
        "after errors, or the worker. Raise the model's limits if they are below the provider's."
    )


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    """Readings are made through the API and the command line; here staff only look."""

    list_display = [
        "created",
        "spread",
        "owner",
        "short_question",
        "language",
        "status",
        "cost",
        "wall_time",
        "calls",
        "rate_limit_hits",
        "fallbacks",
    ]
    list_filter = ["status", "mode", "spread"]
    list_select_related = ["spread", "owner"]
    search_fields = ["question", "id"]
    date_hierarchy = "created_at"
    inlines = [DrawnCardInline, ReadingTaskInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "owner",
                    "spread",
                    "question",
                    "language",
                    "mode",
                    "status",
                    "error",
                ]
            },
        ),
        ("Text", {"fields": ["text"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "attempts"]}),
        ("Metrics", {"fields": ["metrics"]}),
    ]
    readonly_fields = ["id", "created_at", "metrics", "text"]
    # While the reading runs, the page fetches its text again every few seconds
    # (static/readings/admin_reading.js, from the API's detail of the reading).
    change_form_template = "admin/readings/reading/change_form.html"

    @admin.display(description="The reading")
    def text(self, obj):
        results = reading_results(obj)
        sections = [
            (
                f"{c['index']}. {c['position']}: {c['card']}"
                + (" (reversed)" if c["orientation"] == "reversed" else ""),
                c["text"],
                f"card-{c['index']}",
            )
            for c in results["cards"]
        ]
        sections += [
            ("Overall", results["overall"], "overall"),
            ("How the cards relate", results["relationships"], "relationships"),
            ("Advice", results["advice"], "advice"),
        ]
        return format_html(
            '<div class="reading-text" data-detail="{}" data-status="{}">{}</div>',
            reverse("api:reading-detail", kwargs={"pk": obj.pk}),
            obj.status,
            format_html_join(
                "",
                '<h4>{}</h4><p class="reading-part" data-part="{}">{}</p>',
                ((title, key, text or "(not written yet)") for title, text, key in sections),
            ),
        )

    @admin.display(description="Created (UTC)", ordering="created_at")
    def created(self, obj):
        return format_html(
            '<span class="nowrap">{}</span> <span class="nowrap">{}</span>',
            f"{obj.created_at:%Y-%m-%d}",
            f"{obj.created_at:%H:%M:%S}",
        )

    @admin.display(description="Cost (USD)", ordering="cost_usd")
    def cost(self, obj):
        return usd_total(obj.cost_usd)

    @admin.display(description="Question")
    def short_question(self, obj):
        return Truncator(obj.question).chars(60)

    @admin.display(description="Wall time (s)", ordering="wall_time_s")
    def wall_time(self, obj):
        return "-" if obj.wall_time_s is None else f"{obj.wall_time_s:.2f}"

    @admin.display(description="Summary")
    def metrics(self, obj):
        rows = [
            ("Wall time", _seconds(obj.wall_time_s)),
            ("Sum of call latencies", _seconds(obj.sequential_s)),
            ("Time saved by running in parallel", time_saved(obj)),
            ("Critical path (slowest call per phase)", _seconds(obj.critical_path_s)),
            ("Peak calls in flight", obj.peak_concurrent_calls),
            ("Provider calls", obj.calls),
            ("Rate-limit hits (429)", obj.rate_limit_hits),
            ("Retries", obj.retries),
            ("Fallbacks", obj.fallbacks),
            ("Tokens in / out", f"{obj.input_tokens:,} / {obj.output_tokens:,}"),
            ("Cost", cost_in_words(obj.cost_usd)),
        ]
        return format_html(
            '<table>{}</table><p><a href="{}?{}">Every provider call of this reading</a></p>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
            reverse("admin:allocation_llmcall_changelist"),
            urlencode({"reading__id__exact": obj.pk}),
        )


class BatchRequestInline(ReadOnlyInline):
    model = BatchRequest
    fields = ["custom_id", "task", "result", "recorded", "error"]
    readonly_fields = fields

    @admin.display(description="Recorded (UTC)")
    def recorded(self, obj):
        return _moment(obj.recorded_at)


@admin.register(ProviderBatch)
class ProviderBatchAdmin(ReadOnlyAdmin):
    """Economy readings' Message Batches (readings/economy.py): what was submitted, what
    the provider answered, and which task each request belongs to."""

    list_display = ["batch_id", "model", "status", "request_count", "submitted", "ended"]
    list_filter = ["status", "model"]
    search_fields = ["batch_id", "requests__custom_id"]
    date_hierarchy = "created_at"
    inlines = [BatchRequestInline]
    fields = [
        "batch_id",
        "model",
        "status",
        "request_count",
        "created_at",
        "submitted_at",
        "ended_at",
        "error",
    ]
    readonly_fields = fields

    @admin.display(description="Submitted (UTC)", ordering="submitted_at")
    def submitted(self, obj):
        return _moment(obj.submitted_at)

    @admin.display(description="Ended (UTC)", ordering="ended_at")
    def ended(self, obj):
        return _moment(obj.ended_at)

import time
from datetime import UTC, datetime

from django import forms
from django.contrib import admin
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from allocation import limit_advisor, model_catalogue
from allocation.limiter import get_params
from allocation.models import (
    LimitChange,
    LLMCall,
    ModelAllocation,
    ModelLimit,
    ModelPrice,
    ModelState,
)
from allocation.money import usd_exact
from allocation.selectors import (
    allocated_models,
    live_snapshots,
    snapshot_or_fresh,
    with_configured_limits,
)


class ModelAllocationForm(forms.ModelForm):
    class Meta:
        model = ModelAllocation
        fields = [
            "task_type",
            "spread",
            "model",
            "max_tokens",
            "temperature",
            "fallback_models",
            "fallback_cost_ceiling",
            "overload_patience_s",
            "cache_ttl",
        ]

    def clean_model(self):
        model = self.cleaned_data["model"].strip()
        if not model_catalogue.is_known(model):
            # Nobody could price its calls: it cannot be allocated until somebody can.
            raise forms.ValidationError(
                model_catalogue.unknown_model_message(model, proceed="give it a price first.")
            )
        return model


@admin.register(ModelAllocation)
class ModelAllocationAdmin(admin.ModelAdmin):
    form = ModelAllocationForm
    list_display = [
        "task_type",
        "scope",
        "model",
        "max_tokens",
        "temperature",
        "fallback_models",
        "fallback_cost_ceiling",
    ]
    list_filter = ["task_type", "spread"]
    list_select_related = ["spread"]
    search_fields = ["model", "fallback_models"]

    @admin.display(description="Spread", ordering="spread__slug")
    def scope(self, obj):
        return obj.spread.name if obj.spread_id else "All spreads (global)"


class ModelLimitForm(forms.ModelForm):
    new_model = forms.BooleanField(
        required=False,
        label="This is a new model",
        help_text="Tick to save a limit for a model id that genai-prices and the price "
        "overrides do not know yet.",
    )

    class Meta:
        model = ModelLimit
        fields = [
            "model",
            "requests_per_minute",
            "input_tokens_per_minute",
            "output_tokens_per_minute",
            "max_concurrent_calls",
        ]

    def clean(self):
        data = super().clean()
        model = (data.get("model") or "").strip()
        if model and not data.get("new_model") and not model_catalogue.is_known(model):
            self.add_error(
                "model",
                model_catalogue.unknown_model_message(
                    model, proceed="tick “This is a new model” below and save again."
                ),
            )
        return data


LIMIT_FIELDS = ModelLimitForm.Meta.fields[1:]


@admin.register(ModelLimit)
class ModelLimitAdmin(admin.ModelAdmin):
    form = ModelLimitForm
    fields = ["model", "new_model", *LIMIT_FIELDS]
    list_display = [
        "__str__",
        "requests",
        "input_tokens",
        "output_tokens",
        "max_concurrent_calls",
    ]

    # Limits run to millions: 8,000,000 reads at a glance, 8000000 does not.
    @admin.display(description="requests per minute", ordering="requests_per_minute")
    def requests(self, limit):
        return f"{limit.requests_per_minute:,}"

    @admin.display(description="input tokens per minute", ordering="input_tokens_per_minute")
    def input_tokens(self, limit):
        return f"{limit.input_tokens_per_minute:,}"

    @admin.display(description="output tokens per minute", ordering="output_tokens_per_minute")
    def output_tokens(self, limit):
        return f"{limit.output_tokens_per_minute:,}"

    def get_changeform_initial_data(self, request):
        """A new model's limits start from the * row's: the limits every other model has now,
        not the field defaults (ten times lower than the seeded * row)."""
        initial = super().get_changeform_initial_data(request)
        default = ModelLimit.objects.filter(model=ModelLimit.DEFAULT).values(*LIMIT_FIELDS).first()
        return {**(default or {}), **initial}


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "cache_write_1h_per_mtok",
        "batch_multiplier",
    ]
    change_list_template = "admin/allocation/modelprice/change_list.html"

    def changelist_view(self, request, extra_context=None):
        in_use = set(allocated_models())
        extra_context = {
            "prices_in_effect": model_catalogue.prices_in_effect(in_use=in_use),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the platform writes and staff only look at."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _utc(unix: float | None) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix else None


def _since(moment: datetime) -> str:
    """' since 12:03:10 UTC', with the day too unless it is today."""
    day = "" if moment.date() == datetime.now(UTC).date() else f"{moment:%Y-%m-%d} "
    return f" since {day}{moment:%H:%M:%S} UTC"


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyAdmin):
    list_display = [
        "created",
        "task_and_model",
        "outcome_and_attempt",
        "tokens",
        "cost",
        "latency",
        "reading_link",
    ]
    list_filter = ["outcome", "task_type", "model", "is_fallback"]
    list_select_related = ["spread"]
    date_hierarchy = "created_at"
    search_fields = ["=request_id", "model"]
    # The table grows by a dozen rows per reading: counting all of it on every page is the
    # slowest query of the changelist (healthchecks' Ping admin does the same).
    show_full_result_count = False
    # Facet counts are one COUNT per filter choice over the same big table.
    show_facets = admin.ShowFacets.NEVER

    def changelist_view(self, request, extra_context=None):
        extra_context = {"title": "LLM calls: every provider attempt", **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    # Narrow columns, so the whole row (cost and latency included) fits beside the filters
    # at 1,400 px: the day over the time, the retry and fallback flags in one word.
    @admin.display(description="When (UTC)", ordering="created_at")
    def created(self, obj):
        return format_html(
            '<span class="nowrap">{}</span> <span class="nowrap">{}</span>',
            f"{obj.created_at:%Y-%m-%d}",
            f"{obj.created_at:%H:%M:%S}",
        )

    @admin.display(description="Task and model", ordering="task_type")
    def task_and_model(self, obj):
        asked = (
            format_html(" <small>(asked for {})</small>", obj.requested_model)
            if obj.requested_model and obj.requested_model != obj.model
            else ""
        )
        return format_html(
            '{}<br><span class="nowrap">{}</span>{}', obj.get_task_type_display(), obj.model, asked
        )

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_and_attempt(self, obj):
        kinds = [
            word for word, flag in (("retry", obj.is_retry), ("fallback", obj.is_fallback)) if flag
        ]
        if not kinds:
            return obj.get_outcome_display()
        return format_html("{}<br><small>{}</small>", obj.get_outcome_display(), ", ".join(kinds))

    @admin.display(description="Tokens in / out")
    def tokens(self, obj):
        return f"{obj.input_tokens:,} / {obj.output_tokens:,}"

    @admin.display(description="Cost (USD)", ordering="cost_usd")
    def cost(self, obj):
        if obj.cost_estimated:  # a lost call: priced from its request, no usage came back
            return format_html("{}<br><small>estimated</small>", usd_exact(obj.cost_usd))
        return usd_exact(obj.cost_usd)  # one call: every digit

    @admin.display(description="Latency (s)", ordering="latency_s")
    def latency(self, obj):
        return f"{obj.latency_s:.2f}"

    @admin.display(description="Reading")
    def reading_link(self, obj):
        if not obj.reading_id:
            return "-"
        return format_html(
            '<a href="{}">{}</a>{}',
            reverse("admin:readings_reading_change", args=[obj.reading_id]),
            str(obj.reading_id)[:8],
            format_html("<br><small>{}</small>", obj.spread.name) if obj.spread_id else "",
        )


BREAKER_COLOURS = {"closed": "#2e7d32", "half_open": "#b35c00", "open": "#ba2121"}
HISTORY_ROWS = 50


@admin.register(ModelState)
class ModelStateAdmin(ReadOnlyAdmin):
    """One row per model the limiter has seen. The live figures come from the limiter's
    backend (Postgres or Redis, whichever holds the state), never from the row's own
    fields, so both backends show the same things."""

    list_display = [
        "model_name",
        "adaptive_limit",
        "configured_limit",
        "calls_in_flight",
        "breaker_state",
        "last_reason",
        "paused",
    ]
    list_display_links = ["model_name"]
    search_fields = ["model"]
    # The live state is read once per page; a second count of a small table buys nothing.
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["model"]}),
        (
            "Concurrency",
            {
                "fields": [
                    "adaptive_limit",
                    "configured_limit",
                    "calls_in_flight",
                    "last_reason",
                    "paused",
                ]
            },
        ),
        ("Circuit breaker", {"fields": ["breaker_state", "breaker_failures"]}),
        (
            "Rate-limit buckets (tokens left at the last refill)",
            {"fields": ["requests_left", "input_tokens_left", "output_tokens_left", "refilled"]},
        ),
        ("History: the last 50 limit changes", {"fields": ["history"]}),
        ("Raw shared state", {"fields": ["raw_adaptive", "raw_breaker"], "classes": ["collapse"]}),
    ]
    readonly_fields = [
        "adaptive_limit",
        "configured_limit",
        "calls_in_flight",
        "last_reason",
        "paused",
        "breaker_state",
        "breaker_failures",
        "requests_left",
        "input_tokens_left",
        "output_tokens_left",
        "refilled",
        "history",
        "raw_adaptive",
        "raw_breaker",
    ]

    def get_queryset(self, request):
        return with_configured_limits(super().get_queryset(request))

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        snapshots = live_snapshots(now=time.time())
        for obj in changelist.result_list:
            obj.snapshot = snapshot_or_fresh(snapshots, obj.model)
        return changelist

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            snapshots = live_snapshots(now=time.time(), model=obj.model)
            obj.snapshot = snapshot_or_fresh(snapshots, obj.model)
        return obj

    change_list_template = "admin/allocation/modelstate/change_list.html"

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "title": "Live limits and circuit breakers",
            "advisor": limit_advisor.advise(),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description="Model", ordering="model")
    def model_name(self, obj):
        return format_html('<span style="white-space: nowrap">{}</span>', obj.model)

    @admin.display(description="Adaptive limit")
    def adaptive_limit(self, obj):
        limit = obj.snapshot.state.adaptive.get("limit")
        if limit is None:
            return f"{get_params().aimd.initial_limit} (initial)"
        return limit

    @admin.display(description="Configured max", ordering="configured_max")
    def configured_limit(self, obj):
        if obj.configured_max is None:
            return "no ModelLimit: unlimited"
        source = "*" if obj.limit_source == ModelLimit.DEFAULT else "own row"
        return f"{obj.configured_max} ({source})"

    @admin.display(description="In flight now")
    def calls_in_flight(self, obj):
        return obj.snapshot.in_flight

    @admin.display(description="Circuit breaker")
    def breaker_state(self, obj):
        breaker = obj.snapshot.state.breaker
        state = breaker.get("state", "closed")
        colour = BREAKER_COLOURS.get(state, "inherit")
        if state == "open":
            opened = _utc(breaker.get("opened_at"))
            since = _since(opened) if opened else ""
            return format_html('<strong style="color: {}">open{}</strong>', colour, since)
        if state == "half_open":
            return format_html('<strong style="color: {}">half-open: probing</strong>', colour)
        failures = breaker.get("failures", 0)
        return format_html(
            '<span style="color: {}">{}</span>{}',
            colour,
            state,
            f" ({failures} failure{pluralize(failures)} in the window)" if failures else "",
        )

    @admin.display(description="Failures in the window")
    def breaker_failures(self, obj):
        return obj.snapshot.state.breaker.get("failures", 0)

    @admin.display(description="Last reason")
    def last_reason(self, obj):
        return obj.snapshot.state.adaptive.get("last_reason") or "-"

    @admin.display(description="Paused until")
    def paused(self, obj):
        state = obj.snapshot.state
        until = max(state.paused_until or 0, state.adaptive.get("paused_until") or 0)
        left = until - time.time()
        if left <= 0:
            return "-"
        return f"{_utc(until):%H:%M:%S} UTC (in {left:.0f} s)"

    @admin.display(description="Requests")
    def requests_left(self, obj):
        return f"{obj.snapshot.state.request_tokens:.2f}"

    @admin.display(description="Input tokens")
    def input_tokens_left(self, obj):
        return f"{obj.snapshot.state.input_tokens:,.0f}"

    @admin.display(description="Output tokens")
    def output_tokens_left(self, obj):
        return f"{obj.snapshot.state.output_tokens:,.0f}"

    @admin.display(description="Refilled at")
    def refilled(self, obj):
        refilled = _utc(obj.snapshot.state.refilled_at)
        return f"{refilled:%Y-%m-%d %H:%M:%S} UTC" if refilled else "never"

    @admin.display(description="Adaptive controller")
    def raw_adaptive(self, obj):
        return obj.snapshot.state.adaptive

    @admin.display(description="Circuit breaker")
    def raw_breaker(self, obj):
        return obj.snapshot.state.breaker

    @admin.display(description="Limit changes")
    def history(self, obj):
        changes = LimitChange.objects.filter(model=obj.model)[:HISTORY_ROWS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{change.created_at:%Y-%m-%d %H:%M:%S} UTC",
                    change.limit,
                    change.reason,
                    change.breaker_state or "-",
                )
                for change in changes
            ),
        )
        if not rows:
            return "No changes yet: the limit is where it started."
        return format_html(
            "<table><thead><tr><th>When</th><th>Limit</th><th>Reason</th><th>Breaker</th>"
            '</tr></thead><tbody>{}</tbody></table><p><a href="{}?{}">All changes for {}</a></p>',
            rows,
            reverse("admin:allocation_limitchange_changelist"),
            urlencode({"model": obj.model}),
            obj.model,
        )


@admin.register(LimitChange)
class LimitChangeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "model", "limit", "reason", "breaker_state"]
    list_filter = ["model", "reason", "breaker_state"]
    date_hierarchy = "created_at"
    search_fields = ["model"]

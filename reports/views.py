"""The cost reports: an admin-styled page, a CSV export and a JSON API, all staff only.

Thin: the form reads the range and filters, reports.selectors does the sums.
"""

import csv
import dataclasses
import math
from datetime import date, timedelta
from decimal import Decimal
from functools import wraps

from django import forms
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from allocation import limit_advisor
from reports import savings, selectors
from reports.chart import (
    NARROW,
    OTHER_COLOUR,
    TASK_COLOURS,
    WIDE,
    cost_chart,
    day_task_table,
)
from spreads.models import Spread, TaskType

# A bar per day: beyond two years the chart is unreadable and the page slow to draw.
MAX_DAYS = 731


class CostReportForm(forms.Form):
    """The date range (UTC days, both inclusive; default the last 30 days) and filters."""

    start = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter the start date as YYYY-MM-DD."},
    )
    end = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter the end date as YYYY-MM-DD."},
    )
    spread = forms.ChoiceField(required=False)
    task_type = forms.ChoiceField(
        required=False, choices=[("", "All task types"), *TaskType.choices]
    )
    model = forms.ChoiceField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["spread"].choices = [
            ("", "All spreads"),
            *Spread.objects.order_by("name").values_list("slug", "name"),
        ]
        self.fields["model"].choices = [
            ("", "All models"),
            *((name, name) for name in selectors.model_names()),
        ]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        default_start, default_end = selectors.default_range()
        end = data.get("end") or default_end
        start = data.get("start")
        if start is None:
            try:
                start = min(end - (default_end - default_start), end)
            except OverflowError:
                start = date.min
        if end >= date.max:
            raise forms.ValidationError("The end date is out of range.")
        if start > end:
            raise forms.ValidationError(
                f"The start date ({start}) is after the end date ({end}): "
                "pick a start on or before the end."
            )
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(
                f"Pick at most {MAX_DAYS} days; {start} to {end} is {(end - start).days + 1}."
            )
        data["start"], data["end"] = start, end
        return data

    def selector_args(self) -> dict:
        data = self.cleaned_data
        return {
            "start": data["start"],
            "end": data["end"],
            "spread": data.get("spread") or None,
            "task_type": data.get("task_type") or None,
            "model": data.get("model") or None,
        }


def staff_required(view):
    """Anonymous visitors go to the admin login; signed-in non-staff get a 403."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not request.user.is_staff:
            raise PermissionDenied("Cost reports are for staff.")
        return view(request, *args, **kwargs)

    return wrapped


def _query(args: dict, **extra) -> str:
    params = {key: value for key, value in {**args, **extra}.items() if value}
    return urlencode({key: str(value) for key, value in params.items()})


@staff_required
def costs_page(request):
    form = CostReportForm(request.GET)
    context = {
        **admin.site.each_context(request),
        "title": "Cost reports",
        "form": form,
    }
    if not form.is_valid():
        return render(request, "reports/costs.html", context, status=400)
    # Show the dates actually used when the range was left to its default.
    shown = request.GET.copy()
    shown["start"], shown["end"] = form.cleaned_data["start"], form.cleaned_data["end"]
    form.data = shown
    args = form.selector_args()
    summary = selectors.cost_summary(**args)
    labels = dict(TaskType.choices)
    options = selectors.model_options(start=args["start"], end=args["end"], spread=args["spread"])
    saved = savings.savings_summary(**args)
    for row in [*summary["by_task_type"], *options, *saved["by_task_type"], *saved["failover"]]:
        row["label"] = labels.get(row["task_type"], row["task_type"])
        row["colour"] = TASK_COLOURS.get(row["task_type"], OTHER_COLOUR)
    chart_data = {
        "start": args["start"],
        "end": args["end"],
        "by_day": summary["by_day"],
        "by_day_task_type": summary["by_day_task_type"],
    }
    context.update(
        summary=summary,
        charts=[cost_chart(**chart_data, layout=layout) for layout in (WIDE, NARROW)],
        chart_widths={"switch": WIDE.min_width, "wide_max": WIDE.width, "narrow_max": 480},
        chart_rows=day_task_table(**chart_data),
        task_types=[
            {"label": label, "colour": TASK_COLOURS[value]} for value, label in TaskType.choices
        ],
        csv_links={
            group: f"{reverse('reports:costs_csv')}?{_query(args, group=group)}"
            for group in CSV_GROUPS
        },
        api_link=f"{reverse('reports:costs_api')}?{_query(args)}",
        limits=_limits(args),
        options=options,
        savings=saved,
        spread_filter=args["spread"],
        today=timezone.now().date(),
    )
    return render(request, "reports/costs.html", context)


def _limits(args: dict) -> dict:
    """The live limiter state of each model, its changes in the report's range, and the
    limit advisor's last hour."""
    return {
        "models": selectors.limits_overview(model=args["model"]),
        "history": selectors.limit_history(
            start=args["start"], end=args["end"], model=args["model"]
        ),
        "advisor": limit_advisor.advise(model=args["model"] or None),
    }


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's "CSV
# injection"): staff-entered names (a spread, a model) must arrive as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(value) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    text = "" if value is None else str(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


# The summary's groupings, and the calls that failed over with what that cost.
CSV_GROUPS = [*selectors.GROUPS, "failover"]


def _csv_table(group: str, args: dict) -> tuple[list[str], list[dict]]:
    """The columns and rows of one CSV export; task types and models carry the caching,
    batch and failover figures after the summary's metrics."""
    if group == "failover":
        rows = savings.savings_summary(**args)["failover"]
        return [*savings.FAILOVER_COLUMNS, "unpriced_calls"], rows
    rows = selectors.cost_rows(group=group, **args)
    columns = [*selectors.GROUPS[group], *selectors.METRIC_NAMES]
    if group in ("task_type", "model"):
        rows = savings.with_savings(rows, group=group, savings=savings.savings_summary(**args))
        columns += savings.FIGURES
    return columns, rows


@staff_required
def costs_csv(request):
    form = CostReportForm(request.GET)
    group = request.GET.get("group", "day")
    if group not in CSV_GROUPS:
        return HttpResponse(
            f"Unknown group {group!r}: use one of {', '.join(CSV_GROUPS)}.\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    if not form.is_valid():
        problems = [message for messages in form.errors.values() for message in messages]
        return HttpResponse(
            "\n".join(problems) + "\n", status=400, content_type="text/plain; charset=utf-8"
        )
    args = form.selector_args()
    columns, rows = _csv_table(group, args)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="costs-{group}-{args["start"]}-to-{args["end"]}.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row[column]) for column in columns])
    return response


def _jsonable(value):
    """Money as exact decimal strings (never floats); dates and ids as strings."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, float) and math.isinf(value):
        return None  # JSON has no infinity: no limit
    return value


class CostSummaryAPI(APIView):
    """GET the cost summary for ?start=&end= (YYYY-MM-DD, UTC, inclusive) and optional
    ?spread=&task_type=&model=. Money is a decimal string in USD."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        summary="Cost summary (staff only)",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE, description="First UTC day, inclusive."),
            OpenApiParameter("end", OpenApiTypes.DATE, description="Last UTC day, inclusive."),
            OpenApiParameter("spread", OpenApiTypes.STR, description="A spread slug."),
            OpenApiParameter("task_type", OpenApiTypes.STR, enum=TaskType.values),
            OpenApiParameter("model", OpenApiTypes.STR, description="A model id."),
        ],
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="totals, by_task_type, by_model, by_spread, by_day, "
                "by_day_task_type and per_reading; money as decimal strings in USD. limits: "
                "each model's live adaptive limit, configured maximum, calls in flight and "
                "circuit breaker (models), and the limit changes in the range (history, "
                "newest first, at most 100), and the limit advisor's last hour (advisor: "
                "per model, seconds_bound per limit and the binding one; per task type, "
                "calls, p99_output_tokens against max_tokens, and calls_per_min and "
                "readings_per_min the limits allow now and with suggested_max_tokens). "
                "savings: the cache hit ratio, the savings "
                "from caching and from batches and the extra cost of failover, in total, "
                "by_task_type, by_model, and each failover (task type, fallback model, "
                "requested model); figures priced now from the token sums.",
            ),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="errors, by field."),
        },
    )
    def get(self, request):
        form = CostReportForm(request.query_params)
        if not form.is_valid():
            return Response({"errors": form.errors.get_json_data()}, status=400)
        args = form.selector_args()
        summary = selectors.cost_summary(**args)
        summary["limits"] = _limits(args)
        summary["savings"] = savings.savings_summary(**args)
        return Response(_jsonable(summary))

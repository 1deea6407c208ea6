from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from allocation.allocator import AllocationError, get_allocator
from allocation.models import TaskType
from spreads.models import Card, Position, PromptTemplate, Spread


class PositionFormSet(forms.BaseInlineFormSet):
    """A spread has exactly card_count positions, numbered 1..card_count."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [
            form.cleaned_data
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        card_count = self.instance.card_count
        if card_count and len(kept) != card_count:
            raise forms.ValidationError(
                f"This spread has {card_count} cards but {len(kept)} positions: "
                f"give it exactly {card_count} positions."
            )
        indexes = sorted(data["index"] for data in kept)
        if card_count and indexes != list(range(1, card_count + 1)):
            raise forms.ValidationError(
                f"Number the positions 1 to {card_count}, each once (got {indexes})."
            )


class PositionInline(admin.TabularInline):
    model = Position
    formset = PositionFormSet
    extra = 0
    fields = ["index", "name", "meaning"]
    formfield_overrides = {
        # Position meanings are a sentence or two: a one-row textarea keeps the table legible.
        Position._meta.get_field("meaning").__class__: {"widget": forms.Textarea(attrs={"rows": 1})}
    }


@admin.register(Spread)
class SpreadAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "card_count",
        "batch_size",
        "max_concurrent_calls",
        "max_tokens",
        "supports_parallel",
        "is_active",
    ]
    list_filter = ["is_active", "supports_parallel"]
    search_fields = ["name", "slug"]
    inlines = [PositionInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "card_count", "is_active"]}),
        (
            "How the reading runs",
            {"fields": ["supports_parallel", "batch_size", "max_concurrent_calls", "max_tokens"]},
        ),
        (
            "Prompt templates",
            {
                "description": "Leave empty to use <slug>_<task>.txt if it exists, else the "
                "generic card.txt, overall.txt, relationships.txt or advice.txt.",
                "fields": [
                    "card_template",
                    "overall_template",
                    "relationships_template",
                    "advice_template",
                ],
            },
        ),
        ("What the next reading will use", {"fields": ["effective_allocations"]}),
    ]
    readonly_fields = ["effective_allocations"]

    @admin.display(description="Models")
    def effective_allocations(self, obj):
        """Each task's model, limits and fallbacks as the allocator resolves them now, with the
        layer each came from (environment, spread, global or built-in default)."""
        if not obj.pk:
            return "Save the spread to see its allocations."
        rows = []
        for task_type in TaskType:
            try:
                config = get_allocator().get_config(task_type, spread=obj)
            except AllocationError as exc:
                rows.append((task_type.label, str(exc), "", "", ""))
                continue
            sources = config.sources
            rows.append(
                (
                    task_type.label,
                    f"{config.model} ({sources['model']})",
                    f"{config.max_tokens} ({sources['max_tokens']})",
                    f"{config.temperature} ({sources['temperature']})",
                    f"{', '.join(config.fallbacks) or '-'} ({sources['fallbacks']})",
                )
            )
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows
        )
        return format_html(
            "<table><thead><tr><th>Task</th><th>Model</th><th>Max tokens</th>"
            "<th>Temperature</th><th>Fallbacks</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "updated_at"]
    search_fields = ["name", "body"]


@admin.register(Card)
class CardAdmin(admin.ModelAdmin):
    list_display = ["name", "arcana", "suit", "number"]
    list_filter = ["arcana", "suit"]
    search_fields = ["name", "upright", "reversed"]

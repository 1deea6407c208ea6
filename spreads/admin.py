from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.urls import path, reverse
from django.utils.html import escape, format_html, format_html_join

from allocation.allocator import AllocationError, get_allocator
from spreads import cache_sharing, prompt_editor, prompt_sandbox
from spreads.models import Card, Position, PromptTemplate, Spread, SpreadText, TaskType


class PositionFormSet(forms.BaseInlineFormSet):
    """A spread has exactly card_count positions, numbered 1..card_count."""

    def get_form_kwargs(self, index):
        # A blank row comes numbered: the one after the rows above it. Left untouched it is
        # still blank (the number is its initial value) and is ignored on save.
        kwargs = super().get_form_kwargs(index)
        if index is not None and index >= self.initial_form_count():
            kwargs["initial"] = {"index": index + 1}
        return kwargs

    def add_fields(self, form, index):
        super().add_fields(form, index)
        # A table row has column headings but no <label>s: name each input for screen readers.
        row = "New position" if index is None else f"Position row {index + 1}"
        for name, field in form.fields.items():
            label = "delete" if name == "DELETE" else str(field.label or name).lower()
            field.widget.attrs["aria-label"] = f"{row}: {label}"

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
    fields = ["index", "name", "meaning", "column", "row", "rotation"]
    formfield_overrides = {
        # Position meanings are a sentence or two, sometimes more: room for three lines.
        Position._meta.get_field("meaning").__class__: {
            "widget": forms.Textarea(attrs={"rows": 3, "cols": 40, "class": "position-meaning"})
        },
        # Places are a number or two: the table stays within a desk's width.
        Position._meta.get_field("column").__class__: {
            "widget": forms.NumberInput(attrs={"class": "vPositiveSmallIntegerField"})
        },
    }

    class Media:
        # Numbers each added row, adds rows up to the card count as staff type it, and
        # draws the spread as laid out from the places being typed (spreads/layout.py's rules).
        js = ["spreads/positions.js"]
        css = {"all": ["spreads/positions.css"]}

    def get_extra(self, request, obj=None, **kwargs):
        """A new spread starts with numbered rows (the smallest seeded spread has three); an
        existing one shows its own positions only."""
        return 0 if obj else 3


class SpreadTextInline(admin.StackedInline):
    """A spread's name, description and positions' names in another page language."""

    model = SpreadText
    extra = 0
    verbose_name = "text in another language"
    verbose_name_plural = "texts in other languages (empty fields fall back to English)"


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
    inlines = [PositionInline, SpreadTextInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "card_count", "is_active"]}),
        (
            "How the reading runs",
            {
                "fields": [
                    "supports_parallel",
                    "batch_size",
                    "max_concurrent_calls",
                    "max_tokens",
                    "economy_fallback",
                ]
            },
        ),
        (
            "Prompt templates",
            {
                # The admin shows fieldset descriptions as HTML: <slug> must be escaped.
                "description": escape(
                    "Leave empty to use <slug>_<task>.txt if it exists, else the "
                    "generic card.txt, overall.txt, relationships.txt or advice.txt."
                ),
                "fields": [
                    "card_template",
                    "overall_template",
                    "relationships_template",
                    "advice_template",
                ],
            },
        ),
        ("What the next reading will use", {"fields": ["effective_allocations"]}),
        ("Prompt cache sharing", {"fields": ["cache_sharing"]}),
    ]
    readonly_fields = ["effective_allocations", "cache_sharing"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # The admin shows help texts as HTML; ours are plain text with <slug> in them.
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and field.help_text:
            field.help_text = escape(field.help_text)
        return field

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
                rows.append((task_type.label, str(exc), "", "", "", ""))
                continue
            sources = config.sources
            rows.append(
                (
                    task_type.label,
                    f"{config.model} ({sources['model']})",
                    f"{config.max_tokens} ({sources['max_tokens']})",
                    f"{config.temperature} ({sources['temperature']})",
                    f"{', '.join(config.fallbacks) or '-'} ({sources['fallbacks']})",
                    f"{_ceiling(config.fallback_cost_ceiling)} "
                    f"({sources['fallback_cost_ceiling']})",
                )
            )
        body = format_html_join("", "<tr>" + "<td>{}</td>" * 6 + "</tr>", rows)
        return format_html(
            '<div class="scroll-box" tabindex="0" role="region" aria-label="Models the next '
            'reading will use"><table><thead><tr><th>Task</th><th>Model</th><th>Max tokens</th>'
            "<th>Temperature</th><th>Fallbacks</th><th>Fallback cost ceiling</th></tr></thead>"
            "<tbody>{}</tbody></table></div>",
            body,
        )

    @admin.display(description="Where models break sharing")
    def cache_sharing(self, obj):
        """Which tasks cannot read each other's cached prompt parts with the models above,
        and which cache breakpoints are too short to cache anything (spreads.cache_sharing)."""
        if not obj.pk:
            return "Save the spread to see how its calls share the prompt cache."
        problems = cache_sharing.sharing_problems(obj)
        if not problems:
            return (
                "Nothing to warn about: every task that could read another's cached prompt "
                "parts runs on the same model, and every cached prefix is long enough."
            )
        return format_html(
            '<ul class="cache-sharing">{}</ul>',
            format_html_join("", "<li>{}</li>", ((problem,) for problem in problems)),
        )


def _ceiling(value) -> str:
    return f"{value}x the model's cost" if value is not None else "none"


class PromptTemplateForm(forms.ModelForm):
    class Meta:
        model = PromptTemplate
        fields = ["name", "body"]
        widgets = {
            "body": forms.Textarea(
                attrs={"rows": 30, "cols": 100, "spellcheck": "false", "class": "prompt-body"}
            )
        }

    def clean_body(self):
        body = self.cleaned_data["body"]
        # Before rendering anything: a refused tag ({% debug %}, {% load %}...) is named as such.
        refused = prompt_sandbox.refusal(body)
        if refused:
            raise forms.ValidationError(refused)
        name = self.cleaned_data.get("name") or self.data.get("name") or ""
        shown = prompt_editor.preview(
            body,
            spread=prompt_editor.sample_spread_for(name),
            language=prompt_editor.language_of(name),
        )
        if shown.unknown:
            raise forms.ValidationError(prompt_editor.unknown_variables_message(shown.unknown))
        return body


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    """Database overrides of the prompt files, with the files themselves listed to override,
    and a live preview against a sample reading while editing."""

    form = PromptTemplateForm
    list_display = ["name", "updated_at"]
    search_fields = ["name", "body"]
    change_list_template = "admin/spreads/prompttemplate/change_list.html"
    change_form_template = "admin/spreads/prompttemplate/change_form.html"

    def get_urls(self):
        preview = path(
            "preview/",
            self.admin_site.admin_view(self.preview_view),
            name="spreads_prompttemplate_preview",
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request):
        """POST name and body: the prompt rendered against a sample reading, as JSON. It runs
        any body, so it needs the right to change templates, and runs within the render
        budget as every render does."""
        if request.method != "POST":
            return JsonResponse({"error": "POST the template's name and body."}, status=405)
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        name = request.POST.get("name", "")
        shown = prompt_editor.preview(
            request.POST.get("body", ""),
            spread=prompt_editor.sample_spread_for(name),
            language=prompt_editor.language_of(name),
        )
        return JsonResponse(
            {
                "text": shown.text,
                "error": shown.error,
                "unknown": shown.unknown,
                "warning": prompt_editor.unknown_variables_message(shown.unknown)
                if shown.unknown
                else "",
            }
        )

    def get_changeform_initial_data(self, request):
        """?name=celtic_cross_card.txt starts an override from the shipped file's text."""
        initial = super().get_changeform_initial_data(request)
        source = prompt_editor.builtin_source(initial.get("name", ""))
        if source is not None and "body" not in initial:
            initial["body"] = source
        return initial

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "builtin_templates": prompt_editor.builtin_templates(),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        name = obj.name if obj else request.GET.get("name", "")
        spread = prompt_editor.sample_spread_for(name)
        context.update(
            preview_url=reverse("admin:spreads_prompttemplate_preview"),
            sample_spread=spread,
            known_variables=prompt_editor.KNOWN_VARIABLES,
            allowed_tags=prompt_sandbox.ALLOWED_TAGS,
            allowed_filters=prompt_sandbox.ALLOWED_FILTERS,
            builtin_name=name if prompt_editor.builtin_source(name) is not None else "",
        )
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(Card)
class CardAdmin(admin.ModelAdmin):
    list_display = ["name", "arcana", "suit", "number"]
    list_filter = ["arcana", "suit"]
    search_fields = ["name", "upright", "reversed"]

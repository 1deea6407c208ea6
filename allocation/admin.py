from django.contrib import admin

from allocation.models import ModelAllocation, ModelLimit, ModelPrice


@admin.register(ModelAllocation)
class ModelAllocationAdmin(admin.ModelAdmin):
    list_display = ["task_type", "scope", "model", "max_tokens", "temperature", "fallback_models"]
    list_filter = ["task_type", "spread"]
    list_select_related = ["spread"]
    search_fields = ["model", "fallback_models"]

    @admin.display(description="Spread", ordering="spread__slug")
    def scope(self, obj):
        return obj.spread.name if obj.spread_id else "All spreads (global)"


@admin.register(ModelLimit)
class ModelLimitAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "requests_per_minute",
        "input_tokens_per_minute",
        "output_tokens_per_minute",
        "max_concurrent_calls",
    ]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
    ]

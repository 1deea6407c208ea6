"""Global allocations, as the design asks: cards on a fast cheap model, the overall reading
on a strong one, relationships and advice on a middle one, each with a fallback."""

from django.db import migrations

ALLOCATIONS = [
    # task type, model, max_tokens, temperature, fallbacks
    ("card_interpretation", "claude-haiku-5-5", 1024, 1.0, "claude-haiku-4-5"),
    ("overall_reading", "claude-sonnet-5-5", 2048, 1.0, "claude-sonnet-5"),
    ("relationships", "claude-sonnet-5", 1536, 1.0, "claude-haiku-5-5"),
    ("advice", "claude-sonnet-5", 1024, 1.0, "claude-haiku-5-5"),
]
# Temperature 1.0 is the API's default, and the only value models newer than Opus 4.6
# accept; staff may lower it for a model that still supports sampling settings.


def seed(apps, schema_editor):
    ModelAllocation = apps.get_model("allocation", "ModelAllocation")
    ModelLimit = apps.get_model("allocation", "ModelLimit")
    for task_type, model, max_tokens, temperature, fallbacks in ALLOCATIONS:
        ModelAllocation.objects.create(
            task_type=task_type,
            spread=None,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            fallback_models=fallbacks,
        )
    # Anthropic's Tier 4 limits for its current models, as a start: staff set their
    # organisation's own. Calls are admitted at most a second's worth of refill at a time.
    ModelLimit.objects.create(
        model="*",
        requests_per_minute=4_000,
        input_tokens_per_minute=2_000_000,
        output_tokens_per_minute=400_000,
        max_concurrent_calls=50,
    )


def unseed(apps, schema_editor):
    apps.get_model("allocation", "ModelAllocation").objects.filter(spread=None).delete()
    apps.get_model("allocation", "ModelLimit").objects.filter(model="*").delete()


class Migration(migrations.Migration):
    dependencies = [("allocation", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]

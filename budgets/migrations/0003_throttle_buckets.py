"""Throttles count in buckets of their own (budgets/rate_buckets.py), taken atomically; the
database cache table they counted in before is dropped (its counts expire within a period)."""

from django.db import migrations, models

OLD_TABLE = "budgets_throttle_cache"


def drop_cache_table(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(OLD_TABLE)}")


def create_cache_table(apps, schema_editor):
    from django.core.management import call_command

    call_command(
        "createcachetable", OLD_TABLE, database=schema_editor.connection.alias, verbosity=0
    )


class Migration(migrations.Migration):
    dependencies = [("budgets", "0002_throttle_cache_table")]

    operations = [
        migrations.CreateModel(
            name="ThrottleBucket",
            fields=[
                ("key", models.CharField(max_length=200, primary_key=True, serialize=False)),
                (
                    "full_at",
                    models.FloatField(
                        help_text="Unix time at which the bucket is full again (GCRA's "
                        "theoretical arrival time)."
                    ),
                ),
            ],
        ),
        migrations.RunPython(drop_cache_table, create_cache_table),
    ]

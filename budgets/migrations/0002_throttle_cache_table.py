"""The database cache table the throttles count in (settings.CACHES["throttle"]), so that
every web process shares the counts without another service."""

from django.core.management import call_command
from django.db import migrations

TABLE = "budgets_throttle_cache"


def create(apps, schema_editor):
    call_command("createcachetable", TABLE, database=schema_editor.connection.alias, verbosity=0)


def drop(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(TABLE)}")


class Migration(migrations.Migration):
    dependencies = [("budgets", "0001_initial")]

    operations = [migrations.RunPython(create, drop)]

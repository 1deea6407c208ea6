# WorkerHeartbeat and JobClaim now belong to the worker app (worker/migrations/0001): only
# their state leaves here; the tables and rows stay.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("operations", "0003_jobclaim_until_done"),
        ("worker", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="JobClaim"),
                migrations.DeleteModel(name="WorkerHeartbeat"),
            ],
            database_operations=[],
        ),
    ]

# The worker's models move here from operations/ with their rows: this migration only takes
# over their state (the tables stay as they are); 0002 renames the tables.
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("operations", "0003_jobclaim_until_done"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="WorkerHeartbeat",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("holder", models.CharField(help_text="host:pid of the worker.", max_length=100, unique=True)),
                        ("cluster", models.CharField(blank=True, db_index=True, help_text="host:pid of the worker's cluster (the process that forked it).", max_length=100)),
                        ("started_at", models.DateTimeField(auto_now_add=True)),
                        ("beat_at", models.DateTimeField(db_index=True)),
                    ],
                    options={"ordering": ["-beat_at"], "db_table": "operations_workerheartbeat"},
                ),
                migrations.CreateModel(
                    name="JobClaim",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("job_id", models.BigIntegerField(help_text="The django-q OrmQ row.", unique=True)),
                        ("cluster", models.CharField(help_text="host:pid of the cluster that took it.", max_length=100)),
                        ("worker", models.CharField(blank=True, help_text="host:pid of the worker running it; empty: queued.", max_length=100)),
                        ("lock", models.DateTimeField(help_text="The lock the cluster set: a later claim changes it.")),
                        ("claimed_at", models.DateTimeField()),
                        ("until_done", models.BooleanField(default=False, help_text="The job returned but its reading runs on in the worker: the worker keeps the job locked and acknowledges it when the reading ends.")),
                    ],
                    options={"ordering": ["claimed_at"], "db_table": "operations_jobclaim"},
                ),
            ],
            database_operations=[],
        ),
    ]

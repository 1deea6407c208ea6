# The moved tables take the worker app's names (ALTER TABLE ... RENAME keeps every row), their
# content types follow them, and jobs already queued under the old job's path are rewritten
# to the new one (readings.tasks.run_reading is now worker.tasks.reading_job).
from django.db import migrations

OLD_JOB, NEW_JOB = "readings.tasks.run_reading", "worker.tasks.reading_job"


def content_types_follow(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(
        app_label="operations", model__in=["jobclaim", "workerheartbeat"]
    ).update(app_label="worker")


def queued_jobs_follow(apps, schema_editor):
    from django_q.signing import BadSignature, SignedPackage

    OrmQ = apps.get_model("django_q", "OrmQ")
    for job in OrmQ.objects.all():
        try:
            task = SignedPackage.loads(job.payload)
        except BadSignature:
            continue
        if task.get("func") == OLD_JOB:
            task["func"] = NEW_JOB
            OrmQ.objects.filter(pk=job.pk).update(payload=SignedPackage.dumps(task))


class Migration(migrations.Migration):
    dependencies = [
        ("worker", "0001_initial"),
        ("operations", "0004_runtime_models_moved_to_worker"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.AlterModelTable(name="workerheartbeat", table=None),
        migrations.AlterModelTable(name="jobclaim", table=None),
        migrations.RunPython(content_types_follow, migrations.RunPython.noop),
        migrations.RunPython(queued_jobs_follow, migrations.RunPython.noop),
    ]

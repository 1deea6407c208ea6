from django.core.management.base import BaseCommand

from worker.dispatch import dispatch_all_waiting


class Command(BaseCommand):
    help = (
        "Queue every user's waiting readings up to READINGS_QUEUED_PER_USER (after a worker "
        "died between ending one reading and queueing its owner's next)."
    )

    def handle(self, *args, **options):
        queued = dispatch_all_waiting()
        self.stdout.write(f"Queued {queued} reading{'s' if queued != 1 else ''}.")

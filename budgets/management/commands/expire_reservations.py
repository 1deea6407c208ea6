from django.core.management.base import BaseCommand

from budgets.services import expire_reservations


class Command(BaseCommand):
    help = (
        "Release every budget hold whose reading was deleted, has ended, or is older than "
        "BUDGET_RESERVATION_TTL_S (reserving does this for the budgets it touches)."
    )

    def handle(self, *args, **options):
        released = expire_reservations()
        self.stdout.write(f"Released {released} hold{'s' if released != 1 else ''}.")

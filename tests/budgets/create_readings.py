"""A separate process that creates readings at the same moment as another one:
`python -m tests.budgets.create_readings OWNER_ID COUNT START_AT` (DATABASE_URL set), printing
{"accepted": n, "refused": m} as JSON. Used to race two processes against one budget."""

import json
import sys
import threading
import time

import django


def main(owner_id: int, count: int, start_at: float) -> None:
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from budgets.services import BudgetExceeded
    from readings.services import CardChoice, reading_create

    owner = get_user_model().objects.get(pk=owner_id)
    cards = [CardChoice("the-fool"), CardChoice("the-magician"), CardChoice("the-star")]
    outcomes = []

    def create():
        try:
            reading_create(owner=owner, spread="three_card", question="Race?", cards=cards)
            outcomes.append("accepted")
        except BudgetExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(count)]
    time.sleep(max(0.0, start_at - time.time()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({k: outcomes.count(k) for k in ("accepted", "refused")}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))

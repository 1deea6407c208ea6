"""Rows staff edit in the admin that every call or new reading reads: read at most once per
FRESH_S per process, and afresh in this process as soon as one is saved or deleted.

Staff change prices, allocations and templates a few times a day; the platform reads them for
every call it prices and every reading it estimates, hundreds of times a minute. Kept here, a
read is a dictionary look-up; an edit in the admin reaches this process at once (the model's
post_save and post_delete signals) and the other processes within FRESH_S, as the limiter's
limits do (allocation/limiter/backends). A bulk `.update()` sends no signal: it reaches every
process within FRESH_S.
"""

import math
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db.models import Model, QuerySet
from django.db.models.signals import post_delete, post_save

FRESH_S = 2.0

T = TypeVar("T")

_tables: list["StaffTable"] = []


class StaffTable(Generic[T]):
    """One small table's rows as this process last read them, shaped by `load`."""

    def __init__(self, model: type[Model], load: Callable[[QuerySet], T]):
        self._model, self._load = model, load
        self._value: T | None = None
        self._read_at = -math.inf
        post_save.connect(self.forget, sender=model, weak=False)
        post_delete.connect(self.forget, sender=model, weak=False)
        _tables.append(self)

    def get(self) -> T:
        if not self.is_fresh():
            # Two threads may both read: the same rows, so either result will do.
            self._value = self._load(self._model.objects.all())
            self._read_at = time.monotonic()
        return self._value

    def is_fresh(self) -> bool:
        """True while get() answers without reading the table."""
        return time.monotonic() - self._read_at < FRESH_S

    def forget(self, **_signal_kwargs) -> None:
        self._read_at = -math.inf


def forget_all() -> None:
    """Read every table afresh next time (tests, after rolling back what they wrote)."""
    for table in _tables:
        table.forget()

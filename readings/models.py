import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from allocation.models import TaskType


class ReadingStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Reading(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="readings",
        help_text="Empty for readings made from the command line or the bench.",
    )
    spread = models.ForeignKey("spreads.Spread", on_delete=models.PROTECT, related_name="readings")
    question = models.TextField()
    status = models.CharField(
        max_length=10, choices=ReadingStatus.choices, default=ReadingStatus.QUEUED
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the reading joined the worker's queue; empty while it waits for its "
        "owner's earlier readings (fair queuing, readings/dispatch.py).",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="How many times a worker has started this reading."
    )

    # Metrics, written when the reading ends (see readings/metrics.py).
    wall_time_s = models.FloatField(null=True, blank=True)
    sequential_s = models.FloatField(
        null=True, blank=True, help_text="Sum of the reading's call latencies."
    )
    time_saved_s = models.FloatField(null=True, blank=True)
    critical_path_s = models.FloatField(
        null=True, blank=True, help_text="Sum over phases of the slowest call."
    )
    peak_concurrent_calls = models.PositiveSmallIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0)
    rate_limit_hits = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    fallbacks = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(
                fields=["owner", "created_at"],
                condition=Q(dispatched_at__isnull=True),
                name="reading_waiting_for_dispatch",
            ),
        ]

    def __str__(self):
        return f"{self.spread} reading {str(self.id)[:8]} ({self.status})"


class DrawnCard(models.Model):
    reading = models.ForeignKey(Reading, on_delete=models.CASCADE, related_name="drawn_cards")
    position = models.ForeignKey("spreads.Position", on_delete=models.PROTECT)
    card = models.ForeignKey("spreads.Card", on_delete=models.PROTECT)
    reversed = models.BooleanField(default=False)

    class Meta:
        ordering = ["reading", "position__index"]
        constraints = [
            models.UniqueConstraint(fields=["reading", "position"], name="one_card_per_position"),
            models.UniqueConstraint(fields=["reading", "card"], name="no_duplicate_cards"),
        ]

    def __str__(self):
        return f"{self.card}{' (reversed)' if self.reversed else ''} in {self.position}"


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ReadingTask(models.Model):
    """One engine task: a card batch, the overall reading, relationships or advice.

    Saved the moment it finishes, so a redelivered job runs only what is left.
    """

    reading = models.ForeignKey(Reading, on_delete=models.CASCADE, related_name="tasks")
    task_type = models.CharField(max_length=30, choices=TaskType.choices)
    phase = models.PositiveSmallIntegerField(
        help_text="1: card batches; 2: overall and relationships; 3: advice."
    )
    batch_index = models.PositiveSmallIntegerField(default=0)
    position_indexes = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    model_used = models.CharField(max_length=100, blank=True)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["reading", "phase", "batch_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["reading", "task_type", "batch_index"], name="one_task_per_slot"
            ),
            models.CheckConstraint(condition=Q(phase__in=[1, 2, 3]), name="task_phase_1_to_3"),
        ]

    def __str__(self):
        if self.task_type == TaskType.CARD_INTERPRETATION:
            return f"cards {self.position_indexes}"
        return self.get_task_type_display()

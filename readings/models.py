import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from spreads.models import TaskType


class Language(models.TextChoices):
    """The languages a reading can be written in; each has its own prompt templates."""

    ENGLISH = "en", "English"
    KOREAN = "ko", "한국어"


class ReadingStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    # Admitted, but its next step's worst case does not fit in a budget now: it goes on when
    # money is released, the limit is raised or the period turns (budgets/services.py).
    WAITING_FOR_BUDGET = "waiting_for_budget", _("Waiting for budget")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


# A reading in one of these has not ended: its job (or its batches) still owns it.
UNFINISHED = (ReadingStatus.QUEUED, ReadingStatus.RUNNING, ReadingStatus.WAITING_FOR_BUDGET)


class ReadingMode(models.TextChoices):
    """How a reading's calls are sent: at once, or through the Message Batches API at half
    price, in minutes to hours (readings/economy.py)."""

    STANDARD = "standard", "Standard"
    ECONOMY = "economy", "Economy (Message Batches, half price, slower)"


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
    mode = models.CharField(
        max_length=10, choices=ReadingMode.choices, default=ReadingMode.STANDARD
    )
    language = models.CharField(
        max_length=5,
        choices=Language.choices,
        default=Language.ENGLISH,
        help_text="What the reading is written in: its prompts are this language's templates.",
    )
    status = models.CharField(
        max_length=20, choices=ReadingStatus.choices, default=ReadingStatus.QUEUED
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the reading joined the worker's queue; empty while it waits for its "
        "owner's earlier readings (fair queuing, worker/dispatch.py).",
    )
    held_by = models.CharField(
        max_length=100,
        blank=True,
        help_text="host:pid of the worker process running it, where the queue cannot say "
        "(the Redis broker): recovery requeues it if that process dies.",
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
        constraints = [
            models.CheckConstraint(
                condition=Q(language__in=Language.values), name="reading_language_known"
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
    texts = models.JSONField(
        default=dict,
        blank=True,
        help_text="A card batch's interpretation of each position, by position index: "
        "the model's structured answer, so no position is given another card's text.",
    )
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


class BatchStatus(models.TextChoices):
    # Its rows are written before the provider is asked, so a crash in between is visible.
    SUBMITTING = "submitting", "Submitting"
    IN_PROGRESS = "in_progress", "In progress"
    ENDED = "ended", "Ended (results stored)"
    REJECTED = "rejected", "Rejected whole by the provider"


class ProviderBatch(models.Model):
    """One Message Batches API batch: the calls of many economy readings' tasks, on one model.

    The provider's id is stored the moment it answers, so a restarted worker collects the
    results of the batches it submitted instead of submitting their tasks again.
    """

    batch_id = models.CharField(
        max_length=100, blank=True, help_text="The provider's id (msgbatch_...)."
    )
    model = models.CharField(max_length=100)
    status = models.CharField(
        max_length=12, choices=BatchStatus.choices, default=BatchStatus.SUBMITTING
    )
    request_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="The provider's message, if it refused it.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "provider batches"
        constraints = [
            models.UniqueConstraint(
                fields=["batch_id"], condition=~Q(batch_id=""), name="one_row_per_provider_batch"
            )
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self):
        return f"{self.batch_id or 'batch (not submitted)'} on {self.model} ({self.status})"


class BatchResult(models.TextChoices):
    WAITING = "", "Waiting"
    SUCCEEDED = "succeeded", "Succeeded"
    ERRORED = "errored", "Errored"
    EXPIRED = "expired", "Expired"
    CANCELED = "canceled", "Canceled"
    REJECTED = "rejected", "Batch rejected"


class BatchRequest(models.Model):
    """One request of a batch: custom_id ties the provider's result to its task."""

    batch = models.ForeignKey(ProviderBatch, on_delete=models.CASCADE, related_name="requests")
    task = models.ForeignKey(ReadingTask, on_delete=models.CASCADE, related_name="batch_requests")
    custom_id = models.CharField(max_length=64, unique=True)
    result = models.CharField(
        max_length=10, choices=BatchResult.choices, default=BatchResult.WAITING, blank=True
    )
    error = models.TextField(blank=True)
    recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "pk"]
        constraints = [
            # A task is in at most one batch still waiting for its result: never paid twice.
            models.UniqueConstraint(
                fields=["task"], condition=Q(result=""), name="one_waiting_batch_request_per_task"
            )
        ]

    def __str__(self):
        return self.custom_id


class EventKind(models.TextChoices):
    TASK_STARTED = "task_started", "Task started"
    TEXT = "text", "Text delta"
    TASK_RESTARTED = "task_restarted", "Task restarted"
    TASK_FINISHED = "task_finished", "Task finished"
    STATUS = "status", "Status changed"
    READING_FINISHED = "reading_finished", "Reading finished"


class ReadingEvent(models.Model):
    """What the worker tells a reading's live viewers, in order (readings/live.py).

    Kept in the database so that a viewer who connects late, or reconnects with
    Last-Event-ID, is sent what it missed before anything new: the id is the SSE event id.
    Text deltas arrive here batched (a few per second per task), never one row per token.
    """

    id = models.BigAutoField(primary_key=True)
    reading = models.ForeignKey(Reading, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["reading", "id"])]

    def __str__(self):
        return f"{self.kind} #{self.id}"


class EstimateSample(models.Model):
    """What one finished task's call really sent and got, under the prompt key its estimate
    gave it (readings/estimate_history.py). The estimator learns from these rather than from
    the usage log so that what it learned outlives the readings and calls (deleted bench
    readings, pruned logs), and so that history of another prompt never counts."""

    key = models.CharField(max_length=32, help_text="The prompt key (readings/estimates.py).")
    task_type = models.CharField(max_length=30, choices=TaskType.choices)
    model = models.CharField(max_length=100)
    language = models.CharField(max_length=5, choices=Language.choices)
    batched = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(
        help_text="The rendered prompt at four characters a token, earlier answers left out."
    )
    quoted_tokens = models.PositiveIntegerField(
        help_text="The earlier answers it quoted, as the provider counted their output."
    )
    input_tokens = models.PositiveIntegerField(
        help_text="All the input the provider counted: uncached, cache reads and writes."
    )
    output_tokens = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["key", "-id"])]

    def __str__(self):
        return f"{self.task_type} on {self.model} ({self.key[:8]})"

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from allocation.outcomes import CallOutcome  # noqa: F401 - the log's choices, imported from here
from allocation.task_types import task_type_choices


class CacheTTL(models.TextChoices):
    """How long a marked prompt prefix stays in the provider's cache after its last use."""

    OFF = "off", "Not cached"
    FIVE_MINUTES = "5m", "5 minutes (write 1.25x input)"
    ONE_HOUR = "1h", "1 hour (write 2x input)"


def parse_model_list(text: str) -> list[str]:
    return [name.strip() for name in text.replace("\n", ",").split(",") if name.strip()]


class ModelAllocation(models.Model):
    """Which model does a task type, globally (no spread) or for one spread."""

    task_type = models.CharField(max_length=30, choices=task_type_choices)
    spread = models.ForeignKey(
        "spreads.Spread",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="allocations",
        help_text="Empty: the global default for this task type.",
    )
    model = models.CharField(
        max_length=100, help_text="An Anthropic model id, e.g. claude-haiku-4-5."
    )
    max_tokens = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    temperature = models.FloatField(
        default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    fallback_models = models.CharField(
        max_length=500,
        blank=True,
        help_text="Tried in order when the model fails: comma-separated model ids.",
    )
    fallback_cost_ceiling = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text="The most a fallback may cost for the same call, as a multiple of the "
        "model's cost: 1.00 allows no pricier fallback, 3.00 allows up to three times. A "
        "fallback above it is skipped. Empty: no opinion (the global allocation decides, "
        "else any fallback may be used).",
    )
    overload_patience_s = models.PositiveIntegerField(
        "overload patience (s)",
        null=True,
        blank=True,
        validators=[MaxValueValidator(3600)],
        help_text="While the provider is overloaded (529, or an overloaded_error mid-stream), "
        "how many seconds a task keeps trying its model and fallbacks, with backoff, before "
        "it fails. Empty: the global allocation's, else 60.",
    )
    cache_ttl = models.CharField(
        "cache TTL",
        max_length=3,
        blank=True,
        choices=CacheTTL.choices,
        help_text="How long this task's calls keep the reading's shared part cached. Empty: the "
        "spread's reading cache TTL.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["spread__slug", "task_type"]
        constraints = [
            models.UniqueConstraint(
                fields=["task_type", "spread"],
                condition=Q(spread__isnull=False),
                name="allocation_one_per_spread_and_task",
            ),
            models.UniqueConstraint(
                fields=["task_type"],
                condition=Q(spread__isnull=True),
                name="allocation_one_global_per_task",
            ),
            models.CheckConstraint(
                condition=Q(temperature__gte=0, temperature__lte=1),
                name="allocation_temperature_0_to_1",
            ),
            models.CheckConstraint(
                condition=Q(fallback_cost_ceiling__isnull=True) | Q(fallback_cost_ceiling__gt=0),
                name="allocation_fallback_cost_ceiling_positive",
            ),
        ]

    def __str__(self):
        scope = self.spread.slug if self.spread_id else "global"
        return f"{self.get_task_type_display()} ({scope}): {self.model}"

    @property
    def fallbacks(self) -> list[str]:
        return parse_model_list(self.fallback_models)

    def _max_tokens_problem(self) -> str | None:
        """The allocator caps max_tokens at the spread's own max_tokens: a larger value would
        be silently cut, so say so instead."""
        if not self.max_tokens:
            return None
        if self.spread_id:
            cap = self.spread.max_tokens
            if self.max_tokens > cap:
                return (
                    f"{self.spread.name} caps its calls at {cap:,} tokens: set max_tokens to "
                    f"{cap:,} or less, or raise the spread's max_tokens first."
                )
            return None
        # The scope's model, by its relation: this layer does not import the domain.
        scopes = self._meta.get_field("spread").related_model.objects
        cap = scopes.aggregate(cap=models.Max("max_tokens"))["cap"]
        if cap and self.max_tokens > cap:
            return (
                f"No spread allows calls of more than {cap:,} tokens: set max_tokens to "
                f"{cap:,} or less, or raise a spread's max_tokens first."
            )
        return None

    def clean(self):
        from allocation.pricing import price_problem

        errors = {}
        if self.temperature is not None and not 0 <= self.temperature <= 1:
            errors["temperature"] = "Temperature must be between 0 and 1."
        if self.model:
            problem = price_problem(self.model.strip())
            if problem:
                errors["model"] = problem
        cap_problem = self._max_tokens_problem()
        if cap_problem:
            errors["max_tokens"] = cap_problem
        for name in self.fallbacks:
            problem = price_problem(name)
            if problem:
                errors["fallback_models"] = problem
                break
            if name == self.model:
                errors["fallback_models"] = f"{name} is the main model; a fallback must differ."
                break
        if not errors and self.fallback_cost_ceiling is not None:
            from allocation.failover_cost import fallbacks_above_ceiling

            above = fallbacks_above_ceiling(
                self.model.strip(), self.fallbacks, self.fallback_cost_ceiling, self.max_tokens
            )
            if above:
                # A fallback that can never be used only looks like protection.
                errors["fallback_cost_ceiling"] = (
                    "Above this ceiling, these fallbacks would never be used: "
                    + "; ".join(above)
                    + ". Raise the ceiling or remove them."
                )
        if errors:
            raise ValidationError(errors)


class ModelLimit(models.Model):
    """The provider's limits for a model, shared by every worker process."""

    DEFAULT = "*"

    model = models.CharField(
        max_length=100,
        unique=True,
        help_text="A model id, or * for every model without a row of its own.",
    )
    requests_per_minute = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)])
    input_tokens_per_minute = models.PositiveIntegerField(
        default=30_000, validators=[MinValueValidator(1)]
    )
    output_tokens_per_minute = models.PositiveIntegerField(
        default=8_000, validators=[MinValueValidator(1)]
    )
    max_concurrent_calls = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1)]
    )

    class Meta:
        ordering = ["model"]
        constraints = [
            models.CheckConstraint(
                condition=Q(requests_per_minute__gte=1)
                & Q(input_tokens_per_minute__gte=1)
                & Q(output_tokens_per_minute__gte=1)
                & Q(max_concurrent_calls__gte=1),
                name="model_limit_all_positive",
            )
        ]

    def __str__(self):
        return "Every other model" if self.model == self.DEFAULT else self.model


class ModelPrice(models.Model):
    """A price for a model the price library does not know (or an agreed discount)."""

    model = models.CharField(max_length=100, unique=True)
    input_per_mtok = models.DecimalField(
        "input, USD per million tokens",
        max_digits=10,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0))],
    )
    output_per_mtok = models.DecimalField(
        "output, USD per million tokens",
        max_digits=10,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0))],
    )
    cache_read_per_mtok = models.DecimalField(
        "cache read, USD per million tokens",
        max_digits=10,
        decimal_places=4,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
    )
    cache_write_per_mtok = models.DecimalField(
        "cache write (5 minutes), USD per million tokens",
        max_digits=10,
        decimal_places=4,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Anthropic: 1.25x the input price.",
    )
    # Nullable only for rows saved before 1-hour writes were priced: such a row prices a
    # 1-hour write as an error, never as free. The admin requires it.
    cache_write_1h_per_mtok = models.DecimalField(
        "cache write (1 hour), USD per million tokens",
        max_digits=10,
        decimal_places=4,
        null=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Anthropic: 2x the input price.",
    )
    batch_multiplier = models.DecimalField(
        "Message Batches multiplier",
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.5"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
        help_text="Applied to every rate of a call made through the Message Batches API "
        "(Anthropic: 0.5).",
    )

    class Meta:
        ordering = ["model"]

    def __str__(self):
        return self.model


class LLMCall(models.Model):
    """One attempt at the provider: every 429, failure and fallback gets a row."""

    reading = models.ForeignKey(
        "readings.Reading",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="llm_calls",
    )
    task = models.ForeignKey(
        "readings.ReadingTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
    )
    task_type = models.CharField(max_length=30, choices=task_type_choices)
    spread = models.ForeignKey(
        "spreads.Spread", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_model = models.CharField(max_length=100, help_text="What the allocation asked for.")
    model = models.CharField(max_length=100, help_text="What this attempt called.")
    outcome = models.CharField(max_length=15, choices=CallOutcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    is_retry = models.BooleanField(default=False)
    is_fallback = models.BooleanField(default=False)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(
        default=0, help_text="Both TTLs: Anthropic's cache_creation_input_tokens."
    )
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    batched = models.BooleanField(
        default=False, help_text="Sent through the Message Batches API (half price)."
    )
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    latency_s = models.FloatField()
    request_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    cost_estimated = models.BooleanField(
        default=False,
        help_text="A lost call: priced from the request's input tokens, as no usage came back.",
    )
    holder = models.CharField(
        max_length=100,
        blank=True,
        help_text="host:pid of the process that sent it; recovery reads it while it is pending.",
    )
    started_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "LLM call"
        verbose_name_plural = "LLM calls"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["task_type", "created_at"]),
            models.Index(fields=["model", "created_at"]),
            models.Index(fields=["spread", "created_at"]),
            # Recovery looks for calls in flight every few seconds: a small partial index.
            models.Index(fields=["holder"], condition=Q(outcome="pending"), name="llmcall_pending"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    cache_write_tokens=models.F("cache_write_5m_tokens")
                    + models.F("cache_write_1h_tokens")
                ),
                name="llmcall_cache_writes_split_by_ttl",
            )
        ]

    def __str__(self):
        return f"{self.task_type} on {self.model}: {self.outcome}"


class ModelState(models.Model):
    """What every worker process shares about one model: its rate-limit buckets, the adaptive
    concurrency controller and the circuit breaker. Updated under SELECT ... FOR UPDATE."""

    model = models.CharField(max_length=100, unique=True)
    request_tokens = models.FloatField(default=0)
    input_tokens = models.FloatField(default=0)
    output_tokens = models.FloatField(default=0)
    refilled_at = models.FloatField(default=0, help_text="Unix time of the last refill.")
    paused_until = models.FloatField(default=0, help_text="Unix time; the provider said wait.")
    adaptive = models.JSONField(default=dict, blank=True)
    breaker = models.JSONField(default=dict, blank=True)
    bound = models.JSONField(
        default=dict, blank=True, help_text="Seconds calls waited for each limit, by minute."
    )
    transactions = models.PositiveBigIntegerField(
        default=0, help_text="The limiter's round trips to its store for this model."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self):
        return self.model


class Lease(models.Model):
    """One call in flight somewhere. A worker renews its leases while it lives; a killed
    worker's leases expire, and its share of the limit comes back."""

    model = models.CharField(max_length=100)
    holder = models.CharField(max_length=100, help_text="host:pid of the process.")
    expires_at = models.FloatField(help_text="Unix time.")
    input_estimate = models.PositiveIntegerField(default=0)
    output_reserve = models.PositiveIntegerField(
        default=0, help_text="The call's max_tokens, held in the output bucket until it ends."
    )

    class Meta:
        indexes = [
            models.Index(fields=["model", "expires_at"]),
            models.Index(fields=["holder"]),
        ]

    def __str__(self):
        return f"{self.model} held by {self.holder}"


class LimitChange(models.Model):
    """The adaptive limit's history, for staff: when it moved, to what, and why."""

    model = models.CharField(max_length=100)
    limit = models.PositiveIntegerField()
    reason = models.CharField(max_length=30)
    breaker_state = models.CharField(max_length=10, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model", "-created_at"])]

    def __str__(self):
        return f"{self.model}: {self.limit} ({self.reason})"

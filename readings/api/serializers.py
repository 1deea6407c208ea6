"""Shapes of the API's bodies. Input serializers check only the JSON's shape; the rules of a
reading (known spread, right number of cards, no duplicates, question length) are
services.reading_create's, so the API, the `read` command and the bench agree."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from readings import economy
from readings.models import Reading, ReadingMode, ReadingStatus, ReadingTask, TaskStatus
from readings.queue_place import queue_place
from readings.selectors import reading_results
from spreads.models import DECK_SIZE, Card, Position, Spread
from spreads.planning import plan_tasks

# No spread has more cards than the deck.
MAX_CARDS = DECK_SIZE

# --- Spreads and the deck ------------------------------------------------------------------


class PositionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Position
        # Where the card lies when the spread is laid out (null: laid out in rows, in order).
        fields = ["index", "name", "meaning", "column", "row", "rotation"]


class SpreadSerializer(serializers.ModelSerializer):
    positions = PositionSerializer(many=True, read_only=True)

    class Meta:
        model = Spread
        fields = [
            "slug",
            "name",
            "description",
            "card_count",
            "batch_size",
            "max_concurrent_calls",
            "supports_parallel",
            "positions",
        ]


class CardSerializer(serializers.ModelSerializer):
    keywords = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Card
        fields = ["slug", "name", "arcana", "suit", "keywords"]


# --- Creating a reading --------------------------------------------------------------------


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true or false: DRF's BooleanField would also take "yes", "off" or 1, and a
    card's orientation is too important to guess from a typo."""

    default_error_messages = {"invalid": "Must be true or false (a JSON boolean)."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid")


class CardChoiceSerializer(serializers.Serializer):
    card = serializers.CharField(
        max_length=40, help_text="The card's slug (the-fool) or name (The Fool)."
    )
    reversed = StrictBooleanField(required=False, default=False)


class ReadingCreateSerializer(serializers.Serializer):
    spread = serializers.CharField(max_length=50, help_text="The spread's slug, e.g. celtic_cross.")
    # Blank and over-long questions are refused by the service, with its own messages.
    question = serializers.CharField(allow_blank=True, trim_whitespace=False)
    # A ListField, not many=True: DRF hands many=True's allow_null to the child as well, so
    # `[null]` would pass as a card. Here the list may be null, each card may not.
    # A plain string: an unsupported language gets the service's message naming the
    # supported ones.
    language = serializers.CharField(
        required=False,
        max_length=10,
        help_text="ko or en. Omitted: your preference, else your Accept-Language, else en.",
    )
    cards = serializers.ListField(
        child=CardChoiceSerializer(),
        required=False,
        allow_null=True,
        max_length=MAX_CARDS,
        help_text="One card per position, in position order. Omit it to have the server draw.",
    )
    mode = serializers.ChoiceField(
        choices=ReadingMode.choices,
        required=False,
        default=ReadingMode.STANDARD,
        help_text="standard: calls at once. economy: through the Message Batches API at half "
        "price; the reading takes minutes to hours (see expected_ready_at).",
        error_messages={
            "invalid_choice": "Unknown mode {input!r}: use one of "
            + ", ".join(f'"{m}"' for m in ReadingMode.values)
            + "."
        },
    )


class ReadingQueuedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ReadingStatus.choices)
    url = serializers.URLField(help_text="Where to follow the reading: GET it until it is done.")


# --- Reading a reading ---------------------------------------------------------------------


class SpreadRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Spread
        fields = ["slug", "name"]


# Readings and their tasks both have a "status" with different choices; drf-spectacular would
# name one of the two enums with a hash. Breaking the task's out under its own name keeps
# generated clients readable.
@extend_schema_field({"type": "string", "enum": TaskStatus.values}, component_name="TaskStatusEnum")
class TaskStatusField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=TaskStatus.choices, **kwargs)


class ReadingTaskSerializer(serializers.ModelSerializer):
    status = TaskStatusField(read_only=True)
    positions = serializers.ListField(
        source="position_indexes", child=serializers.IntegerField(), read_only=True
    )

    class Meta:
        model = ReadingTask
        fields = [
            "task_type",
            "phase",
            "batch_index",
            "positions",
            "status",
            "model_used",
            "attempts",
            "started_at",
            "finished_at",
        ]


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    tasks = ReadingTaskSerializer(many=True)


class CardResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    position = serializers.CharField()
    card = serializers.CharField()
    card_slug = serializers.CharField()
    orientation = serializers.ChoiceField(choices=["upright", "reversed"])
    text = serializers.CharField(help_text="Empty until the card's batch is interpreted.")


class ResultsSerializer(serializers.Serializer):
    cards = CardResultSerializer(many=True)
    overall = serializers.CharField()
    relationships = serializers.CharField()
    advice = serializers.CharField()


class MetricsSerializer(serializers.ModelSerializer):
    class Meta:
        model = Reading
        fields = [
            "wall_time_s",
            "sequential_s",
            "time_saved_s",
            "critical_path_s",
            "peak_concurrent_calls",
            "calls",
            "rate_limit_hits",
            "retries",
            "fallbacks",
            "input_tokens",
            "output_tokens",
        ]
        read_only_fields = fields


class ReadingDetailSerializer(serializers.ModelSerializer):
    spread = SpreadRefSerializer(read_only=True)
    progress = serializers.SerializerMethodField()
    status_detail = serializers.SerializerMethodField(
        help_text='"queued for batch" while an economy reading waits for its batches; else empty.'
    )
    expected_ready_at = serializers.SerializerMethodField(
        help_text="When an unfinished economy reading should be done (from recent batches' "
        "times); null otherwise."
    )
    queue_position = serializers.SerializerMethodField(
        help_text="While a standard reading waits to start: its place in the line (1: next); "
        "null otherwise."
    )
    expected_start_at = serializers.SerializerMethodField(
        help_text="While a standard reading waits to start: when it should, from how many "
        "readings the workers started in the last 10 minutes; null otherwise."
    )
    results = serializers.SerializerMethodField()
    metrics = MetricsSerializer(source="*", read_only=True)
    # A string, from the Decimal: money is never a float.
    cost_usd = serializers.DecimalField(max_digits=12, decimal_places=6, coerce_to_string=True)

    class Meta:
        model = Reading
        fields = [
            "id",
            "spread",
            "question",
            "mode",
            "language",
            "status",
            "status_detail",
            "expected_ready_at",
            "queue_position",
            "expected_start_at",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "progress",
            "results",
            "metrics",
            "cost_usd",
        ]
        read_only_fields = fields

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, reading):
        tasks = list(reading.tasks.all())
        # The worker plans the task rows when it starts; until then, count the plan.
        total = len(tasks) or len(plan_tasks(reading.spread.card_count, reading.spread.batch_size))
        done = sum(task.status == TaskStatus.DONE for task in tasks)
        return ProgressSerializer({"done": done, "total": total, "tasks": tasks}).data

    @extend_schema_field(serializers.CharField())
    def get_status_detail(self, reading) -> str:
        return economy.STATUS_DETAIL if economy.expected_ready_at(reading) else ""

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_expected_ready_at(self, reading):
        expected = economy.expected_ready_at(reading)
        return serializers.DateTimeField().to_representation(expected) if expected else None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_queue_position(self, reading):
        place = self._queue_place(reading)
        return place.position if place else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_expected_start_at(self, reading):
        place = self._queue_place(reading)
        if place is None or place.expected_start_at is None:
            return None
        return serializers.DateTimeField().to_representation(place.expected_start_at)

    def _queue_place(self, reading):
        # Both fields from one look at the queue.
        if not hasattr(reading, "_queue_place"):
            reading._queue_place = queue_place(reading)
        return reading._queue_place

    @extend_schema_field(ResultsSerializer)
    def get_results(self, reading):
        return ResultsSerializer(reading_results(reading)).data


class ReadingListSerializer(serializers.ModelSerializer):
    spread = SpreadRefSerializer(read_only=True)
    cost_usd = serializers.DecimalField(max_digits=12, decimal_places=6, coerce_to_string=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:reading-detail")

    class Meta:
        model = Reading
        fields = [
            "id",
            "spread",
            "question",
            "mode",
            "language",
            "status",
            "created_at",
            "cost_usd",
            "url",
        ]
        read_only_fields = fields

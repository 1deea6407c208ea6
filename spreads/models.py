from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from allocation.allocator import BuiltinDefault
from allocation.models import CacheTTL

# The Rider-Waite-Smith deck (spreads/data/deck.json): a reading draws each card at most once,
# so no spread can have more positions than this.
DECK_SIZE = 78


class Arcana(models.TextChoices):
    MAJOR = "major", "Major arcana"
    MINOR = "minor", "Minor arcana"


class Suit(models.TextChoices):
    WANDS = "wands", "Wands"
    CUPS = "cups", "Cups"
    SWORDS = "swords", "Swords"
    PENTACLES = "pentacles", "Pentacles"


class Card(models.Model):
    """One of the 78 Rider-Waite-Smith cards; loaded by migration from spreads/data/deck.json."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=40, unique=True)
    arcana = models.CharField(max_length=5, choices=Arcana.choices)
    suit = models.CharField(max_length=10, choices=Suit.choices, blank=True)
    number = models.PositiveSmallIntegerField(
        help_text="0-21 for the major arcana; 1-14 (Ace..King)."
    )
    keywords = models.JSONField(default=list)
    upright = models.TextField()
    reversed = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.name


class EconomyFallback(models.TextChoices):
    """What happens to an economy reading's task whose batch request expired or errored."""

    STANDARD = "standard", "Run it as a standard call (full price)"
    FAIL = "fail", "Fail the reading with the provider's message"


class TaskType(models.TextChoices):
    """The tasks of a reading; the LLM layer allocates a model to each by its value."""

    CARD_INTERPRETATION = "card_interpretation", "Card interpretation"
    OVERALL_READING = "overall_reading", "Overall reading"
    RELATIONSHIPS = "relationships", "Relationships"
    ADVICE = "advice", "Advice"

    @property
    def kind(self) -> str:
        """The short word used in template names and environment variables."""
        return {
            "card_interpretation": "card",
            "overall_reading": "overall",
            "relationships": "relationships",
            "advice": "advice",
        }[self.value]

    @property
    def builtin_default(self) -> BuiltinDefault:
        """Used only when the database has no allocation at all (the seed migration creates
        them): a fast cheap model for the cards, a strong one for the overall reading."""
        return BUILTIN_ALLOCATIONS[self.value]


BUILTIN_ALLOCATIONS = {
    "card_interpretation": BuiltinDefault(
        "claude-haiku-4-5", 1024, 0.7, ("claude-3-5-haiku-latest",)
    ),
    "overall_reading": BuiltinDefault("claude-sonnet-4-5", 2048, 0.8, ("claude-sonnet-4-0",)),
    "relationships": BuiltinDefault("claude-sonnet-5", 1536, 1.0, ("claude-haiku-5-5",)),
    "advice": BuiltinDefault("claude-sonnet-5", 1024, 1.0, ("claude-haiku-5-5",)),
}


class TaskKind(models.TextChoices):
    """The four prompts a spread needs, one per task type (TaskType.kind)."""

    CARD = "card", "Card interpretation"
    OVERALL = "overall", "Overall reading"
    RELATIONSHIPS = "relationships", "Relationships"
    ADVICE = "advice", "Advice"


# Spread slugs become environment variable prefixes (celtic_cross -> CELTIC_CROSS_CARD_MODEL),
# so they must be valid identifier fragments.
slug_validator = RegexValidator(
    r"^[a-z][a-z0-9_]*$",
    "Use lowercase letters, digits and underscores, starting with a letter (e.g. celtic_cross).",
)


class Spread(models.Model):
    slug = models.CharField(
        max_length=50,
        unique=True,
        validators=[slug_validator],
        help_text="The spread type, e.g. celtic_cross. Environment overrides use it upper-cased: "
        "CELTIC_CROSS_CARD_MODEL.",
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    card_count = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(DECK_SIZE)],
        help_text=f"1 to {DECK_SIZE}: each card of the deck is drawn at most once.",
    )
    supports_parallel = models.BooleanField(
        default=True, help_text="Off: the reading's calls run one at a time."
    )
    batch_size = models.PositiveSmallIntegerField(
        default=3,
        help_text="Cards interpreted per call in phase 1 (10 cards by 3 gives 3-3-3-1).",
    )
    max_concurrent_calls = models.PositiveSmallIntegerField(
        default=5, help_text="At most this many LLM calls at once for one reading."
    )
    max_tokens = models.PositiveIntegerField(
        default=2048,
        validators=[MinValueValidator(1)],
        help_text="Upper bound on max_tokens for any call of this spread.",
    )
    card_template = models.CharField(
        max_length=100,
        blank=True,
        help_text="Prompt template for card batches. Empty: <slug>_card.txt if it exists, "
        "else card.txt.",
    )
    overall_template = models.CharField(max_length=100, blank=True)
    relationships_template = models.CharField(max_length=100, blank=True)
    advice_template = models.CharField(max_length=100, blank=True)
    guide_template = models.CharField(
        max_length=100,
        blank=True,
        help_text="The spread's guide, sent first by every call of every reading (the part "
        "readings share). Empty: <slug>_guide.txt if it exists, else guide.txt.",
    )
    guide_cache_ttl = models.CharField(
        "guide cache TTL",
        max_length=3,
        choices=CacheTTL.choices,
        default=CacheTTL.ONE_HOUR,
        help_text="The guide is shared by all readings of the spread: an hour keeps it warm "
        "between them.",
    )
    reading_cache_ttl = models.CharField(
        "reading cache TTL",
        max_length=3,
        choices=CacheTTL.choices,
        default=CacheTTL.FIVE_MINUTES,
        help_text="The question, the layout and the card results, shared by the later calls "
        "of one reading on the same model. Economy readings always keep them an hour, as their "
        "phases are batches that may be an hour apart.",
    )
    economy_fallback = models.CharField(
        max_length=10,
        choices=EconomyFallback.choices,
        default=EconomyFallback.STANDARD,
        help_text="An economy reading's call whose batch request expired or errored: send it "
        "again at once at the standard price, or fail the reading with the provider's message.",
    )
    is_active = models.BooleanField(default=True, help_text="Inactive spreads accept no readings.")

    class Meta:
        ordering = ["card_count", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(card_count__gte=1), name="spread_card_count_at_least_1"
            ),
            models.CheckConstraint(
                condition=Q(card_count__lte=DECK_SIZE), name="spread_card_count_within_deck"
            ),
            models.CheckConstraint(
                condition=Q(batch_size__gte=1, batch_size__lte=F("card_count")),
                name="spread_batch_size_within_card_count",
            ),
            models.CheckConstraint(
                condition=Q(max_concurrent_calls__gte=1),
                name="spread_max_concurrent_calls_at_least_1",
            ),
        ]

    def __str__(self):
        return self.name

    def template_field(self, kind: str) -> str:
        return getattr(self, f"{kind}_template", "")

    def clean(self):
        from spreads.prompts import template_problem

        errors = {}
        if (
            self.card_count
            and self.batch_size is not None
            and not 1 <= self.batch_size <= self.card_count
        ):
            errors["batch_size"] = (
                f"Batch size must be between 1 and the card count ({self.card_count})."
            )
        if self.max_concurrent_calls is not None and self.max_concurrent_calls < 1:
            errors["max_concurrent_calls"] = "Allow at least 1 concurrent call."
        for kind in [*TaskKind.values, "guide"]:
            name = self.template_field(kind)
            if name:
                problem = template_problem(name)
                if problem:
                    errors[f"{kind}_template"] = problem
        if errors:
            raise ValidationError(errors)


# A spread's layout is a grid of card-sized cells, at most this many across and down.
LAYOUT_CELLS = 12


class Rotation(models.IntegerChoices):
    UPRIGHT = 0, "Upright"
    CROSSWISE = 90, "Across (90°)"


class Position(models.Model):
    spread = models.ForeignKey(Spread, on_delete=models.CASCADE, related_name="positions")
    index = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1)], help_text="1 for the first card laid."
    )
    name = models.CharField(max_length=100)
    meaning = models.TextField(help_text="What a card in this position speaks to.")
    # Where the card lies when the spread is laid out (spreads/layout.py); a spread with a
    # position left unplaced is shown in rows, in the order its cards are laid.
    column = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(LAYOUT_CELLS)],
        help_text=f"Where the card lies: its column, 1 (left) to {LAYOUT_CELLS}.",
    )
    row = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(LAYOUT_CELLS)],
        help_text=f"Its row, 1 (top) to {LAYOUT_CELLS}.",
    )
    rotation = models.PositiveSmallIntegerField(choices=Rotation, default=Rotation.UPRIGHT)

    class Meta:
        ordering = ["spread", "index"]
        constraints = [
            models.UniqueConstraint(fields=["spread", "index"], name="position_index_unique"),
            models.CheckConstraint(condition=Q(index__gte=1), name="position_index_at_least_1"),
            models.CheckConstraint(
                condition=(Q(column__isnull=True) & Q(row__isnull=True))
                | Q(
                    # NULL compares as unknown, and a CHECK lets unknown through: say it.
                    column__isnull=False,
                    row__isnull=False,
                    column__gte=1,
                    column__lte=LAYOUT_CELLS,
                    row__gte=1,
                    row__lte=LAYOUT_CELLS,
                ),
                name="position_placed_on_the_grid_or_not_at_all",
                violation_error_message="Give both a column and a row, or neither.",
            ),
            models.CheckConstraint(
                condition=Q(rotation__in=Rotation.values), name="position_rotation_known"
            ),
        ]

    def __str__(self):
        return f"{self.index}. {self.name}"

    def clean(self):
        if (self.column is None) != (self.row is None):
            raise ValidationError(
                {
                    "row" if self.row is None else "column": "Give both a column and a row "
                    "(or neither: the card is then laid out in order with the others)."
                }
            )


def translated_languages() -> list[tuple[str, str]]:
    """The page languages other than English, the base every name is written in."""
    return [(code, name) for code, name in settings.LANGUAGES if code != "en"]


class SpreadText(models.Model):
    """What readers see of a spread in one language other than English: its name, its
    description and its positions' names. Anything left empty falls back to the shipped
    translation of the English, then to the English itself."""

    spread = models.ForeignKey(Spread, on_delete=models.CASCADE, related_name="texts")
    language = models.CharField(max_length=10, choices=translated_languages)
    name = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    position_names = models.TextField(
        blank=True,
        help_text="One per line, in the positions' order; an empty line keeps that position's "
        "own name.",
    )

    class Meta:
        ordering = ["spread", "language"]
        constraints = [
            models.UniqueConstraint(fields=["spread", "language"], name="one_text_per_language")
        ]

    def __str__(self):
        return f"{self.spread} ({self.language})"

    def clean(self):
        lines = self.position_names.splitlines()
        if self.spread_id and len(lines) > self.spread.card_count:
            raise ValidationError(
                {
                    "position_names": f"{len(lines)} names for {self.spread.card_count} "
                    "positions: one per line, in order."
                }
            )

    def position_name(self, index: int) -> str:
        lines = self.position_names.splitlines()
        return lines[index - 1].strip() if 0 < index <= len(lines) else ""


class PromptTemplate(models.Model):
    """A prompt edited in the admin. It overrides templates/reading/<name> of the same name."""

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[
            RegexValidator(
                r"^[a-z0-9_]+\.txt$", "Use a file-like name such as celtic_cross_card.txt."
            )
        ],
    )
    body = models.TextField(
        help_text="Django template language. Variables: question, spread, cards, batch, "
        "card_results, overall, relationships."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        from spreads.prompts import render_problem

        if self.body:
            problem = render_problem(self.body)
            if problem:
                raise ValidationError({"body": problem})

from contextlib import ExitStack

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from emulator import Emulator
from readings.engine import run_reading_sync
from readings.models import ReadingStatus
from readings.progress import ProgressBar
from readings.selectors import reading_results
from readings.services import CardChoice, reading_create
from spreads.planning import plan_tasks


class Command(BaseCommand):
    help = "Make one reading now (against the emulator, or Anthropic with ANTHROPIC_API_KEY)."

    def add_arguments(self, parser):
        parser.add_argument("spread", help="The spread's slug, e.g. celtic_cross.")
        parser.add_argument("--question", required=True)
        parser.add_argument(
            "--cards",
            help="Comma-separated card slugs in position order; append ':r' for reversed "
            "(the-fool,death:r,...). Drawn at random when omitted.",
        )

    def handle(self, *args, spread, question, cards, **options):
        choices = None
        if cards:
            choices = []
            for item in cards.split(","):
                slug, _, flag = item.strip().partition(":")
                choices.append(CardChoice(card=slug, reversed=flag == "r"))
        try:
            reading = reading_create(spread=spread, question=question, cards=choices)
        except ValidationError as exc:
            raise CommandError(
                " ".join(m for ms in exc.message_dict.values() for m in ms)
            ) from None

        total = len(plan_tasks(reading.spread.card_count, reading.spread.batch_size))
        with ExitStack() as stack:
            if not settings.ANTHROPIC_API_KEY and not settings.ANTHROPIC_BASE_URL:
                # No key and no endpoint: the bundled emulator answers, as under `make run`.
                emulator = stack.enter_context(Emulator())
                settings.ANTHROPIC_BASE_URL = emulator.base_url
                self.stderr.write(
                    f"No ANTHROPIC_API_KEY: using the emulator at {emulator.base_url}"
                )
            reading = run_reading_sync(reading.pk, progress=ProgressBar(total))
        self._print(reading)
        if reading.status != ReadingStatus.DONE:
            raise CommandError(f"The reading failed: {reading.error}")

    def _print(self, reading):
        results = reading_results(reading)
        out = self.stdout
        out.write(self.style.MIGRATE_HEADING(f"\n{reading.spread.name}: {reading.question}\n"))
        for card in results["cards"]:
            out.write(
                self.style.MIGRATE_LABEL(
                    f"{card['index']}. {card['position']}: {card['card']} ({card['orientation']})"
                )
            )
            out.write(f"{card['text']}\n")
        for title, key in [
            ("Overall", "overall"),
            ("Relationships", "relationships"),
            ("Advice", "advice"),
        ]:
            if results[key]:
                out.write(self.style.MIGRATE_HEADING(title))
                out.write(results[key] + "\n")
        out.write(self.style.MIGRATE_HEADING("Metrics"))
        for label, value in [
            ("status", reading.status),
            ("wall time", f"{reading.wall_time_s:.2f} s"),
            ("sequential estimate", f"{reading.sequential_s:.2f} s"),
            ("time saved by parallelism", f"{reading.time_saved_s:.2f} s"),
            ("critical path", f"{reading.critical_path_s:.2f} s"),
            ("peak concurrent calls", reading.peak_concurrent_calls),
            ("calls", reading.calls),
            ("rate-limit hits", reading.rate_limit_hits),
            ("retries", reading.retries),
            ("fallbacks", reading.fallbacks),
            ("tokens in / out", f"{reading.input_tokens} / {reading.output_tokens}"),
            ("cost", f"${reading.cost_usd:.6f}"),
        ]:
            out.write(f"  {label:<28}{value}")

import json
import logging
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from emulator import Emulator, Knobs
from readings import bench
from spreads.models import Spread


class Command(BaseCommand):
    help = (
        "Start an emulator with the given knobs, run readings through the engine and print "
        "what happened (a table, or one JSON object with --json)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--spread", default="celtic_cross")
        parser.add_argument("--readings", type=int, default=10)
        parser.add_argument("--concurrency", type=int, default=2, help="readings in flight at once")
        parser.add_argument("--ttft-ms", type=float, default=300.0)
        parser.add_argument("--ms-per-token", type=float, default=5.0)
        parser.add_argument("--jitter", type=float, default=0.0)
        parser.add_argument("--rpm", type=int, default=0, help="0: unlimited")
        parser.add_argument("--itpm", type=int, default=0, help="0: unlimited")
        parser.add_argument("--otpm", type=int, default=0, help="0: unlimited")
        parser.add_argument(
            "--fail-rate", type=float, default=0.0, help="fraction of calls answered 529"
        )
        parser.add_argument(
            "--via-worker",
            action="store_true",
            help="create readings through the REST API and run them on real qcluster workers",
        )
        parser.add_argument("--keep", action="store_true", help="keep the bench readings")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **opts):
        if opts["readings"] < 1 or opts["concurrency"] < 1:
            raise CommandError("--readings and --concurrency must be at least 1.")
        if not Spread.objects.filter(slug=opts["spread"], is_active=True).exists():
            raise CommandError(f"No active spread called {opts['spread']!r}.")
        try:
            knobs = Knobs(
                ttft_ms=opts["ttft_ms"],
                ms_per_token=opts["ms_per_token"],
                jitter=opts["jitter"],
                rpm=opts["rpm"] or None,
                itpm=opts["itpm"] or None,
                otpm=opts["otpm"] or None,
                overloaded_rate=opts["fail_rate"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        config = bench.BenchConfig(
            spread=opts["spread"], readings=opts["readings"], concurrency=opts["concurrency"]
        )
        if opts["verbosity"] < 2:
            # one allocation line per task per reading would drown the figures
            logging.getLogger("allocation").setLevel(logging.WARNING)
        with Emulator(knobs) as emulator:
            settings.ANTHROPIC_BASE_URL, settings.ANTHROPIC_API_KEY = emulator.base_url, ""
            if opts["via_worker"]:
                result = bench.run_via_worker(config, self._progress, base_url=emulator.base_url)
            else:
                result = bench.run_in_process(config, self._progress)
            summary = bench.summarize(result, emulator.stats())
        if not opts["keep"]:
            bench.discard(result)
        if opts["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            width = max(len(k) for k in summary)
            for key, value in summary.items():
                self.stdout.write(f"{key:<{width}}  {value}")

    def _progress(self, done: int, total: int):
        bar = "#" * int(24 * done / total)
        sys.stderr.write(f"\r[{bar:<24}] {done}/{total} readings")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

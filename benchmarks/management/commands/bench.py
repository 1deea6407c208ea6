import json
import logging
import sys
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from benchmarks import bench, budget_bench, cost_modes, service_bench, stream_bench
from emulator import Emulator, Knobs
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
            "--midstream-fail-rate",
            type=float,
            default=0.0,
            help="fraction of streams cut halfway by an overloaded_error event",
        )
        parser.add_argument(
            "--via-worker",
            action="store_true",
            help="start the platform as `make run` does (manage.py serve: web server and "
            "worker, default settings) and post the readings over HTTP to its REST API",
        )
        parser.add_argument(
            "--users",
            type=int,
            help="with --via-worker: this many ordinary users post the readings (each client "
            "posts as one of them), with the default throttles, budgets and fair queue",
        )
        parser.add_argument(
            "--one-model",
            action="store_true",
            help="every task of the spread on its card model (through the environment "
            "overrides), so one model's rate limit binds the whole reading",
        )
        parser.add_argument(
            "--stream",
            action="store_true",
            help="as --via-worker, with an SSE client following each reading's events on a "
            "uvicorn server: adds first_text_ms_p50 and events_lost",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="spread the engine work over N processes sharing the global limiter",
        )
        parser.add_argument(
            "--baseline",
            choices=["seed"],
            help="also run the seed's design (semaphore of 5, SDK retries, no global limit) "
            "on the same workload and print it beside the platform's figures",
        )
        parser.add_argument(
            "--budget-usd",
            type=str,
            help="submit every reading through the REST API as one user whose daily budget is "
            "this many USD, run them on real workers, and report refusals, spend and the "
            "estimates' error",
        )
        parser.add_argument(
            "--warmup",
            type=int,
            default=10,
            help="with --budget-usd: unbudgeted readings run first, so estimates have history",
        )
        parser.add_argument(
            "--cost-modes",
            action="store_true",
            help="run the same readings with prompt caching off, on, and as economy readings "
            "(Message Batches), and print the cost per reading of each",
        )
        parser.add_argument(
            "--batch-delay-s",
            type=float,
            default=1.0,
            help="the emulator's Message Batches processing delay (Anthropic: minutes to hours)",
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
                midstream_fail_rate=opts["midstream_fail_rate"],
                batch_delay_s=opts["batch_delay_s"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if opts["workers"] < 1:
            raise CommandError("--workers must be at least 1.")
        if opts["users"] is not None and (opts["users"] < 1 or not opts["via_worker"]):
            raise CommandError("--users takes a number of at least 1, with --via-worker.")
        budget_usd = self._budget(opts["budget_usd"])
        if opts["warmup"] < 0:
            raise CommandError("--warmup cannot be negative.")
        config = bench.BenchConfig(
            spread=opts["spread"],
            readings=opts["readings"],
            concurrency=opts["concurrency"],
            rpm=opts["rpm"] or None,
        )
        if opts["verbosity"] < 2:
            # one allocation line per task per reading would drown the figures
            logging.getLogger("allocation").setLevel(logging.WARNING)
        with (
            bench.provider_limits(rpm=knobs.rpm, itpm=knobs.itpm, otpm=knobs.otpm),
            Emulator(knobs) as emulator,
        ):
            settings.ANTHROPIC_BASE_URL, settings.ANTHROPIC_API_KEY = emulator.base_url, ""
            extra, warmup_ids = {}, []
            if opts["cost_modes"]:
                summary = cost_modes.run_cost_modes(config, self._progress, emulator=emulator)
                self._print(summary, opts)
                return
            if budget_usd is not None:
                result, extra, warmup_ids = budget_bench.run_with_budget(
                    config,
                    self._progress,
                    base_url=emulator.base_url,
                    budget_usd=budget_usd,
                    warmup=opts["warmup"],
                )
            elif opts["stream"]:
                result, extra = stream_bench.run_streaming(
                    config, self._progress, base_url=emulator.base_url
                )
            elif opts["via_worker"]:
                env = service_bench.one_model_env(config.spread) if opts["one_model"] else {}
                service = service_bench.run_service(
                    config,
                    self._progress,
                    base_url=emulator.base_url,
                    extra_env=env,
                    users=opts["users"],
                )
                result = service.result
                extra = service_bench.service_figures(
                    service,
                    ceiling=service_bench.ceiling(config.spread, knobs, env, result.reading_ids),
                )
            elif opts["workers"] > 1:
                result = bench.run_in_processes(
                    config, self._progress, workers=opts["workers"], base_url=emulator.base_url
                )
            else:
                result = bench.run_in_process(config, self._progress)
            summary = bench.summarize(result, emulator.stats(), rpm=config.rpm)
            summary.update(extra)
            if opts["fail_rate"] > 0 or opts["midstream_fail_rate"] > 0:
                summary.update(self._against_clean(result, emulator, config, opts))
            if not opts["keep"]:
                bench.discard(result)
                bench.discard(bench.BenchResult(wall_s=0, reading_ids=warmup_ids))
            if opts["baseline"]:
                summary["baseline"] = bench.run_baseline(
                    config, self._progress, base_url=emulator.base_url, emulator=emulator
                )
        self._print(summary, opts)

    def _print(self, summary: dict, opts):
        if opts["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            self._table(summary)

    @staticmethod
    def _budget(raw: str | None) -> Decimal | None:
        if raw is None:
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise CommandError(f"--budget-usd {raw!r} is not an amount of USD.") from None
        if not value.is_finite() or value <= 0:
            raise CommandError("--budget-usd must be more than 0.")
        return value

    def _against_clean(self, result, emulator, config, opts) -> dict:
        """What the injected failures cost: the same workload again with no 529s and no
        broken streams, from fresh limiter state, and the ratio of cost per reading (the
        failover's price)."""
        with_failures = bench.cost_per_reading(result)
        bench.reset_limiter_state()
        emulator.configure(overloaded_rate=0.0, midstream_fail_rate=0.0)
        emulator.reset()
        if opts["workers"] > 1:
            clean = bench.run_in_processes(
                config, self._progress, workers=opts["workers"], base_url=emulator.base_url
            )
        else:
            clean = bench.run_in_process(config, self._progress)
        clean_cost = bench.cost_per_reading(clean)
        bench.discard(clean)
        ratio = None
        if with_failures is not None and clean_cost:
            ratio = round(float(with_failures / clean_cost), 3)
        return {
            "cost_per_reading_usd": str(round(with_failures or 0, 6)),
            "clean_cost_per_reading_usd": str(round(clean_cost or 0, 6)),
            "cost_ratio_vs_clean": ratio,
        }

    def _table(self, summary: dict):
        baseline = summary.get("baseline", {})
        keys = [k for k in summary if k != "baseline"]
        width = max(len(k) for k in keys)
        header = f"{'':<{width}}  {'platform':>12}" + (f"  {'seed':>12}" if baseline else "")
        self.stdout.write(header)
        for key in keys:
            line = f"{key:<{width}}  {summary[key]!s:>12}"
            if baseline:
                line += f"  {baseline.get(key, '')!s:>12}"
            self.stdout.write(line)

    def _progress(self, done: int, total: int):
        bar = "#" * int(24 * done / total)
        sys.stderr.write(f"\r[{bar:<24}] {done}/{total} readings")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

"""`python -m emulator --port 8765 [--host 127.0.0.1] [knob flags]`

Prints the base URL on stdout (one line, for scripts), then serves until Ctrl-C or SIGTERM.
Every Knobs field is a flag: --ttft-ms 300 --rpm 50 --overloaded-models a,b ...
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys

from .knobs import Knobs
from .server import EmulatorApp, start_server, stop_server

DEFAULT_PORT = 8765

HELP = {
    "ttft_ms": "milliseconds to the first token",
    "ms_per_token": "milliseconds per output token after the first",
    "jitter": "latency varies by up to this fraction either way (0: none)",
    "rpm": "requests per minute per model (0: unlimited)",
    "itpm": "input tokens per minute per model (0: unlimited)",
    "otpm": "output tokens per minute per model (0: unlimited)",
    "burst_s": "bucket capacity, in seconds of refill",
    "max_concurrency": "requests served at once; one more gets 429 (0: unlimited)",
    "overloaded_rate": "fraction of requests answered 529 overloaded_error",
    "error_rate": "fraction of requests answered 500 api_error",
    "hang_rate": "fraction of requests that hang for --hang-s",
    "hang_s": "how long a hanging request hangs",
    "seed": "seed for the injected failures and jitter",
    "overloaded_models": "comma-separated model ids that always get 529",
    "failing_models": "comma-separated model ids that always get 500",
    "force_429": "the next N requests get 429",
    "retry_after_s": "retry-after of forced and concurrency 429s",
    "cache_ttl_s": "seconds a cached prompt prefix lives after its last use",
    "cache_ttl_1h_s": "seconds a prefix marked ttl 1h lives after its last use",
    "cache_min_tokens": "shortest prefix that is cached, for every model (none: each model's own)",
    "batch_delay_s": "seconds from creating a message batch to processing it",
    "batch_expiry_s": "seconds after which a batch's unprocessed requests expire",
    "force_batch_rejects": "the next N message batch creations get 400",
    "output_tokens_min": "shortest natural answer, in tokens",
    "output_tokens_max": "longest natural answer, in tokens",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="A local emulator of Anthropic's Messages API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"0: any free port (default: {DEFAULT_PORT})"
    )
    parser.add_argument("--deck", default=None, help="deck JSON (default: spreads/data/deck.json)")
    defaults = Knobs()
    for field in dataclasses.fields(Knobs):
        default = getattr(defaults, field.name)
        if isinstance(default, frozenset):
            kind = str  # comma-separated; Knobs splits it
        elif field.name in ("rpm", "itpm", "otpm", "cache_min_tokens") or isinstance(default, int):
            kind = int
        else:
            kind = float
        shown = ",".join(sorted(default)) if isinstance(default, frozenset) else default
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=kind,
            default=default,
            help=f"{HELP.get(field.name, '')} (default: {shown if shown != '' else 'none'})",
        )
    return parser


async def serve(args: argparse.Namespace, knobs: Knobs) -> None:
    app = EmulatorApp(knobs, args.deck)
    runner, port = await start_server(app, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"http://{args.host}:{port}", flush=True)
    print(f"Anthropic emulator serving; knobs: {knobs.as_dict()}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await stop_server(app, runner)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        knobs = Knobs(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Knobs)})
    except ValueError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args, knobs))
    except OSError as exc:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

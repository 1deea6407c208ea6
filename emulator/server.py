"""The HTTP server: Anthropic's POST /v1/messages, the /_emulator/ control routes, and the
Emulator class that runs it all on a background thread for tests and benchmarks.

What happens to a POST /v1/messages, in order:
1. A malformed request gets 400 invalid_request_error.
2. While force_429 is above zero, 429 (and the count goes down).
3. A model in overloaded_models gets 529, one in failing_models 500.
4. A random draw (seeded) may give 529 or 500 straight away, or mark the request to hang.
5. Over max_concurrency: 429.
6. The model's rate-limit buckets: 429 with retry-after if one is short, else charged.
7. Admitted: a hanging request waits hang_s then gets 500; any other is answered after
   ttft_ms plus ms_per_token for each output token, streamed or in one piece.
Steps 2 to 5 are refused before any bucket is charged, so they cost the client nothing but the
round trip.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from . import messages
from .batches import BatchStore
from .cache import CacheUse, PromptCache
from .knobs import Knobs
from .prompt import CHARS_PER_TOKEN, InvalidRequest, Prompt, parse
from .ratelimits import RateLimiter, retry_after_header
from .stats import Stats
from .text import DEFAULT_DECK_PATH, Answer, Deck, answer, load_deck, output_tokens_for

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024  # Anthropic's request size limit
STREAM_CHUNK_TOKENS = 4  # tokens per text delta, about what Anthropic sends
SHUTDOWN_TIMEOUT_S = 2.0  # how long stop() lets running responses finish


class EmulatorApp:
    """The emulator's state and request handlers. Everything here runs on one event loop."""

    def __init__(self, knobs: Knobs, deck_path: Path | str | None = None):
        self.knobs = knobs
        self.deck_path = Path(deck_path) if deck_path else DEFAULT_DECK_PATH
        self.stats = Stats()
        self.cache = PromptCache()
        self.rng = random.Random(knobs.seed)
        self.limiter = RateLimiter(knobs, self._now)
        self.batches = BatchStore(self)
        self._stopping = asyncio.Event()
        self.routes: dict[tuple[str, str], Callable[[web.BaseRequest], Any]] = {
            ("POST", "/v1/messages"): self.create_message,
            ("POST", "/v1/messages/count_tokens"): self.count_tokens,
            ("GET", "/_emulator/stats"): self.get_stats,
            ("POST", "/_emulator/reset"): self.post_reset,
            ("GET", "/_emulator/knobs"): self.get_knobs,
            ("POST", "/_emulator/configure"): self.post_configure,
            ("POST", "/v1/messages/batches"): self.batches.create,
        }
        # /v1/messages/batches/{id}[/results|/cancel]
        self.batch_routes: dict[tuple[str, str], Callable[[web.BaseRequest, str], Any]] = {
            ("GET", ""): self.batches.retrieve,
            ("GET", "/results"): self.batches.results,
            ("POST", "/cancel"): self.batches.cancel,
        }

    # --- State changes (called on the loop, from HTTP or through Emulator) -------------------

    def configure(self, **changes: Any) -> Knobs:
        knobs = self.knobs.replace(**changes)
        self.limiter.update(knobs)
        if knobs.seed != self.knobs.seed:
            self.rng = random.Random(knobs.seed)
        self.knobs = knobs
        return knobs

    def reset(self) -> None:
        """Zero the stats, refill the buckets, empty the prompt cache, replay the seed."""
        self.stats.reset()
        self.limiter.reset()
        self.cache.clear()
        self.batches.clear()
        self.rng = random.Random(self.knobs.seed)

    def begin_shutdown(self) -> None:
        self._stopping.set()  # wakes hanging requests

    # --- HTTP ---------------------------------------------------------------------------------

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            handler = self._batch_handler(request)
        if handler is None:
            return self._error(404, "not_found_error", f"{request.method} {request.path} not found")
        try:
            return await handler(request)
        except Exception:
            # A bug here should still look like Anthropic to the client: a JSON api_error.
            log.exception("emulator failed on %s %s", request.method, request.path)
            return self._error(500, "api_error", "The emulator failed; see its log.")

    async def create_message(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            prompt = parse(await request.json())
        except (ValueError, InvalidRequest) as exc:
            self.stats.count("requests")
            self.stats.count("bad_requests")
            text = str(exc) if isinstance(exc, InvalidRequest) else "The body is not valid JSON."
            return self._error(400, "invalid_request_error", text)
        model = prompt.model
        self.stats.count("requests", model)
        k = self.knobs

        if k.force_429 > 0:
            self.knobs = k.replace(force_429=k.force_429 - 1)
            return self._rate_limited(model, k.retry_after_s, "Forced rate limit (force_429).")
        if model in k.overloaded_models:
            return self._overloaded(model)
        if model in k.failing_models:
            return self._api_error(model)
        fate = self._draw_fate(k)
        if fate == "overloaded":
            return self._overloaded(model)
        if fate == "error":
            return self._api_error(model)
        if k.max_concurrency and self.stats.in_flight >= k.max_concurrency:
            return self._rate_limited(
                model,
                k.retry_after_s,
                f"Over the emulator's max_concurrency ({k.max_concurrency}).",
            )

        now = self._now()
        reply, usage, cache_use = self.answer_and_usage(prompt, now)
        # Cache reads are not charged to the input-tokens bucket, as on Anthropic; output
        # tokens are charged from max_tokens until the answer ends.
        wait_s, limit_headers = self.limiter.admit(
            model, usage["input_tokens"] + cache_use.creation, prompt.max_tokens
        )
        if wait_s:
            return self._rate_limited(
                model,
                wait_s,
                "This request would exceed the rate limit for this model.",
                limit_headers,
            )

        scale = 1 + self.rng.uniform(-k.jitter, k.jitter) if k.jitter else 1.0
        ttft_s = k.ttft_ms / 1000 * scale
        per_token_s = k.ms_per_token / 1000 * scale
        self.cache.store(model, cache_use, now, now + ttft_s, self.cache_ttls())
        self.stats.enter()
        try:
            if fate == "hang":
                self.stats.count("hung", model)
                return await self._hang(k.hang_s)
            if prompt.stream:
                return await self._stream(
                    request, prompt, reply, usage, limit_headers, ttft_s, per_token_s
                )
            await asyncio.sleep(ttft_s + reply.output_tokens * per_token_s)
            self._completed(model, usage)
            body = messages.message(messages.message_id(), model, reply, usage)
            return self._json(200, body, limit_headers)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client hangs up (a client-side timeout).
            self.stats.count("client_disconnects", model)
            raise
        finally:
            self.stats.leave()
            self.limiter.give_back(model, prompt.max_tokens - reply.output_tokens)

    def answer_and_usage(
        self, prompt: Prompt, now: float, service_tier: str = "standard"
    ) -> tuple[Answer, dict, CacheUse]:
        """The answer to `prompt` and its usage, had it arrived at `now` (nothing stored)."""
        k = self.knobs
        cache_use = self.cache.look_up(prompt, now, k.cache_min_tokens)
        reply = answer(
            prompt,
            output_tokens_for(prompt, k.output_tokens_min, k.output_tokens_max),
            self.load_deck(),
        )
        usage = messages.usage(
            input_tokens=prompt.input_tokens - cache_use.read - cache_use.creation,
            output_tokens=reply.output_tokens,
            cache_read=cache_use.read,
            cache_creation_5m=cache_use.creation_5m,
            cache_creation_1h=cache_use.creation_1h,
            service_tier=service_tier,
        )
        return reply, usage, cache_use

    def cache_ttls(self) -> dict[str, float]:
        return {"5m": self.knobs.cache_ttl_s, "1h": self.knobs.cache_ttl_1h_s}

    async def _stream(
        self,
        request: web.BaseRequest,
        prompt: Prompt,
        reply: Answer,
        usage: dict[str, int],
        limit_headers: dict[str, str],
        ttft_s: float,
        per_token_s: float,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        start = loop.time()
        response = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": messages.request_id(),
                **limit_headers,
            },
        )
        await response.prepare(request)
        try:
            await response.write(
                messages.stream_head(messages.message_id(), prompt.model, usage, reply)
            )
            chunk_chars = STREAM_CHUNK_TOKENS * CHARS_PER_TOKEN
            k = self.knobs
            breaks = prompt.model in k.broken_stream_models or (
                k.midstream_fail_rate > 0 and self.rng.random() < k.midstream_fail_rate
            )
            for offset in range(0, len(reply.text), chunk_chars):
                if breaks and offset >= len(reply.text) // 2:
                    self.stats.count("overloaded", prompt.model)
                    await response.write(
                        messages.sse("error", messages.error("overloaded_error", "Overloaded"))
                    )
                    await response.write_eof()
                    return response
                # Each chunk is due when its first token is: ttft, then ms_per_token per token.
                # Sleeping to a deadline (not by a fixed step) keeps the total free of drift.
                await _sleep_until(loop, start + ttft_s + offset / CHARS_PER_TOKEN * per_token_s)
                await response.write(
                    messages.stream_delta(
                        reply.text[offset : offset + chunk_chars], tool=bool(reply.tool_name)
                    )
                )
            await _sleep_until(loop, start + ttft_s + reply.output_tokens * per_token_s)
            await response.write(messages.stream_tail(reply, usage))
            await response.write_eof()
        except ConnectionError:
            self.stats.count("client_disconnects", prompt.model)
            return response
        self._completed(prompt.model, usage)
        return response

    async def _hang(self, hang_s: float) -> web.Response:
        with contextlib.suppress(TimeoutError):  # stop() ends the hang early
            await asyncio.wait_for(self._stopping.wait(), hang_s)
        return self._error(500, "api_error", "The request hung (injected by the emulator).")

    async def count_tokens(self, request: web.BaseRequest) -> web.Response:
        try:
            body = await request.json()
            if isinstance(body, dict):
                body = {"max_tokens": 1, **body}  # count_tokens takes no max_tokens
            prompt = parse(body)
        except (ValueError, InvalidRequest) as exc:
            text = str(exc) if isinstance(exc, InvalidRequest) else "The body is not valid JSON."
            return self._error(400, "invalid_request_error", text)
        return self._json(200, {"input_tokens": prompt.input_tokens})

    async def get_stats(self, request: web.BaseRequest) -> web.Response:
        return self._json(200, self.stats.snapshot())

    async def post_reset(self, request: web.BaseRequest) -> web.Response:
        self.reset()
        return self._json(200, {"reset": True})

    async def get_knobs(self, request: web.BaseRequest) -> web.Response:
        return self._json(200, self.knobs.as_dict())

    async def post_configure(self, request: web.BaseRequest) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("send a JSON object of knob names and values")
            knobs = self.configure(**changes)
        except (ValueError, TypeError) as exc:
            return self._error(400, "invalid_request_error", str(exc))
        return self._json(200, knobs.as_dict())

    # --- Helpers ------------------------------------------------------------------------------

    def _batch_handler(self, request: web.BaseRequest):
        prefix = "/v1/messages/batches/"
        if not request.path.startswith(prefix):
            return None
        batch_id, _, action = request.path[len(prefix) :].partition("/")
        route = self.batch_routes.get((request.method, f"/{action}" if action else ""))
        if route is None or not batch_id:
            return None
        return lambda req: route(req, batch_id)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def load_deck(self) -> Deck | None:
        return load_deck(self.deck_path)  # read once per path, then cached

    def _draw_fate(self, k: Knobs) -> str | None:
        if not (k.overloaded_rate or k.error_rate or k.hang_rate):
            return None
        draw = self.rng.random()
        if draw < k.overloaded_rate:
            return "overloaded"
        if draw < k.overloaded_rate + k.error_rate:
            return "error"
        if draw < k.overloaded_rate + k.error_rate + k.hang_rate:
            return "hang"
        return None

    def _completed(self, model: str, usage: dict[str, int]) -> None:
        self.stats.count("ok", model)
        self.stats.add_usage(model, usage)

    def _rate_limited(
        self, model: str, wait_s: float, text: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.stats.count("rate_limited", model)
        if headers is None:
            headers = self.limiter.headers(model)
        headers = {**headers, "retry-after": retry_after_header(wait_s)}
        return self._error(429, "rate_limit_error", text, headers)

    def _overloaded(self, model: str) -> web.Response:
        self.stats.count("overloaded", model)
        return self._error(529, "overloaded_error", "Overloaded")

    def _api_error(self, model: str) -> web.Response:
        self.stats.count("errors", model)
        return self._error(500, "api_error", "Internal server error (injected by the emulator).")

    def error_response(
        self, status: int, error_type: str, text: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return self._error(status, error_type, text, headers)

    def _error(
        self, status: int, error_type: str, text: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return self._json(status, messages.error(error_type, text), headers)

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/json",
            headers={"request-id": messages.request_id(), **(headers or {})},
        )


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


class _CountingServer(web.Server):
    """aiohttp's low-level server, counting TCP connections as they are accepted."""

    def __init__(self, app: EmulatorApp):
        loop = asyncio.get_running_loop()

        def make_request(message, payload, protocol, writer, task):
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY_BYTES
            )

        super().__init__(
            app.dispatch,
            request_factory=make_request,
            # A client that times out hangs up; cancelling its handler frees the slot it held.
            handler_cancellation=True,
            access_log=None,
        )
        self._stats = app.stats

    def connection_made(self, handler, transport) -> None:
        self._stats.connection_made()
        super().connection_made(handler, transport)

    def connection_lost(self, handler, exc=None) -> None:
        self._stats.connection_lost()
        super().connection_lost(handler, exc)


async def start_server(app: EmulatorApp, host: str, port: int) -> tuple[web.BaseRunner, int]:
    """Listen on host:port (0: any free port); returns the runner and the bound port."""
    app.load_deck()  # now, not on the first request
    runner = web.ServerRunner(_CountingServer(app), shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site.port


async def stop_server(app: EmulatorApp, runner: web.BaseRunner) -> None:
    app.begin_shutdown()
    await runner.cleanup()


class Emulator:
    """The emulator on a background thread with its own event loop, for tests and benchmarks.

    with Emulator(Knobs(ttft_ms=5)) as emu:
        client = anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="x")
    """

    def __init__(
        self,
        knobs: Knobs | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        deck_path: Path | str | None = None,
    ):
        self.host = host
        self._requested_port = port
        self._knobs = knobs or Knobs()
        self._deck_path = deck_path
        self._app: EmulatorApp | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.port: int | None = None

    def start(self) -> Emulator:
        """Returns once the port is listening; raises if it cannot listen."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, name="anthropic-emulator", daemon=True)
        self._thread.start()
        while not self._ready.wait(0.05):
            if not self._thread.is_alive():
                self._thread = None
                raise RuntimeError("the emulator thread died while starting")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stops serving and joins the thread; a no-op when not running."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(self._stop_requested.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def knobs(self) -> Knobs:
        return self._app.knobs if self._loop else self._knobs

    def stats(self) -> dict[str, Any]:
        """A consistent snapshot of the counters (see stats.py for what each one means)."""
        return self._on_loop(lambda app: app.stats.snapshot())

    def reset(self) -> None:
        """Zero the stats, refill the rate-limit buckets, empty the prompt cache."""
        self._on_loop(lambda app: app.reset())

    def configure(self, **changes: Any) -> Knobs:
        """Change knobs while running, e.g. configure(rpm=60, force_429=2); returns the new set.
        Unknown or invalid values raise ValueError and change nothing."""
        if self._loop is None:
            self._knobs = self._knobs.replace(**changes)
            return self._knobs
        return self._on_loop(lambda app: app.configure(**changes))

    # --- The background thread ----------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        try:
            app = EmulatorApp(self._knobs, self._deck_path)
            runner, self.port = await start_server(app, self.host, self._requested_port)
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._app = app
        self._stop_requested = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        try:
            await self._stop_requested.wait()
        finally:
            await stop_server(app, runner)
            # The final stats stay readable after stop(); a restart keeps the configured knobs.
            self._knobs = app.knobs
            self._loop = None
            self.port = None

    def _on_loop(self, fn: Callable[[EmulatorApp], T]) -> T:
        """Run fn(app) on the emulator's loop, where the state lives, and wait for its result."""
        app, loop = self._app, self._loop
        if app is None:
            raise RuntimeError("the emulator has not been started")
        if loop is None or threading.current_thread() is self._thread:
            return fn(app)  # stopped (nothing else touches the state) or already on the loop
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn(app))
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return done.result(timeout=30)

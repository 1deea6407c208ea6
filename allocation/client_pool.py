"""One AsyncAnthropic client per process and endpoint, reused by every call and reading.

The clients live on a single long-lived event loop (LLMRuntime) because a pooled
connection belongs to the loop that opened it: a fresh asyncio.run() per reading would throw
the pooled connections away. Retries are ours (max_retries=0), so the engine sees every 429
and 529, honours retry-after and feeds the limiter.
"""

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import anthropic
import uvloop
from django.conf import settings

T = TypeVar("T")

# The emulator and a key-less local run need *some* key for the SDK to send.
LOCAL_PLACEHOLDER_KEY = "emulator-no-key"


def endpoint() -> tuple[str | None, str]:
    """(base_url, api_key) from settings: a real key goes to Anthropic unless a base URL says
    otherwise; no key means the local emulator."""
    api_key = settings.ANTHROPIC_API_KEY or LOCAL_PLACEHOLDER_KEY
    return (settings.ANTHROPIC_BASE_URL or None, api_key)


class ClientPool:
    def __init__(self):
        self._clients: dict[tuple[str | None, str], anthropic.AsyncAnthropic] = {}

    def get(
        self, base_url: str | None = None, api_key: str | None = None
    ) -> anthropic.AsyncAnthropic:
        if api_key is None:
            base_url, api_key = endpoint()
        key = (base_url, api_key)
        client = self._clients.get(key)
        if client is None:
            client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                timeout=anthropic.Timeout(settings.LLM_TIMEOUT_S, connect=5.0),
                # The SDK's aiohttp transport: reading a streamed answer through it costs
                # half the CPU of the default httpx/anyio one (whose every read of the body
                # opens a cancel scope), and streaming is most of what a worker does.
                http_client=anthropic.DefaultAioHttpClient(
                    limits=anthropic.DEFAULT_CONNECTION_LIMITS.__class__(
                        max_connections=200,
                        max_keepalive_connections=100,
                        # Longer than the SDK's 5 s, so a worker between readings keeps its
                        # warm connections instead of opening new ones for the next reading.
                        keepalive_expiry=60.0,
                    )
                ),
            )
            self._clients[key] = client
        return client

    async def aclose(self):
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


class LLMRuntime:
    """A background thread running one event loop for the whole process."""

    def __init__(self):
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.pool = ClientPool()

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or not self._thread.is_alive():
                # uvloop: the loop turns over at every streamed chunk of every call in
                # flight, and its C loop does that for a fraction of asyncio's CPU.
                loop = uvloop.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="llm-runtime", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                self.pool = ClientPool()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the runtime loop and wait for its result (from sync code)."""
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start a coroutine on the runtime loop without waiting for it (from sync code)."""
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_started())

    def shutdown(self):
        with self._lock:
            if self._loop is None:
                return
            loop = self._loop
            asyncio.run_coroutine_threadsafe(self.pool.aclose(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            self._loop = self._thread = None


runtime = LLMRuntime()

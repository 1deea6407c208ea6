"""At most N requests inside Django at once per web process; the rest wait their turn.

Under ASGI each request runs its sync view in a thread of its own, so a burst of 120 POSTs
starts 120 threads that share one core and the GIL: every request then finishes near the
end of the burst, and the first reading reaches the worker seconds late. Letting in a few at
a time (as many as the process has database connections, DATABASE_POOL_MAX) finishes them
in arrival order, each as fast as alone, and nobody waits for a connection inside Django.
Waiting here costs an asyncio task, not a thread or a connection. Event streams are long
and mostly idle, so they do not take a turn: they are bounded per user by their own view.
"""

import asyncio

from django.conf import settings

# Paths that hold their connection open for a long time (Server-Sent Events).
LONG_LIVED_SUFFIXES = ("/events/",)


class RequestQueue:
    def __init__(self, app, limit: int | None = None):
        self.app = app
        self.limit = limit or max(1, settings.DATABASE_POOL_MAX or 4)
        self._turns: asyncio.Semaphore | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].endswith(LONG_LIVED_SUFFIXES):
            return await self.app(scope, receive, send)
        if self._turns is None:  # made on the server's own loop
            self._turns = asyncio.Semaphore(self.limit)
        async with self._turns:
            return await self.app(scope, receive, send)

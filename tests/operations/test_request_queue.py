"""The web process lets a few requests into Django at a time, in arrival order; event streams
do not wait for a turn."""

import asyncio

from operations.request_queue import RequestQueue


class SlowApp:
    """An ASGI app that takes a while and notes how many requests it serves at once."""

    def __init__(self):
        self.inside = 0
        self.peak = 0
        self.order: list[str] = []

    async def __call__(self, scope, receive, send):
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        self.order.append(scope["path"])
        await asyncio.sleep(0.01)
        self.inside -= 1


def request(path: str) -> dict:
    return {"type": "http", "path": path}


async def noop():
    return None


def test_at_most_the_limit_are_inside_at_once_and_they_enter_in_arrival_order():
    app = SlowApp()
    admitted = RequestQueue(app, limit=3)

    async def burst():
        await asyncio.gather(*(admitted(request(f"/api/{i}/"), noop, noop) for i in range(20)))

    asyncio.run(burst())

    assert app.peak == 3
    assert app.order == [f"/api/{i}/" for i in range(20)]


def test_event_streams_do_not_take_a_turn():
    app = SlowApp()
    admitted = RequestQueue(app, limit=1)

    async def streams():
        await asyncio.gather(
            *(admitted(request(f"/api/readings/{i}/events/"), noop, noop) for i in range(5))
        )

    asyncio.run(streams())

    assert app.peak == 5

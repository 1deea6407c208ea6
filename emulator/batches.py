"""Anthropic's Message Batches API: create, retrieve, results (JSONL) and cancel.

A batch waits batch_delay_s, then its requests are answered one after another, each as a
Messages call would be (same text, same usage, the prompt cache read and written, so later
requests of a batch read what earlier ones wrote), but without the Messages API's rate limits
or latency: batches have their own queue. A batch not processed by batch_expiry_s expires; a
canceled one that has not been processed yet ends with every request canceled. Results are
only available once the batch has ended, as on Anthropic.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import messages
from .prompt import InvalidRequest, parse

if TYPE_CHECKING:
    from .server import EmulatorApp

MAX_REQUESTS = 100_000  # Anthropic's limit per batch
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class Batch:
    id: str
    requests: list[tuple[str, dict]]  # (custom_id, params)
    created_at: float  # unix time
    expires_at: float
    processing_status: str = "in_progress"
    ended_at: float | None = None
    cancel_initiated_at: float | None = None
    results: dict[str, dict] = field(default_factory=dict)  # custom_id -> result
    task: asyncio.Task | None = None

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if self.processing_status != "ended":
            counts["processing"] = len(self.requests)
            return counts
        for result in self.results.values():
            counts[result["type"]] += 1
        return counts

    def as_json(self, base_url: str) -> dict[str, Any]:
        ended = self.processing_status == "ended"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.processing_status,
            "request_counts": self.counts(),
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.expires_at),
            "ended_at": _rfc3339(self.ended_at),
            "cancel_initiated_at": _rfc3339(self.cancel_initiated_at),
            "archived_at": None,
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if ended else None,
        }


def _rfc3339(unix: float | None) -> str | None:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z") if unix else None


class BatchStore:
    def __init__(self, app: EmulatorApp):
        self.app = app
        self.batches: dict[str, Batch] = {}

    def clear(self) -> None:
        for batch in self.batches.values():
            if batch.task is not None:
                batch.task.cancel()
        self.batches.clear()

    async def create(self, request: web.BaseRequest) -> web.Response:
        app = self.app
        app.stats.count("batch_creates")
        try:
            body = await request.json()
        except ValueError:
            return app.error_response(400, "invalid_request_error", "The body is not valid JSON.")
        if app.knobs.force_batch_rejects > 0:
            app.configure(force_batch_rejects=app.knobs.force_batch_rejects - 1)
            return app.error_response(
                400, "invalid_request_error", "Forced batch rejection (force_batch_rejects)."
            )
        problem = _request_problem(body)
        if problem:
            return app.error_response(400, "invalid_request_error", problem)
        now = time.time()
        batch = Batch(
            id=messages.anthropic_id("msgbatch_"),
            requests=[(r["custom_id"], r["params"]) for r in body["requests"]],
            created_at=now,
            expires_at=now + app.knobs.batch_expiry_s,
        )
        self.batches[batch.id] = batch
        app.stats.count("batches")
        batch.task = asyncio.get_running_loop().create_task(self._process(batch))
        return app._json(200, batch.as_json(_base_url(request)))

    async def retrieve(self, request: web.BaseRequest, batch_id: str) -> web.Response:
        batch = self.batches.get(batch_id)
        if batch is None:
            return self._not_found(batch_id)
        return self.app._json(200, batch.as_json(_base_url(request)))

    async def results(self, request: web.BaseRequest, batch_id: str) -> web.Response:
        batch = self.batches.get(batch_id)
        if batch is None:
            return self._not_found(batch_id)
        if batch.processing_status != "ended":
            return self.app.error_response(
                400, "invalid_request_error", f"Batch {batch_id} has not ended yet."
            )
        lines = (
            json.dumps({"custom_id": custom_id, "result": result})
            for custom_id, result in batch.results.items()
        )
        return web.Response(
            status=200,
            body=("\n".join(lines) + "\n").encode(),
            content_type="application/binary",
            headers={"request-id": messages.request_id()},
        )

    async def cancel(self, request: web.BaseRequest, batch_id: str) -> web.Response:
        batch = self.batches.get(batch_id)
        if batch is None:
            return self._not_found(batch_id)
        if batch.processing_status == "in_progress":
            batch.cancel_initiated_at = time.time()
            batch.processing_status = "canceling"
            if batch.task is not None:
                batch.task.cancel()
            self._end(batch, {"type": "canceled"})
        return self.app._json(200, batch.as_json(_base_url(request)))

    async def _process(self, batch: Batch) -> None:
        knobs = self.app.knobs
        expires_in = batch.expires_at - time.time()
        await asyncio.sleep(min(knobs.batch_delay_s, max(0.0, expires_in)))
        if knobs.batch_delay_s > expires_in:
            self._end(batch, {"type": "expired"})
            return
        for custom_id, params in batch.requests:
            batch.results[custom_id] = self._answer(params)
        self._end(batch, None)

    def _answer(self, params: dict) -> dict:
        app = self.app
        try:
            prompt = parse(params)
        except InvalidRequest as exc:
            return _errored("invalid_request_error", str(exc))
        model = prompt.model
        app.stats.count("batch_requests", model)
        if model in app.knobs.overloaded_models:
            return _errored("overloaded_error", "Overloaded")
        if model in app.knobs.failing_models:
            return _errored("api_error", "Internal server error (injected by the emulator).")
        now = app._now()
        reply, usage, cache_use = app.answer_and_usage(prompt, now, service_tier="batch")
        # Processed one after another: this response has started before the next one asks.
        app.cache.store(model, cache_use, now, now, app.cache_ttls())
        app.stats.count("ok", model)
        app.stats.add_usage(model, usage)
        return {
            "type": "succeeded",
            "message": messages.message(messages.message_id(), model, reply, usage),
        }

    def _end(self, batch: Batch, unprocessed: dict | None) -> None:
        for custom_id, _ in batch.requests:
            batch.results.setdefault(custom_id, unprocessed or {"type": "expired"})
        batch.processing_status = "ended"
        batch.ended_at = time.time()

    def _not_found(self, batch_id: str) -> web.Response:
        return self.app.error_response(404, "not_found_error", f"No batch {batch_id!r}.")


def _errored(error_type: str, text: str) -> dict:
    return {"type": "errored", "error": messages.error(error_type, text)}


def _request_problem(body: Any) -> str | None:
    """What makes Anthropic refuse a whole batch: its shape, not a request's params."""
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        return "requests: Field required (a list of {custom_id, params})"
    requests = body["requests"]
    if not 1 <= len(requests) <= MAX_REQUESTS:
        return f"requests: a batch holds 1 to {MAX_REQUESTS:,} requests"
    seen = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
            return f"requests.{i}.params: Field required"
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            return f"requests.{i}.custom_id: 1 to 64 letters, digits, _ or -"
        if custom_id in seen:
            return f"requests.{i}.custom_id: {custom_id!r} is used twice in this batch"
        seen.add(custom_id)
        if item["params"].get("stream"):
            return f"requests.{i}.params.stream: batch requests cannot stream"
    return None


def _base_url(request: web.BaseRequest) -> str:
    return f"{request.scheme}://{request.host}"

"""Counters a test or benchmark reads back to see what the platform actually sent.

Only the emulator's event loop writes them; Emulator.stats() asks that loop for a snapshot.
"""

from __future__ import annotations

from typing import Any

# Per outcome, for every request and for each model.
OUTCOMES = (
    "requests",  # every POST /v1/messages received, valid or not
    "ok",  # answered in full
    "rate_limited",  # 429 sent
    "overloaded",  # 529 sent
    "errors",  # 500 sent
    "hung",  # given an injected hang
    "bad_requests",  # 400 sent
    "client_disconnects",  # the client went away before the answer was complete
    "batch_creates",  # every POST /v1/messages/batches received
    "batches",  # message batches accepted
    "batch_requests",  # requests of accepted batches processed (counted in ok when answered)
)
TOKENS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
)


class Stats:
    def __init__(self):
        self.in_flight = 0
        self.connections_open = 0
        self.reset()

    def reset(self) -> None:
        """Zero everything; requests and connections still open stay counted as such."""
        self.totals = dict.fromkeys(OUTCOMES + TOKENS, 0)
        self.by_model: dict[str, dict[str, int]] = {}
        self.peak_concurrency = self.in_flight
        self.connections_opened = 0

    def count(self, outcome: str, model: str | None = None) -> None:
        self.totals[outcome] += 1
        if model is not None:
            self._model(model)[outcome] += 1

    def add_usage(self, model: str, usage: dict[str, int]) -> None:
        per_model = self._model(model)
        flat = {**usage, **usage.get("cache_creation", {})}
        for name in TOKENS:
            self.totals[name] += flat[name]
            per_model[name] += flat[name]

    def enter(self) -> None:
        self.in_flight += 1
        self.peak_concurrency = max(self.peak_concurrency, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def connection_made(self) -> None:
        self.connections_opened += 1
        self.connections_open += 1

    def connection_lost(self) -> None:
        self.connections_open -= 1

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.totals,
            "in_flight": self.in_flight,
            "peak_concurrency": self.peak_concurrency,
            "connections_opened": self.connections_opened,
            "connections_open": self.connections_open,
            "by_model": {model: dict(counts) for model, counts in self.by_model.items()},
        }

    def _model(self, model: str) -> dict[str, int]:
        counts = self.by_model.get(model)
        if counts is None:
            counts = self.by_model[model] = dict.fromkeys(OUTCOMES + TOKENS, 0)
        return counts

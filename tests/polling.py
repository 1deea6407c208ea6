"""Waiting, in tests, for something another thread or process does."""

import time
from collections.abc import Callable

import pytest


def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float,
    what: str,
    explain: Callable[[], str] = lambda: "",
    interval: float = 0.05,
):
    """Return once predicate() is true; fail the test, saying what it waited for, if it is
    not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    details = explain()
    pytest.fail(
        f"timed out after {timeout} s waiting for {what}" + (f"\n{details}" if details else "")
    )

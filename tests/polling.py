"""Waiting, in tests, for something another thread or process does.

A test waits through wait_for: it polls for the condition the test then asserts, instead of
sleeping for a guess at how long that takes. Where the code under test takes a clock
(`now=`) or keeps a timestamp, a test moves that instead of letting time pass."""

import time
from collections.abc import Callable

import pytest


def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float,
    what: str,
    explain: Callable[[], str] = lambda: "",
    poll_interval_s: float = 0.05,
):
    """Return once predicate() is true; fail the test, saying what it waited for, if it is
    not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_interval_s)
    details = explain()
    pytest.fail(
        f"timed out after {timeout} s waiting for {what}" + (f"\n{details}" if details else "")
    )

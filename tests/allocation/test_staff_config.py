"""Staff's configuration, kept per process: an edit saved in this process applies at once, one
made elsewhere (or in bulk) within FRESH_S."""

import time

import pytest

from allocation import staff_config
from allocation.models import ModelPrice
from allocation.pricing import price_override

pytestmark = pytest.mark.django_db


def test_a_saved_price_applies_at_once():
    assert price_override("claude-custom-1") is None

    ModelPrice.objects.create(
        model="claude-custom-1",
        input_per_mtok=1,
        output_per_mtok=2,
        cache_read_per_mtok=0,
        cache_write_per_mtok=0,
    )

    assert price_override("claude-custom-1").output_per_mtok == 2


def test_rows_changed_without_a_signal_are_read_again_after_fresh_s(monkeypatch):
    ModelPrice.objects.create(
        model="claude-custom-1",
        input_per_mtok=1,
        output_per_mtok=2,
        cache_read_per_mtok=0,
        cache_write_per_mtok=0,
    )
    assert price_override("claude-custom-1").output_per_mtok == 2
    ModelPrice.objects.filter(model="claude-custom-1").update(output_per_mtok=3)
    assert price_override("claude-custom-1").output_per_mtok == 2  # this process's copy

    later = time.monotonic() + staff_config.FRESH_S
    monkeypatch.setattr(staff_config.time, "monotonic", lambda: later)

    assert price_override("claude-custom-1").output_per_mtok == 3


def test_a_deleted_row_is_gone_at_once():
    price = ModelPrice.objects.create(
        model="claude-custom-1",
        input_per_mtok=1,
        output_per_mtok=2,
        cache_read_per_mtok=0,
        cache_write_per_mtok=0,
    )
    assert price_override("claude-custom-1") is not None

    price.delete()

    assert price_override("claude-custom-1") is None

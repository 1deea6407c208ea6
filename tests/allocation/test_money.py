"""Money on staff pages: totals in dollars and cents, one call with every stored digit."""

from decimal import Decimal

from allocation.money import usd_exact, usd_total


def test_a_total_reads_in_dollars_and_cents_with_thousands_separators():
    assert usd_total(Decimal("193.151140")) == "$193.15"
    assert usd_total(Decimal("1234.565")) == "$1,234.57"  # half a cent rounds up
    assert usd_total(Decimal("0")) == "$0.00"


def test_a_total_under_half_a_cent_never_reads_as_nothing():
    assert usd_total(Decimal("0.0012")) == "< $0.01"


def test_one_calls_cost_keeps_every_stored_digit():
    assert usd_exact(Decimal("0.02290050")) == "$0.0229005"
    assert usd_exact(Decimal("0.00000001")) == "$0.00000001"
    assert usd_exact(Decimal("1500.10000000")) == "$1,500.10"


def test_nothing_to_show_is_a_dash():
    assert usd_total(None) == "-" and usd_exact(None) == "-"

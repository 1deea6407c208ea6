"""How money reads on staff pages: totals in dollars and cents, one call at full precision.

A total is what a person compares and adds up ($193.15); a single call costs fractions of a
cent, so it keeps every stored digit ($0.00229005). Exports (CSV, JSON) stay exact.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None


def usd_total(value) -> str:
    """$1,234.57; a positive amount under half a cent reads "< $0.01", never "$0.00"."""
    amount = _decimal(value)
    if amount is None:
        return "-"
    if 0 < abs(amount) < CENT / 2:
        return "< $0.01" if amount > 0 else "> -$0.01"
    cents = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents):,.2f}"


def usd_exact(value) -> str:
    """Every stored digit of one call's cost, at least two decimals: $0.00229005, $0.10."""
    amount = _decimal(value)
    if amount is None:
        return "-"
    text = format(abs(amount), "f")
    whole, _, decimals = text.partition(".")
    decimals = decimals.rstrip("0").ljust(2, "0")
    sign = "-" if amount < 0 else ""
    return f"{sign}${int(whole):,}.{decimals}"

"""Request rates as DRF writes them ("20/min"): checked before staff save one, compared when
a user's groups disagree."""

PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def rate_problem(rate: str) -> str | None:
    """None if DRF can read the rate (e.g. 20/min), else what is wrong with it."""
    number, _, period = (rate or "").strip().partition("/")
    if not number.strip().isdigit() or int(number) < 1:
        return f"{rate!r}: start with a whole number of requests of at least 1, e.g. 20/min."
    if not period.strip() or period.strip()[0] not in PERIOD_SECONDS:
        return f"{rate!r}: end with a period: /sec, /min, /hour or /day."
    return None


def per_second(rate: str) -> float:
    number, _, period = rate.strip().partition("/")
    return int(number) / PERIOD_SECONDS[period.strip()[0]]


def most_generous(rates: list[str]) -> str:
    """The rate allowing the most requests per second ("" when there is none)."""
    valid = [r for r in rates if r and rate_problem(r) is None]
    return max(valid, key=per_second) if valid else ""

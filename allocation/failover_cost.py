"""What a fallback costs next to the allocated model, and whether the allocation allows it.

A fallback is a rescue, not a free upgrade: when the cheap card model is down, sending every
card batch to a model ten times its price can multiply what a reading costs while nobody is
looking. Staff set a ceiling per allocation (ModelAllocation.fallback_cost_ceiling), a
multiple of the allocated model's cost for the same call; a fallback above it is skipped and
the task moves on to the next one, or fails with a message saying why.

Both sides are priced for the call at hand (its estimated input tokens and max_tokens of
output) through the same pricing as the ledger, so the admin's price overrides count.
"""

from decimal import Decimal

from allocation.pricing import TokenUsage, costs_on

# What the admin's check prices when no call is at hand: a typical card batch's prompt.
TYPICAL_INPUT_TOKENS = 2_000


def cost_multiples(
    model: str, fallbacks: list[str], *, input_tokens: int, output_tokens: int
) -> dict[str, Decimal | None]:
    """Each fallback's cost for the same call as a multiple of the model's (None where either
    side cannot be priced: that is the allocation's validation's business, not a reason to
    block a rescue)."""
    usage = TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens)
    costs = costs_on([model, *fallbacks], usage)
    base = costs[model]
    return {
        name: (costs[name] / base if base and costs[name] is not None else None)
        for name in fallbacks
    }


def skipped_fallbacks(
    model: str, fallbacks: list[str], ceiling: Decimal | None, *, input_tokens: int, max_tokens: int
) -> dict[str, str]:
    """The fallbacks this call may not use, each with the reason, for the task's log."""
    if ceiling is None or not fallbacks:
        return {}
    multiples = cost_multiples(
        model, fallbacks, input_tokens=input_tokens, output_tokens=max_tokens
    )
    return {
        name: (
            f"{name}: skipped, it would cost {multiple:.2f}x {model}'s price for this call, "
            f"above the allocation's fallback cost ceiling of {ceiling}x"
        )
        for name, multiple in multiples.items()
        if multiple is not None and multiple > ceiling
    }


def fallbacks_above_ceiling(
    model: str, fallbacks: list[str], ceiling: Decimal, max_tokens: int
) -> list[str]:
    """For the admin: fallbacks a typical call could never use under this ceiling."""
    multiples = cost_multiples(
        model, fallbacks, input_tokens=TYPICAL_INPUT_TOKENS, output_tokens=max_tokens
    )
    return [
        f"{name} costs {multiple:.2f}x {model}"
        for name, multiple in multiples.items()
        if multiple is not None and multiple > ceiling
    ]

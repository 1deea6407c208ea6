"""The input-token charge at admission leaves out the prefixes the provider has cached."""

from allocation.prompt import Prompt, PromptPart
from allocation.warm_prefixes import WarmPrefixes

GUIDE = PromptPart("guide", "g" * 4000, "1h")  # 1,000 tokens
LAYOUT = PromptPart("layout", "l" * 800, "5m")  # 200 tokens, 1,200 up to its end


def prompt(own="o" * 400, layout=LAYOUT):
    return Prompt(system=(GUIDE,), user=(layout, PromptPart("advice", own)))


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_nothing_is_warm_before_a_call_has_cached_it():
    assert WarmPrefixes().cached_tokens("claude-sonnet-5", prompt()) == 0


def test_after_a_call_cached_it_the_longest_warm_prefix_is_left_out():
    warm = WarmPrefixes()
    warm.saw("claude-sonnet-5", prompt(), cached_tokens=1200)

    assert warm.cached_tokens("claude-sonnet-5", prompt(own="another instruction")) == 1200
    # Another reading's layout: only the guide is shared.
    other = prompt(layout=PromptPart("layout", "m" * 800, "5m"))
    assert warm.cached_tokens("claude-sonnet-5", other) == 1000


def test_caches_are_per_model():
    warm = WarmPrefixes()
    warm.saw("claude-sonnet-5", prompt(), cached_tokens=1200)

    assert warm.cached_tokens("claude-sonnet-5-5", prompt()) == 0


def test_only_what_the_provider_reported_cached_counts():
    warm = WarmPrefixes()
    # A prefix below the model's minimum is not cached: the provider reports 0.
    warm.saw("claude-haiku-5-5", prompt(), cached_tokens=0)
    warm.saw("claude-sonnet-5", prompt(), cached_tokens=1000)  # the guide only

    assert warm.cached_tokens("claude-haiku-5-5", prompt()) == 0
    assert warm.cached_tokens("claude-sonnet-5", prompt()) == 1000


def test_an_entry_cools_after_its_ttl():
    clock = Clock()
    warm = WarmPrefixes(clock=clock)
    warm.saw("claude-sonnet-5", prompt(), cached_tokens=1200)

    clock.now = 301  # past the layout's 5 minutes, inside the guide's hour
    assert warm.cached_tokens("claude-sonnet-5", prompt()) == 1000
    clock.now = 3601
    assert warm.cached_tokens("claude-sonnet-5", prompt()) == 0

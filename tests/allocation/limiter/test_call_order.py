"""Which waiting call goes next: the critical path while the limits allow many calls at once,
the order the readings came in once they let calls through about one at a time."""

from allocation.limiter.call_order import STAGE_LOOKAHEAD_S, CallOrder, Pace, key

# Three readings started a second apart, each with all 7 calls to go and a card call (3
# stages left) waiting; and an older one with only its advice (1 stage left) to go.
CARDS = [CallOrder(job, 100.0 + i, stages_left=3) for i, job in enumerate("abc")]
OLDER_ADVICE = CallOrder("older", 99.0, stages_left=1)


def ranked(orders, *, arrival_first):
    by_key = [key(o, arrival_first=arrival_first) for o in orders]
    return [o.job for _, o in sorted(zip(by_key, orders, strict=True), key=lambda p: p[0])]


def test_on_the_critical_path_earlier_stages_go_first():
    assert ranked([OLDER_ADVICE, *CARDS], arrival_first=False) == ["a", "b", "c", "older"]


def test_in_arrival_order_the_reading_that_came_first_goes_first():
    assert ranked([*CARDS, OLDER_ADVICE], arrival_first=True) == ["older", "a", "b", "c"]


def test_a_reading_holds_its_place_whatever_stage_it_is_in():
    a_phase_two = CallOrder("a", 100.0, stages_left=2)
    b_cards = CallOrder("b", 101.0, stages_left=3)
    assert ranked([b_cards, a_phase_two], arrival_first=True) == ["a", "b"]


def test_readings_further_apart_than_their_lookahead_go_in_arrival_order_either_way():
    early_advice = CallOrder("x", 100.0, stages_left=1)
    late_cards = CallOrder("y", 100.0 + 3 * STAGE_LOOKAHEAD_S, stages_left=3)
    assert ranked([late_cards, early_advice], arrival_first=False) == ["x", "y"]


def test_a_call_without_an_order_goes_after_every_ordered_one():
    for arrival_first in (True, False):
        by_key = [key(o, arrival_first=arrival_first) for o in (None, CARDS[0])]
        assert by_key[1] < by_key[0]


def test_arrival_order_once_the_limits_admit_calls_slower_than_they_finish():
    pace = Pace()
    for at in (10.0, 14.0, 18.0, 22.0):  # one call every 4 s...
        pace.admitted(at)
        pace.released(1.7)  # ...each done in 1.7 s: the provider sees one at a time
    assert pace.seconds_per_call(now=26.0) == 4.0
    assert pace.arrival_first(now=26.0)


def test_the_critical_path_while_the_limits_let_many_calls_run_at_once():
    pace = Pace()
    for n in range(40):  # ten calls a second, each running 1.5 s: 15 in flight
        pace.admitted(10.0 + n / 10)
        pace.released(1.5)
    assert not pace.arrival_first(now=14.0)


def test_before_any_call_has_ended_the_critical_path():
    assert not Pace().arrival_first(now=10.0)


def test_with_nothing_admitted_lately_arrival_order():
    pace = Pace()
    pace.admitted(10.0)
    pace.released(1.0)
    assert pace.seconds_per_call(now=100.0) == 30.0
    assert pace.arrival_first(now=100.0)


def test_in_arrival_order_a_reading_the_fair_queue_held_back_goes_from_when_it_was_let_in():
    running = CallOrder("running", 100.0, stages_left=1)
    held_back = CallOrder("held", 90.0, stages_left=3, let_in_at=110.0)
    assert ranked([held_back, running], arrival_first=True) == ["running", "held"]
    # On the critical path it keeps its age, as before.
    assert ranked([running, held_back], arrival_first=False) == ["held", "running"]

"""Which waiting call goes first to a busy model: older readings first, but earlier phases of
readings created close together first, so later phases are ready before the work runs out."""

from readings.engine import PHASE_LOOKAHEAD_S, call_priority


def test_of_two_readings_created_together_the_card_batches_go_before_the_advice():
    assert call_priority(100.0, phase=1) < call_priority(100.0, phase=3)


def test_a_newer_readings_cards_go_before_an_older_readings_advice_within_the_lookahead():
    older_advice = call_priority(100.0, phase=3)
    newer_cards = call_priority(100.0 + PHASE_LOOKAHEAD_S, phase=1)
    assert newer_cards < older_advice


def test_a_much_older_reading_finishes_before_a_new_one_starts():
    old_advice = call_priority(100.0, phase=3)
    new_cards = call_priority(100.0 + 3 * PHASE_LOOKAHEAD_S, phase=1)
    assert old_advice < new_cards


def test_the_same_phase_goes_oldest_first():
    assert call_priority(100.0, phase=2) < call_priority(101.0, phase=2)

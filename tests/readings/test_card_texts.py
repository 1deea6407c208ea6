from readings.card_texts import SEE_ABOVE, split_by_card, texts_for_later_phases

NAMES = ["The Present", "The Challenge", "The Foundation"]


def test_it_splits_at_each_position_name_the_prompt_asked_for():
    text = (
        "The Present: a fresh start.\n\nThe Challenge: an old habit.\n"
        "It lingers.\n\nThe Foundation: steady ground."
    )

    assert split_by_card(text, NAMES) == [
        "The Present: a fresh start.",
        "The Challenge: an old habit.\nIt lingers.",
        "The Foundation: steady ground.",
    ]


def test_it_tolerates_decorated_names():
    text = "**The Present:** one.\n**The Challenge:** two.\n**The Foundation:** three."

    assert split_by_card(text, NAMES) == [
        "**The Present:** one.",
        "**The Challenge:** two.",
        "**The Foundation:** three.",
    ]


def test_it_falls_back_to_one_paragraph_per_card():
    assert split_by_card("One.\n\nTwo.\n\nThree.", NAMES) == ["One.", "Two.", "Three."]


def test_it_gives_every_position_the_whole_text_rather_than_a_wrong_slice():
    text = "A single flowing answer about all three cards."

    assert split_by_card(text, NAMES) == [text] * 3


def test_names_out_of_order_are_not_trusted():
    text = "The Challenge: x\n\nThe Present: y"

    assert split_by_card(text, ["The Present", "The Challenge"]) == [
        "The Challenge: x",
        "The Present: y",
    ]


def test_a_single_card_gets_the_whole_text():
    assert split_by_card("  Just this.  ", ["The Outcome"]) == ["Just this."]


def test_later_phases_get_an_unattributed_batch_text_once():
    text = "A single flowing answer about all three cards."

    assert texts_for_later_phases(text, NAMES) == [text, SEE_ABOVE, SEE_ABOVE]


def test_later_phases_get_each_cards_own_paragraph_when_it_can_be_attributed():
    assert texts_for_later_phases("One.\n\nTwo.\n\nThree.", NAMES) == ["One.", "Two.", "Three."]

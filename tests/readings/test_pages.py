"""The reading page for signed-in readers: sign up, ask, watch, find it in the history."""

import pytest
from django.contrib.auth import get_user_model
from django_q.models import OrmQ

from accounts.models import Profile
from readings.models import Reading, ReadingStatus
from readings.services import reading_create

pytestmark = pytest.mark.django_db


def test_the_page_asks_visitors_to_sign_in(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/")


def test_a_new_reader_signs_up_and_lands_on_the_page(client):
    response = client.post(
        "/accounts/signup/",
        {
            "username": "dana",
            "password1": "a-long-pass-phrase-42",
            "password2": "a-long-pass-phrase-42",
            "language": "ko",
        },
    )

    assert response.status_code == 302 and response["Location"] == "/"
    dana = get_user_model().objects.get(username="dana")
    assert Profile.objects.get(user=dana).language == "ko"
    page = client.get("/")
    assert page.status_code == 200
    assert 'option value="ko" selected' in page.content.decode()


def test_asking_a_question_starts_a_reading_and_shows_it(
    client, bob, django_capture_on_commit_callbacks
):
    client.force_login(bob)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/", {"spread": "three_card", "question": "이사를 가도 될까요?", "language": "ko"}
        )

    reading = Reading.objects.get(owner=bob)
    # Queued for the worker, as the API queues it.
    assert OrmQ.objects.get().task["args"] == (str(reading.pk),)
    assert reading.language == "ko" and reading.question == "이사를 가도 될까요?"
    assert response.status_code == 302 and response["Location"] == f"/readings/{reading.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert f'data-events="/api/readings/{reading.pk}/events/"' in page
    assert page.count('class="card"') == 3
    for card in reading.drawn_cards.select_related("card", "position"):
        assert card.card.name in page and card.position.name in page


def test_a_bad_question_is_answered_on_the_page(client, bob):
    client.force_login(bob)

    response = client.post("/", {"spread": "three_card", "question": "  ", "language": "en"})

    assert response.status_code == 400
    assert "Ask a question: it cannot be empty." in response.content.decode()
    assert not Reading.objects.exists()


def test_a_long_paste_is_refused_whole_not_cut(client, bob):
    client.force_login(bob)
    assert "maxlength" not in client.get("/").content.decode()  # the browser cuts nothing
    pasted = ("Will it rain? " * 357).strip()  # 4,997 characters

    response = client.post("/", {"spread": "three_card", "question": pasted, "language": "en"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "Keep the question under 1000 characters (it has 4997)." in page
    assert pasted in page  # still there to shorten
    assert "4997 of 1000 characters" in page
    assert not Reading.objects.exists()


def test_the_history_lists_only_the_readers_own_readings(client, bob, charlie):
    mine = reading_create(owner=bob, spread="three_card", question="Mine?")
    theirs = reading_create(owner=charlie, spread="three_card", question="Theirs?")
    client.force_login(bob)

    page = client.get("/").content.decode()

    assert "Mine?" in page and "Theirs?" not in page
    assert client.get(f"/readings/{mine.pk}/").status_code == 200
    assert client.get(f"/readings/{theirs.pk}/").status_code == 404


def test_costs_and_model_names_stay_off_the_page(client, bob):
    from tests.readings.api.conftest import finish

    reading = finish(reading_create(owner=bob, spread="three_card", question="Will I move?"))
    client.force_login(bob)

    page = client.get(f"/readings/{reading.pk}/").content.decode()

    assert reading.status == ReadingStatus.DONE
    assert "claude" not in page.lower()
    assert "0.012345" not in page and "0.01" not in page and "cost" not in page.lower()
    assert "Go, but pack your own tools." in page
    assert 'data-events=""' in page  # finished: nothing to follow


def test_the_page_speaks_korean_to_a_korean_browser(client, bob):
    client.force_login(bob)

    page = client.get("/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()

    assert '<html lang="ko">' in page
    assert "카드에게 묻기" in page and "나의 리딩" in page
    # Each language by its own name, and in the page's language.
    assert ">English (영어)</option>" in page and ">한국어</option>" in page
    english = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert ">한국어 (Korean)</option>" in english and ">English</option>" in english
    assert "켈틱 크로스" in page  # the seeded spreads' names, and the deck's, are translated


def test_a_korean_reader_sees_the_cards_and_positions_in_korean(client, bob):
    from readings.services import CardChoice

    cards = [
        CardChoice("the-tower"),
        CardChoice("the-star", reversed=True),
        CardChoice("ace-of-cups"),
    ]
    reading = reading_create(owner=bob, spread="three_card", question="?", cards=cards)
    client.force_login(bob)

    page = client.get(f"/readings/{reading.pk}/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()

    for korean in ["1. 과거", "2. 현재", "3. 미래", "탑", "별", "컵 에이스", "(역방향)"]:
        assert korean in page, korean


def section_of(page: str, part: str) -> str:
    """The opening tag of a reading's section on the page."""
    start = page.index(f'data-part="{part}"')
    return page[page.rindex("<div", 0, start) : page.index(">", start) + 1]


def test_each_section_not_yet_written_says_what_it_waits_for(client, bob):
    from readings.services import CardChoice

    cards = [CardChoice("the-tower"), CardChoice("the-star"), CardChoice("ace-of-cups")]
    reading = reading_create(owner=bob, spread="three_card", question="?", cards=cards)
    client.force_login(bob)

    page = client.get(f"/readings/{reading.pk}/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()

    card = section_of(page, "card-1")
    assert 'data-waiting="차례를 기다리는 중"' in card and 'data-name="1. 과거"' in card
    assert card + "</div>" in page  # empty, so the page shows what it waits for
    assert 'data-waiting="모든 카드를 읽은 뒤에 작성됩니다"' in section_of(page, "overall")
    assert "전체 리딩과 카드의 관계 다음에" in section_of(page, "advice")
    assert 'data-text-writing-parts="작성 중:"' in page

    Reading.objects.filter(pk=reading.pk).update(status=ReadingStatus.FAILED)
    page = client.get(f"/readings/{reading.pk}/").content.decode()
    assert 'data-waiting="Not written: finish this reading to have it."' in section_of(
        page, "advice"
    )


def test_the_reading_page_lays_the_cards_out_as_the_spread_each_linking_to_its_text(client, bob):
    reading = reading_create(owner=bob, spread="celtic_cross", question="Where am I going?")
    client.force_login(bob)

    page = client.get(f"/readings/{reading.pk}/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()

    spread_map = page.split('<ol class="spread-map"')[1].split("</ol>")[0]
    assert 'aria-label="펼친 카드 배치"' in page
    assert 'class="map-card crosswise" style="grid-column: 2; grid-row: 2" data-index="2"' in (
        spread_map
    )
    assert 'style="grid-column: 5; grid-row: 1" data-index="10"' in spread_map
    for index in range(1, 11):
        assert f'href="#position-{index}"' in spread_map
        assert f'id="position-{index}"' in page
    assert '<span class="sr-only">. 현재:</span>' in spread_map, "named by position and card"


def test_a_failed_reading_that_cannot_be_finished_offers_to_ask_its_question_again(client, bob):
    reading = reading_create(
        owner=bob, spread="three_card", question="Will the move go well?", mode="economy"
    )
    Reading.objects.filter(pk=reading.pk).update(status=ReadingStatus.FAILED)
    client.force_login(bob)

    page = client.get(f"/readings/{reading.pk}/").content.decode()

    assert 'id="retry"' not in page  # an economy reading cannot be finished
    link = "/?spread=three_card&amp;language=en&amp;question=Will%20the%20move%20go%20well%3F"
    assert f'<p id="ask-again"><a href="{link}">' in page
    home = client.get("/?spread=three_card&language=ko&question=Will%20the%20move%20go%20well%3F")
    form = home.content.decode()
    assert ">Will the move go well?</textarea>" in form
    assert 'value="three_card" required\n             checked' in form
    assert '<option value="ko" selected>' in form


def test_asking_again_with_a_language_that_does_not_exist_falls_back(client, bob):
    client.force_login(bob)
    response = client.get("/?language=xx&question=Hi")
    assert response.status_code == 200
    assert ">Hi</textarea>" in response.content.decode()

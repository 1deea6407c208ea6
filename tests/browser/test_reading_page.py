"""A reader's journey on the reading page, in Debian's headless chromium, with everything real:
uvicorn serving the ASGI app (the event stream needs it), a `manage.py qcluster` worker and
the emulator. A new reader signs up, asks in Korean, watches the cards' text arrive while the
reading is still being written, and finds the Korean reading in their history; on a phone, a
reading that fails late is finished by a retry and the throttle speaks on the form; with the
provider stopped a reading fails at once and is finished once it is back. No page has a
serious or critical axe-core finding.
"""

import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from django.contrib.auth.models import User
from django.db import connection
from playwright.sync_api import expect, sync_playwright

from allocation.models import ModelAllocation
from allocation.staff_config import FRESH_S
from benchmarks.workers import WebServer, WorkerCluster
from budgets.models import QuotaOverride
from emulator import Emulator, Knobs
from readings.models import Reading, ReadingStatus
from spreads.models import TaskType
from tests.browser.test_staff_journey import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_staff_pages import AXE
from tests.conftest import TEST_KNOBS
from tests.worker.test_worker import qcluster_factory  # noqa: F401 - a fixture

HANGUL = re.compile(r"[\uac00-\ud7a3]")
QUESTION = "올해 새로운 일을 시작해도 될까요?"


def axe_problems(page, where: str) -> list[str]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']}))"
        ".violations.filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => `${v.impact} ${v.id}: ${v.nodes.slice(0, 3)"
        ".map(n => n.target.join(' ')).join(', ')}`)"
    )
    return [f"{where}: {finding}" for finding in found]


def from_db(query):
    """query() on a thread of its own: Playwright's sync API runs an event loop in this one,
    where Django refuses database calls."""

    def run():
        try:
            return query()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def wait_for_sessions_to_end() -> None:
    """The server's database sessions end when Postgres notices it has gone; the test
    database can be dropped after that."""
    with connection.cursor() as cursor:
        for _ in range(50):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


def sign_up(page, username: str) -> None:
    """On the sign-up page: a new reader's account, landing on the home page."""
    page.fill("#id_username", username)
    page.fill("#id_password1", "a-long-pass-phrase-42")
    page.fill("#id_password2", "a-long-pass-phrase-42")
    page.get_by_role("button", name="계정 만들기").click()
    expect(page.get_by_role("heading", name="카드에게 묻기")).to_be_visible()


def sign_out_and_in(page, username: str) -> None:
    """Sign out from the header and in again: the reader lands on the home page."""
    page.get_by_role("button", name=re.compile("로그아웃")).click()
    page.get_by_label("사용자 이름").fill(username)
    page.get_by_label("비밀번호").fill("a-long-pass-phrase-42")
    page.get_by_role("button", name="로그인").click()
    expect(page.get_by_role("heading", name="카드에게 묻기")).to_be_visible()
    expect(page).to_have_url(re.compile(r"^http://[^/]+/$"))


def assert_laid_out_as_the_celtic_cross(page, *, width: int) -> None:
    """The map's boxes: a cross with its second card turned across the first, and the staff
    of four in a column beside it, read from the bottom up, all within the page's width."""
    # One snapshot of all ten: the page grows above the map while the reading is written, so
    # boxes measured one call apart may come from two different layouts.
    page.locator('.map-card[data-index="10"]').wait_for()
    rects = page.locator(".map-card").evaluate_all(
        """cards => cards.map(card => {
            const r = card.getBoundingClientRect();
            return [Number(card.dataset.index), {x: r.x, y: r.y, width: r.width, height: r.height}];
        })"""
    )
    box = dict(rects)

    def centre(b):
        return (b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)

    assert box[1]["height"] > box[1]["width"] and box[2]["width"] > box[2]["height"], "crossed"
    assert centre(box[1]) == pytest.approx(centre(box[2]), abs=1)
    assert centre(box[5])[1] < centre(box[1])[1] < centre(box[3])[1], "crown above, root below"
    assert centre(box[4])[0] < centre(box[1])[0] < centre(box[6])[0], "past left, future right"
    staff = [box[i] for i in (7, 8, 9, 10)]
    assert len({round(centre(b)[0]) for b in staff}) == 1, "the staff is one column"
    assert min(b["x"] for b in staff) > box[6]["x"] + box[6]["width"], "beside the cross"
    assert [centre(b)[1] for b in staff] == sorted((centre(b)[1] for b in staff), reverse=True)
    assert max(b["x"] + b["width"] for b in box.values()) <= width


@contextmanager
def korean_reader(start_cluster, tmp_path, *, width: int, height: int):
    """A page in a Korean browser of that size, on the platform served for real (uvicorn and a
    qcluster worker); the server's database sessions are waited out afterwards."""
    cluster = start_cluster()
    cluster.wait_until_ready()
    try:
        with (
            WebServer(log_path=tmp_path / "web.log") as web,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            # A Korean browser: the page speaks Korean and readings default to Korean.
            context = browser.new_context(
                base_url=web.url,
                locale="ko-KR",
                timezone_id="Asia/Seoul",
                viewport={"width": width, "height": height},
            )
            page = context.new_page()
            page.set_default_timeout(20_000)
            yield page
            browser.close()
    finally:
        wait_for_sessions_to_end()


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_new_reader_asks_in_korean_and_watches_the_reading_arrive(
    emulator,
    qcluster_factory,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    # Slow enough to watch: about a second and a half per answer.
    emulator.configure(ttft_ms=300, ms_per_token=6)
    problems = []
    with korean_reader(qcluster_factory, tmp_path, width=1400, height=900) as page:
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/accounts/login/"))
        problems += axe_problems(page, "sign in")
        page.get_by_role("link", name="가입하기").first.click()
        problems += axe_problems(page, "sign up")
        sign_up(page, "minji")
        sign_out_and_in(page, "minji")
        problems += axe_problems(page, "home")
        page.get_by_label("켈틱 크로스").check()  # the seeded names are translated
        page.get_by_label("질문").fill(QUESTION)
        expect(page.get_by_label("리딩 언어")).to_have_value("ko")
        page.get_by_role("button", name="카드 뽑기").click()

        # The cards are laid out at once, as the spread lies, before any text.
        expect(page.locator("li.card")).to_have_count(10)
        assert_laid_out_as_the_celtic_cross(page, width=1400)
        # While it is written, the status names the positions being read, and what is not
        # written yet says what it waits for.
        expect(page.get_by_role("status")).to_contain_text(re.compile(r"작성 중: \d+\. \S"))
        expect(page.locator('[data-part="advice"]')).to_have_attribute(
            "data-waiting", "전체 리딩과 카드의 관계 다음에 작성됩니다"
        )
        first_card = page.locator('[data-part="card-1"]')
        expect(first_card).not_to_be_empty()
        reading = from_db(lambda: Reading.objects.get(owner__username="minji"))
        assert reading.status == ReadingStatus.RUNNING  # arrived while being written
        assert reading.language == "ko"
        problems += axe_problems(page, "reading, running")

        expect(page.get_by_role("status")).to_have_text("리딩이 완성되었습니다.", timeout=60_000)
        # Read to the end of the reading: the status stays in view.
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        expect(page.get_by_role("status")).to_be_in_viewport()
        for part in ["card-1", "card-10", "overall", "relationships", "advice"]:
            text = page.locator(f'[data-part="{part}"]').inner_text()
            assert HANGUL.search(text), f"{part}: {text[:80]!r}"
        page_text = page.locator("main").inner_text()
        assert "claude" not in page_text.lower() and "$" not in page_text
        problems += axe_problems(page, "reading, done")

        page.get_by_role("link", name="다른 질문하기").click()
        history = page.locator("#history")
        expect(history.get_by_role("link", name=QUESTION)).to_be_visible()
        # Times are in the reader's own time zone, from the browser, and say which.
        expect(history.locator("time").first).to_contain_text("KST")
        history.get_by_role("link", name=QUESTION).click()
        expect(page.get_by_role("heading", name=QUESTION)).to_be_visible()
        assert HANGUL.search(page.locator('[data-part="advice"]').inner_text())

    assert not problems, "\n".join(problems)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_reader_finishes_a_reading_that_failed_late(
    emulator,
    qcluster_factory,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    # The advice alone on a model that is down, with nothing to fall back to.
    ModelAllocation.objects.filter(task_type=TaskType.ADVICE).update(
        model="claude-opus-4-1", fallback_models=""
    )
    emulator.configure(ttft_ms=50, ms_per_token=1, failing_models=frozenset({"claude-opus-4-1"}))
    problems = []
    with korean_reader(qcluster_factory, tmp_path, width=390, height=844) as page:
        # A new reader signs up, signs out, and signs in again: each lands on the home page.
        page.goto("/accounts/signup/")
        sign_up(page, "seoyeon")
        # Staff have given this reader two readings an hour (the web server sees a quota
        # within FRESH_S).
        from_db(
            lambda: QuotaOverride.objects.create(
                user=User.objects.get(username="seoyeon"), reading_rate="2/hour"
            )
        )
        time.sleep(FRESH_S)
        sign_out_and_in(page, "seoyeon")
        page.get_by_label("켈틱 크로스").check()
        page.get_by_label("질문").fill(QUESTION)
        page.get_by_role("button", name="카드 뽑기").click()

        # On a phone too the cards lie as the spread, each a link to its text.
        assert_laid_out_as_the_celtic_cross(page, width=390)
        page.locator('.map-card[data-index="9"] a').click()
        expect(page.locator("#position-9")).to_be_in_viewport()
        expect(page.locator("#position-9")).to_be_focused()

        # It fails at its last step: the failure reads as one, what was written stays,
        # and the page offers to finish it.
        status = page.get_by_role("status")
        expect(status).to_have_class(re.compile(r"\berrors\b"), timeout=60_000)
        expect(page.locator('[data-part="card-1"]')).not_to_be_empty()
        expect(page.locator('[data-part="advice"]')).to_be_empty()
        finish = page.get_by_role("button", name="이 리딩 마저 읽기")
        expect(finish).to_be_visible()
        problems += axe_problems(page, "reading, failed")

        # The provider is back: finishing it writes only the advice.
        emulator.configure(failing_models=frozenset())
        finish.click()
        expect(status).to_have_text("리딩이 완성되었습니다.", timeout=60_000)
        expect(page.locator('[data-part="advice"]')).not_to_be_empty()
        reading = from_db(lambda: Reading.objects.get(owner__username="seoyeon"))
        assert reading.status == ReadingStatus.DONE

        # The reading and its retry were the hour's two: the form says when to ask again,
        # at the reader's own time of day.
        page.get_by_role("link", name="다른 질문하기").click()
        page.get_by_label("질문").fill("하나 더 물어봐도 될까요?")
        page.get_by_role("button", name="카드 뽑기").click()
        expect(page.get_by_role("alert")).to_contain_text(re.compile(r"\d\d:\d\d KST에 다시"))
        expect(page.get_by_label("질문")).to_have_value("하나 더 물어봐도 될까요?")
        problems += axe_problems(page, "home, throttled")

    assert not problems, "\n".join(problems)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_reader_asks_while_the_provider_is_down_and_finishes_it_once_it_is_back(
    emulator, tmp_path
):
    # A provider of this test's own, on a port that outlives it: stopped, then started again.
    provider = Emulator(Knobs(**TEST_KNOBS)).start()
    port, clusters = provider.port, []

    def start_cluster():
        clusters.append(
            WorkerCluster(
                workers=1,
                base_url=provider.base_url,
                extra_env={"Q_TIMEOUT_S": "8", "Q_RETRY_S": "10"},
                log_path=tmp_path / "qcluster.log",
            )
        )
        return clusters[-1]

    problems = []
    try:
        with korean_reader(start_cluster, tmp_path, width=1400, height=900) as page:
            page.goto("/accounts/signup/")
            sign_up(page, "jiho")

            provider.stop()
            page.get_by_label("켈틱 크로스").check()
            page.get_by_label("질문").fill(QUESTION)
            page.get_by_role("button", name="카드 뽑기").click()

            # Nothing could be read: the page says so as a failure and offers to finish it.
            status = page.get_by_role("status")
            expect(status).to_have_class(re.compile(r"\berrors\b"), timeout=60_000)
            expect(page.locator('[data-part="card-1"]')).to_be_empty()
            finish = page.get_by_role("button", name="이 리딩 마저 읽기")
            expect(finish).to_be_visible()
            problems += axe_problems(page, "reading, provider down")

            provider = Emulator(Knobs(**TEST_KNOBS), port=port).start()
            finish.click()
            expect(status).to_have_text("리딩이 완성되었습니다.", timeout=60_000)
            for part in ["card-1", "card-10", "advice"]:
                assert HANGUL.search(page.locator(f'[data-part="{part}"]').inner_text())
    finally:
        for cluster in clusters:
            if cluster.process.poll() is None:
                cluster.stop()
        provider.stop()

    assert not problems, "\n".join(problems)

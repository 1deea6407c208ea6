"""Requests refused before anything parses them: too deep, too large, or carrying NUL bytes.
Each answer is a 4xx with a JSON message, never a 500, anonymous or not."""

import json

import pytest

from operations.request_limits import MAX_JSON_DEPTH, json_depth

pytestmark = pytest.mark.django_db

CARDS = [
    {"card": "the-fool", "reversed": False},
    {"card": "the-magician", "reversed": True},
    {"card": "the-high-priestess", "reversed": False},
]


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_it_refuses_a_thousand_levels_of_json_on_the_anonymous_token_endpoint(api):
    response = api.post("/api/auth/token/", nested(1000), content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels."
    }


def test_it_refuses_deeply_nested_cards_when_creating_a_reading(as_bob):
    body = f'{{"spread": "three_card", "question": "Why?", "cards": {nested(1000)}}}'

    response = as_bob.post("/api/readings/", body, content_type="application/json")

    assert response.status_code == 400
    assert "nests deeper" in response.json()["detail"]


def test_it_accepts_brackets_inside_strings_as_text(as_bob):
    question = "[[[[" * 20 + "{{{{" * 20 + " will it work out?"

    response = as_bob.post(
        "/api/readings/",
        {"spread": "three_card", "question": question, "cards": CARDS},
        format="json",
    )

    assert response.status_code == 202


def test_it_refuses_a_body_larger_than_the_limit_with_413(as_bob, settings):
    settings.MAX_JSON_BODY_BYTES = 1000

    response = as_bob.post(
        "/api/readings/", {"spread": "three_card", "question": "x" * 2000}, format="json"
    )

    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than 1000 bytes."}


@pytest.mark.parametrize(
    "url",
    ["/api/spreads/three%00card/", "/api/readings/?status=done%00", "/api/cards/?page=%00"],
)
def test_it_refuses_nul_bytes_in_paths_and_queries(as_bob, url):
    response = as_bob.get(url)

    assert response.status_code == 400
    assert response.json() == {"detail": "NUL characters are not allowed in URLs."}


@pytest.mark.parametrize("question", ["before\x00after", "before\\u0000after"])
def test_it_refuses_nul_bytes_in_json_bodies(as_bob, question):
    raw = f'{{"spread": "three_card", "question": "{question}"}}'

    response = as_bob.post("/api/readings/", raw, content_type="application/json")

    assert response.status_code == 400
    assert "NUL characters" in response.json()["detail"]


def test_it_keeps_an_escaped_backslash_before_u0000_as_text(as_bob):
    # \\u0000 in JSON is a backslash followed by "u0000", not a NUL.
    raw = json.dumps({"spread": "three_card", "question": "path C:\\u0000", "cards": CARDS})
    assert "\\\\u0000" in raw

    response = as_bob.post("/api/readings/", raw, content_type="application/json")

    assert response.status_code == 202


@pytest.mark.parametrize(
    ("cards", "message"),
    [
        ([None], {"0": ["This field may not be null."]}),
        ([{"card": None}], {"0": {"card": ["This field may not be null."]}}),
        (
            [{"card": "the-fool", "reversed": "yes"}],
            {"0": {"reversed": ["Must be true or false (a JSON boolean)."]}},
        ),
        ("the-fool", ['Expected a list of items but got type "str".']),
    ],
)
def test_it_refuses_nulls_and_wrong_types_in_the_cards_per_field(as_bob, cards, message):
    response = as_bob.post(
        "/api/readings/",
        {"spread": "three_card", "question": "Why?", "cards": cards},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["cards"] == message


def test_it_answers_json_404_for_an_api_url_that_does_not_resolve(as_bob):
    response = as_bob.get("/api/readings/not-a-uuid/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_it_counts_nesting_without_recursing():
    assert json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(b'"[[[[" ') == 0
    assert json_depth(nested(100_000).encode()) == 100_000


def test_a_chunked_body_past_djangos_own_bound_gets_the_json_413(settings):
    # Chunked: no Content-Length to refuse it by, so Django finds out while reading it.
    from io import BytesIO

    from django.core.handlers.asgi import ASGIRequest

    from operations.request_limits import RequestLimitsMiddleware

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/readings/",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
    }
    request = ASGIRequest(scope, BytesIO(b'{"question": "' + b"x" * 5000 + b'"}'))

    response = RequestLimitsMiddleware(lambda _: None)(request)

    assert response.status_code == 413
    assert json.loads(response.content)["detail"].startswith("The request body is larger")

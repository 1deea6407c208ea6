"""The OpenAPI schema and its docs page, served without any CDN."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(api):
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_it_serves_the_openapi_schema_to_anyone(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Tarot reading platform API"
    assert {
        "/api/spreads/",
        "/api/spreads/{slug}/",
        "/api/cards/",
        "/api/readings/",
        "/api/readings/{id}/",
        "/api/auth/token/",
    } <= set(schema["paths"])


def test_it_generates_the_schema_without_warnings(tmp_path):
    # --fail-on-warn raises if drf-spectacular had to guess at any view or field.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", tmp_path / "schema.yml")


def test_it_documents_the_create_request_and_its_202_answer(schema):
    create = schema["paths"]["/api/readings/"]["post"]
    request = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    answer = create["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
    components = schema["components"]["schemas"]

    assert set(components[request.split("/")[-1]]["properties"]) == {
        "spread",
        "question",
        "cards",
        "mode",
        "language",
    }
    assert set(components[answer.split("/")[-1]]["properties"]) == {"id", "status", "url"}
    assert "400" in create["responses"]


def test_it_documents_the_reading_detail_down_to_its_tasks(schema):
    components = schema["components"]["schemas"]

    detail = components["ReadingDetail"]["properties"]
    assert {"progress", "results", "metrics", "cost_usd"} <= set(detail)
    assert detail["cost_usd"]["type"] == "string"
    assert set(components["ReadingTask"]["properties"]) == {
        "task_type",
        "phase",
        "batch_index",
        "positions",
        "status",
        "model_used",
        "attempts",
        "started_at",
        "finished_at",
    }


def test_it_documents_the_status_filter(schema):
    parameters = schema["paths"]["/api/readings/"]["get"]["parameters"]

    status = next(p for p in parameters if p["name"] == "status")
    assert status["schema"]["enum"] == ["queued", "running", "waiting_for_budget", "done", "failed"]


def test_it_serves_the_docs_page_from_local_static_files(api):
    response = api.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "/api/schema/" in html
    # Nothing is fetched from another site (the page carries a random CSRF token, which may
    # well contain the letters "cdn": look at the addresses, not the text).
    assert re.findall(r"""(?:src|href)=["'](?:https?:)?//""", html) == []


def test_it_ships_the_docs_pages_scripts_and_styles():
    for name in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert finders.find(f"drf_spectacular_sidecar/swagger-ui-dist/{name}"), name


def test_the_docs_page_declares_its_language(api):
    html = api.get("/api/docs/").content.decode()

    assert '<html lang="en">' in html  # the site's language (LANGUAGES: en, ko)


def test_the_token_request_offers_a_json_body_the_docs_page_can_send(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    body = schema["paths"]["/api/auth/token/"]["post"]["requestBody"]["content"]

    assert next(iter(body)) == "application/json"  # Swagger UI shows the first type
    [example] = body["application/json"]["examples"].values()
    assert set(example["value"]) == {"username", "password"}


def test_the_token_request_takes_json(api, bob):
    response = api.post(
        "/api/auth/token/", {"username": "bob", "password": "bob-pass-123"}, format="json"
    )

    assert response.status_code == 200 and response.json()["token"]


def test_the_site_has_a_favicon(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301 and response["Location"].endswith("/favicon.svg")
    assert finders.find("favicon.svg")

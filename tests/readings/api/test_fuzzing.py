"""The live OpenAPI schema, fuzzed by schemathesis: whatever it sends, the API never answers
with a server error, and every answer (its status, headers and body) is the one the schema
documents. The example budget is fixed and the generation derandomized, so a run is
repeatable in length and in what it sends."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXAMPLES_PER_OPERATION = 25

# Loaded from the running application's own schema endpoint, as a client would see it.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture
def bob_token(db, bob):
    # As Django's test client does: the WSGI handler would otherwise close the test's
    # connection (and roll back its transaction) at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield Token.objects.create(user=bob).key
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_it_answers_every_generated_request_as_documented_and_never_with_a_500(case, bob_token):
    case.call_and_validate(
        headers={"Authorization": f"Token {bob_token}"},
        # A request can match the schema and still be refused with a 400: the schema cannot
        # say which spread slugs exist or which password is right. Every other check runs.
        excluded_checks=[positive_data_acceptance],
    )

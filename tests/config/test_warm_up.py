"""A new web process does its first request's one-off work before the first request comes."""

import contextvars

import pytest
from django.urls import clear_url_caches, get_resolver

from config.warm_up import warm_up
from readings import prompt_shapes
from readings.models import Language
from spreads.models import Spread


@pytest.mark.django_db
def test_every_active_spread_is_measured_in_each_language_before_the_first_reading():
    prompt_shapes.forget()

    warm_up().join(timeout=60)

    # The seeded spreads (committed, so the warm-up's own connection reads them): one shape
    # each per language, the one its first reading's estimate looks up.
    active = Spread.objects.filter(is_active=True).count()
    assert active >= 3
    assert len(prompt_shapes._shapes) == active * len(Language.values)


@pytest.mark.django_db
def test_url_lookups_are_built_for_every_language_the_site_speaks(settings):
    clear_url_caches()

    warm_up().join(timeout=60)

    assert set(get_resolver()._reverse_dict) >= {code for code, _ in settings.LANGUAGES}


@pytest.mark.django_db
def test_the_warm_up_leaves_no_request_state_behind_in_the_process_context():
    # Each request's context starts as a copy of the server's, and asgiref walks every
    # variable in it at each hop between the event loop and a thread (a dozen a request):
    # the URL resolvers' per-instance locals, set while building, must not ride along.
    clear_url_caches()  # resolvers built afresh, as in a new process
    before = len(contextvars.copy_context())

    warm_up().join(timeout=60)

    assert len(contextvars.copy_context()) == before

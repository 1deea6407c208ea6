"""Shared test setup: the suite runs on real Postgres, with named people.

alice is staff, bob a signed-up user, charlie another user who must never see bob's data.
"""

import pytest
from django.conf import settings


def pytest_sessionstart(session):
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit(
            "The suite runs on Postgres: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/tarot "
            "(make test does).",
            returncode=2,
        )
    import psycopg

    try:
        psycopg.connect(
            host=db["HOST"] or "127.0.0.1",
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.OperationalError as exc:
        pytest.exit(
            f"Postgres is not answering at {db['HOST']}:{db['PORT']} ({exc}). Start it with: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            returncode=2,
        )


@pytest.fixture(scope="session")
def close_engine_connections(django_db_setup):
    """The engine reaches the database from its own thread; close that connection before
    pytest-django drops the test database."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    from allocation.client_pool import runtime
    from allocation.limiter.gate import close_limiter_connections

    runtime.run(sync_to_async(connections.close_all)())
    close_limiter_connections()
    runtime.shutdown()


@pytest.fixture(autouse=True)
def fresh_limits():
    """Each test starts with the limits, staff's configuration and cost history in its own
    database, not a copy a process kept from the test before (a rolled-back test, or one that
    used update(), sent no signal)."""
    from allocation import staff_config
    from allocation.limiter.backends import forget_limits
    from readings import prompt_shapes
    from readings.estimates import History

    forget_limits()
    staff_config.forget_all()
    History.forget()
    prompt_shapes.forget()


@pytest.fixture(autouse=True)
def quick_password_hashing(settings):
    """Passwords hashed in a blink: PBKDF2's million rounds cost 0.4 s a user, and most tests
    make two or three. Servers a test starts in a process of their own keep the real hashers
    (and their users sign up through them)."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(
        username="alice", password="alice-pass-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-pass-123")


@pytest.fixture
def charlie(django_user_model):
    return django_user_model.objects.create_user(username="charlie", password="charlie-pass-123")


@pytest.fixture
def staff_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def budget_for():
    """budget_for(user=..., spread=..., limit=...): a switched-on budget (platform-wide when
    neither user nor spread is given). A limit is stored to four decimal places: one finer is
    rounded up, so a budget made with room for an amount has it."""
    from decimal import ROUND_UP, Decimal

    from budgets.models import Budget, BudgetPeriod, BudgetScope

    def make(*, user=None, spread=None, limit, period=BudgetPeriod.DAY, thresholds="80, 95"):
        scope = BudgetScope.USER if user else BudgetScope.SPREAD if spread else BudgetScope.PLATFORM
        budget = Budget.objects.create(
            scope=scope,
            user=user,
            spread=spread,
            period=period,
            limit_usd=Decimal(limit).quantize(Decimal("0.0001"), rounding=ROUND_UP),
            alert_thresholds=thresholds,
        )
        budget.refresh_from_db()  # the limit as stored, to four decimal places
        return budget

    return make


# --- The emulator: Anthropic's Messages API on an ephemeral loopback port ------------------
# Fast enough for tests (5 ms to the first token), slow enough that parallel calls overlap.
TEST_KNOBS = dict(ttft_ms=40, ms_per_token=0.1, seed=7)


@pytest.fixture(scope="session")
def emulator_server():
    from emulator import Emulator, Knobs

    server = Emulator(Knobs(**TEST_KNOBS)).start()
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_server, settings, close_engine_connections):
    """A running emulator with default knobs and zeroed stats; the platform points at it."""
    from emulator import Knobs

    defaults = Knobs(**TEST_KNOBS)
    emulator_server.configure(**{name: getattr(defaults, name) for name in defaults.as_dict()})
    emulator_server.reset()
    settings.ANTHROPIC_BASE_URL = emulator_server.base_url
    settings.ANTHROPIC_API_KEY = ""
    return emulator_server

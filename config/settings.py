"""Settings for the tarot platform, read from the environment through config/env.py, which
declares every variable (docs/configuration.md lists them).

Defaults run locally with no configuration: an SQLite file, the bundled Messages API
emulator. DEBUG is off unless DEBUG=1 is set. Production sets DATABASE_URL, SECRET_KEY,
ALLOWED_HOSTS, ANTHROPIC_API_KEY and HTTPS=1 (README, "Production"), after which
`manage.py check --deploy` is clean.
"""

import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from budgets.rates import rate_problem
from config import env

BASE_DIR = Path(__file__).resolve().parent.parent


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated on first run and kept in a
    git-ignored file so sessions survive restarts."""
    if key := env.get("SECRET_KEY"):
        return key
    key_file = BASE_DIR / ".secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
# Off unless asked for: the debug page shows settings and code to anyone who hits an error.
DEBUG = env.get("DEBUG")
ALLOWED_HOSTS = env.get("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.get("CSRF_TRUSTED_ORIGINS")
TRUSTED_PROXIES = env.get("TRUSTED_PROXIES")

# Served over HTTPS (behind a proxy that sets X-Forwarded-Proto, or not): HTTPS=1 turns on
# the redirect, HSTS and secure cookies at once; each can still be set on its own.
# (config/env.py declares these four with HTTPS as their default.)
HTTPS = env.get("HTTPS")
SECURE_SSL_REDIRECT = env.get("SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = env.get("SECURE_HSTS_SECONDS")
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.get("SECURE_HSTS_INCLUDE_SUBDOMAINS")
# Preloading is hard to undo (browsers ship the list), so it is asked for separately.
SECURE_HSTS_PRELOAD = env.get("SECURE_HSTS_PRELOAD")
SESSION_COOKIE_SECURE = env.get("SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = env.get("CSRF_COOKIE_SECURE")
if env.get("BEHIND_HTTPS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Error pages and e-mails mask passwords inside URLs (DATABASE_URL, redis://) too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "operations.error_reports.CredentialMaskingFilter"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "spreads",
    "allocation",
    "readings",
    "budgets",
    "worker",
    "reports",
    "operations",
    "accounts",
    # Failed sign-ins per account and per address, on every login form (accounts/lockouts.py).
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's, the API docs') from the web server itself, with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything parses the request: size, depth and NUL bytes (operations/request_limits).
    "operations.request_limits.RequestLimitsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The page's and the API's messages in the browser's language (Accept-Language).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A signed-in reader's pages show times in their own time zone (accounts/time_zones.py).
    "accounts.time_zones.TimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out sign-in with accounts/lockouts.py.
    "accounts.lockouts.LockoutMiddleware",
]
# Axes looks for its middleware by name; accounts.lockouts.LockoutMiddleware is that middleware,
# run synchronously like the rest of the stack.
SILENCED_SYSTEM_CHECKS = ["axes.W002"]

# Every sign-in (the admin's, the reading page's, the token endpoint's) goes through
# django-axes first: after LOGIN_FAILURE_LIMIT wrong passwords for one account, or from one
# address (the connection's, or a trusted proxy's word for it), the next attempt is refused
# for LOGIN_LOCKOUT_MINUTES (axes counts the refused attempt in its limit, hence the + 1).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.get("LOGIN_FAILURE_LIMIT") + 1
AXES_COOLOFF_TIME = timedelta(minutes=env.get("LOGIN_LOCKOUT_MINUTES"))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.lockouts.locked_out"
AXES_VERBOSE = False

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default so `make run` needs nothing installed; `make test` and production
# point DATABASE_URL at Postgres.
if not (_database_url := env.get("DATABASE_URL")):
    raise ImproperlyConfigured("DATABASE_URL is set but empty: unset it for SQLite.")
try:
    DATABASES = {"default": dj_database_url.parse(_database_url)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
# Postgres connections come from a pool per process (psycopg_pool, through Django), at most
# DATABASE_POOL_MAX of them: the web server, each worker process and each bench process can
# never hold more, however many requests or readings they serve at once. A request or
# reading step that finds them all busy waits up to DATABASE_POOL_TIMEOUT_S for one.
# Postgres allows 100 connections for everything (README, "Production" says how to add up).
DATABASE_POOL_MAX = env.get("DATABASE_POOL_MAX")
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Which part of the platform holds a connection, in pg_stat_activity: `serve` names its
    # web server and worker (tarot-web, tarot-worker).
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = env.get(
        "DB_APPLICATION_NAME"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_MAX:
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": 0,
        "max_size": DATABASE_POOL_MAX,
        "timeout": env.get("DATABASE_POOL_TIMEOUT_S"),
        # A connection idle this long is closed: a quiet process holds none.
        "max_idle": 60,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them; Django must not
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 60

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# /metrics answers staff, or a scraper sending "Authorization: Bearer <METRICS_TOKEN>".
METRICS_TOKEN = env.get("METRICS_TOKEN")

# The API's JSON bodies are small (a question of at most 1000 characters and at most 78 cards);
# anything larger is refused with a 413 before it is parsed.
MAX_JSON_BODY_BYTES = env.get("MAX_JSON_BODY_BYTES")

LANGUAGE_CODE = "en-us"
# The languages of the page, the API's messages and readings (readings.models.Language).
LANGUAGES = [("en", "English"), ("ko", "한국어")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# `collectstatic` fills STATIC_ROOT in production (compressed, with hashed names); without it
# (`make run`, tests) WhiteNoise finds the files where the apps keep them.
WHITENOISE_USE_FINDERS = True
# The project's own files (the favicon); each app keeps its own under <app>/static/.
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGIN_URL = "/admin/login/"  # staff pages; the reading page signs in at /accounts/login/
# Where a sign-in without `next` lands (Django's default, /accounts/profile/, does not exist).
LOGIN_REDIRECT_URL = "pages:home"

# uvicorn processes `manage.py serve` starts, each with its own DATABASE_POOL_MAX.
WEB_PROCESSES = env.get("WEB_PROCESSES")

# The LLM layer (allocation/) keys allocations and its call log by task-type strings; these
# are the reading's tasks (allocation/task_types.py).
LLM_TASK_TYPES = "spreads.models.TaskType"

# Open reading event streams (GET /api/readings/<id>/events/) per user and web process.
READING_STREAMS_PER_USER = env.get("READING_STREAMS_PER_USER")
# Seconds before the server ends an event stream (the client resumes with Last-Event-ID).
READING_STREAM_MAX_S = env.get("READING_STREAM_MAX_S")

_log_level = env.get("LOG_LEVEL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "allocation": {"handlers": ["console"], "level": _log_level},
        "readings": {"handlers": ["console"], "level": _log_level},
        "worker": {"handlers": ["console"], "level": _log_level},
    },
}

# --- The LLM provider -------------------------------------------------------------
# A real key talks to Anthropic; without one, the platform talks to the bundled emulator
# (`make run` starts it and sets ANTHROPIC_BASE_URL).
ANTHROPIC_API_KEY = env.get("ANTHROPIC_API_KEY")
ANTHROPIC_BASE_URL = env.get("ANTHROPIC_BASE_URL")
# Seconds before an LLM call is abandoned as a timeout (then retried or handed to a fallback).
LLM_TIMEOUT_S = env.get("LLM_TIMEOUT_S")
# The provider's limits (ModelLimit rows), enforced across every worker process through
# Postgres, with an adaptive concurrency controller and a circuit breaker per model.
LLM_GLOBAL_LIMITER = env.get("LLM_GLOBAL_LIMITER")
# Prompt caching: cache breakpoints on the shared parts of a reading's prompts (TTLs per spread
# and allocation in the admin). Off sends the very same prompts without them.
LLM_PROMPT_CACHING = env.get("LLM_PROMPT_CACHING")
# Overrides for allocation.limiter.params.LimiterParams; the defaults and their reasons live
# there.
LLM_LIMITER: dict = {}
if (_lease_ttl_s := env.get("LLM_LEASE_TTL_S")) is not None:
    LLM_LIMITER["lease_ttl_s"] = float(_lease_ttl_s)
# A redis:// URL moves the limiter's shared state (buckets, controller, breaker, leases) from
# Postgres to Redis (allocation/limiter/backends/redis.py); empty keeps it in Postgres.
LLM_LIMITER_REDIS_URL = env.get("LLM_LIMITER_REDIS_URL")

# --- The worker (django-q2) -------------------------------------------------------
# The ORM broker keeps the queue in the same database, so readings survive a restart
# without another service. Why each number is what it is: README, "The worker".
# Readings one worker process runs at once, side by side on its event loop
# (worker/concurrent_readings.py). A reading mostly waits on the provider, so one process
# can keep a whole tier's rate limit busy; each reading in flight costs about 1 MB. The
# spread's max_concurrent_calls still bounds each reading, and the shared limiter all of them.
WORKER_CONCURRENCY = env.get("WORKER_CONCURRENCY")  # at least 1
# How long a job waits for a full worker process to have room before it goes back to the
# queue (worker/concurrent_readings.py); well under Q_TIMEOUT_S.
WORKER_SLOT_WAIT_S = env.get("WORKER_SLOT_WAIT_S")
Q_CLUSTER = {
    "name": "tarot",
    "orm": "default",
    # One process runs WORKER_CONCURRENCY readings at once; a second process adds a core.
    "workers": env.get("Q_WORKERS"),
    "timeout": env.get("Q_TIMEOUT_S"),
    "retry": env.get("Q_RETRY_S"),
    "max_attempts": 5,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.2,
    # A worker process runs many readings at once (WORKER_CONCURRENCY): recycling it after
    # django-q2's default of 500 jobs would cut them all off mid-reading.
    "recycle": 1_000_000,
    # A reading is its own record (status, error, metrics): a second row per successful job
    # cost three statements a reading (save, count, prune). Failed jobs are still kept.
    "save_limit": -1,
    "label": "Worker",
    # Its own logger (django-q) follows LOG_LEVEL too: at INFO it logs every job it enqueues
    # or runs, a line per reading in the web server's and the worker's logs.
    "log_level": _log_level,
    # The database queue, plus who holds each job: recovery hands a dead worker's job back in
    # seconds instead of after the retry (worker/broker.py, worker/recovery.py).
    "broker_class": "worker.broker.ClaimingORM",
}
# The scale-out option: a Redis broker instead of the database (readings' state stays in the
# database either way, so a redelivered job still resumes).
if _q_redis_url := env.get("Q_REDIS_URL"):
    del Q_CLUSTER["orm"]
    Q_CLUSTER["redis"] = _q_redis_url
    Q_CLUSTER["broker_class"] = "worker.broker.ClaimingRedis"

# --- Spend control (budgets/) -----------------------------------------------------
# A reservation whose reading never ends (its job given up, its row deleted) is released
# after this long: a day is far beyond any reading's retries (Q_RETRY_S x max_attempts).
BUDGET_RESERVATION_TTL_S = env.get("BUDGET_RESERVATION_TTL_S")
# A reading is admitted at its expected cost plus this margin; each phase then claims its own
# worst case just before it starts, and waits (asking again this often) when it does not fit.
BUDGET_ADMISSION_MARGIN_PERCENT = env.get("BUDGET_ADMISSION_MARGIN_PERCENT")
BUDGET_WAIT_POLL_S = env.get("BUDGET_WAIT_POLL_S")
# Readings in the worker's queue per user at once; a user's further readings wait in the
# database and join the back of the queue as earlier ones end (round-robin between users).
READINGS_QUEUED_PER_USER = env.get("READINGS_QUEUED_PER_USER")
# Every prompt render is bounded (spreads/prompt_sandbox.py): staff write the templates.
PROMPT_RENDER_MAX_LOOPS = env.get("PROMPT_RENDER_MAX_LOOPS")
PROMPT_RENDER_MAX_CHARS = env.get("PROMPT_RENDER_MAX_CHARS")
PROMPT_RENDER_MAX_MS = env.get("PROMPT_RENDER_MAX_MS")  # at least 1
# Budget alerts are emailed to staff; by default they are printed on the console.
EMAIL_BACKEND = env.get("EMAIL_BACKEND")
EMAIL_HOST = env.get("EMAIL_HOST")
EMAIL_PORT = env.get("EMAIL_PORT")
DEFAULT_FROM_EMAIL = env.get("DEFAULT_FROM_EMAIL")
# Throttle buckets are shared by every web process: a table in the database unless
# THROTTLE_REDIS_URL points at Redis (budgets/rate_buckets.py).
THROTTLE_REDIS_URL = env.get("THROTTLE_REDIS_URL")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

_reading_create_rate = env.get("READING_CREATE_RATE")
_token_rate = env.get("TOKEN_RATE")
_estimate_rate = env.get("ESTIMATE_RATE")
for _name, _rate in (
    ("READING_CREATE_RATE", _reading_create_rate),
    ("TOKEN_RATE", _token_rate),
    ("ESTIMATE_RATE", _estimate_rate),
):
    if _rate and (_problem := rate_problem(_rate)):
        raise ImproperlyConfigured(f"{_name}: {_problem}")

# --- REST API ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    # Per user on reading creation (staff override per user or group in the admin) and on
    # estimates, per client address on the token endpoint; see budgets/throttles.py.
    "DEFAULT_THROTTLE_RATES": {
        "reading_create": _reading_create_rate,
        "token": _token_rate,
        "estimate": _estimate_rate,
    },
    # The client address is the connection's: uvicorn replaces it with X-Forwarded-For's
    # only when the connection comes from one of TRUSTED_PROXIES (`manage.py serve`), so a
    # client cannot forge the address the token throttle counts by.
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tarot reading platform API",
    "DESCRIPTION": "Create readings, follow their progress, and read their results and cost.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Without deep links Swagger UI's operation headers hold no link inside their button, which
    # screen readers cannot reach (axe: nested-interactive).
    "SWAGGER_UI_SETTINGS": {"deepLinking": False, "persistAuthorization": True},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "readings.api.schema.document_error_responses",
    ],
}

"""The one place that reads the process environment.

Every variable the platform reads is declared below, once: its name, type, default and what
it does. `get(name)` reads a declared variable; a malformed value stops start-up with an
ImproperlyConfigured naming the variable, instead of surfacing later as a confusing error
deep inside the platform. Reading a name that is not declared is a LookupError, so nothing
can be read without being documented.

The allocator's per-spread overrides have names only known at call time
(CELTIC_CROSS_CARD_MODEL, ...): they are declared as PATTERNS and read with the override_*
readers, which return None when the variable is unset and raise `error` (OverrideError unless
the caller passes its own class) when it is malformed.

`python -m config.env` prints the table of every declaration and writes it into
docs/configuration.md (`--check` only says whether the file is up to date). Secrets are
marked secret: neither the table nor an error message ever shows their value.
"""

import functools
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DOCS_PATH = BASE_DIR / "docs" / "configuration.md"

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Var:
    """One environment variable the platform reads."""

    name: str
    type: str  # str, url, bool, int or list (comma-separated)
    # The value when the variable is unset; a callable is called at read time (a default
    # that follows another variable, e.g. HTTPS).
    default: object
    description: str
    secret: bool = False  # never shown: not in the docs, not in error messages
    shown: str = ""  # how the docs show the default, when the value itself would mislead
    minimum: int | None = None  # for int: smaller values stop start-up


def _follows(name: str) -> Callable[[], object]:
    """A default that is another declared variable's value."""
    return lambda: get(name)


def _hsts_seconds() -> int:
    return 31_536_000 if get("HTTPS") else 0


SECTIONS: dict[str, tuple[Var, ...]] = {
    "Security": (
        Var("SECRET_KEY", "str", "",
            "Django's signing key; unset: generated into `.secret_key` on first run (set it in "
            "production)", secret=True),
        Var("DEBUG", "bool", False, "`1` shows Django's debug pages (never in production)"),
        Var("ALLOWED_HOSTS", "list", ("127.0.0.1", "localhost", "[::1]"),
            "host names the site answers to"),
        Var("CSRF_TRUSTED_ORIGINS", "list", (),
            "origins trusted for unsafe requests, e.g. `https://tarot.example.com`"),
        Var("HTTPS", "bool", False,
            "`1`: redirect to HTTPS, HSTS for a year (subdomains included), secure cookies"),
        Var("SECURE_SSL_REDIRECT", "bool", _follows("HTTPS"), "redirect HTTP to HTTPS",
            shown="`HTTPS`"),
        Var("SECURE_HSTS_SECONDS", "int", _hsts_seconds, "HSTS max-age in seconds",
            shown="`31536000` with `HTTPS=1`, else `0`"),
        Var("SECURE_HSTS_INCLUDE_SUBDOMAINS", "bool", _follows("HTTPS"),
            "HSTS covers subdomains too", shown="`HTTPS`"),
        Var("SECURE_HSTS_PRELOAD", "bool", False,
            "`1` asks browsers to preload HSTS (hard to undo)"),
        Var("SESSION_COOKIE_SECURE", "bool", _follows("HTTPS"),
            "the session cookie is sent over HTTPS only", shown="`HTTPS`"),
        Var("CSRF_COOKIE_SECURE", "bool", _follows("HTTPS"),
            "the CSRF cookie is sent over HTTPS only", shown="`HTTPS`"),
        Var("BEHIND_HTTPS_PROXY", "bool", False,
            "`1` trusts the proxy's `X-Forwarded-Proto: https`"),
        Var("METRICS_TOKEN", "str", "",
            "`/metrics` also answers `Authorization: Bearer <token>` (else staff only)",
            secret=True),
        Var("MAX_JSON_BODY_BYTES", "int", 64 * 1024,
            "larger API bodies are refused with a 413 before parsing"),
    ),
    "Web server and database": (
        Var("WEB_PROCESSES", "int", 1,
            "uvicorn processes `manage.py serve` starts (each has its own database pool)",
            minimum=1),
        Var("WORKER_NICE", "int", 5,
            "how far below the web server's the worker's CPU priority is when `manage.py serve` "
            "runs both: on a busy machine, a burst of readings is acknowledged before the "
            "worker starts them (0: the same priority)",
            minimum=0),
        Var("DATABASE_URL", "url", f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
            "e.g. `postgres://user:pass@host:5432/tarot`; unset: the SQLite file `db.sqlite3` "
            "in the project directory", secret=True),
        Var("DATABASE_POOL_MAX", "int", 6,
            "Postgres connections per process (a pool); `0` turns pooling off"),
        Var("DATABASE_POOL_TIMEOUT_S", "int", 10,
            "seconds a request or reading step waits for a pooled connection"),
        Var("DB_APPLICATION_NAME", "str", "tarot",
            "`application_name` in `pg_stat_activity` (`serve` sets tarot-web, tarot-worker)"),
        Var("READING_STREAMS_PER_USER", "int", 4,
            "open reading event streams per user and web process"),
        Var("READING_STREAM_MAX_S", "int", 300,
            "seconds before the server ends an event stream (the client resumes)"),
        Var("LOG_LEVEL", "str", "INFO",
            "level of the platform's loggers (allocation, readings, worker) and django-q2's"),
    ),
    "The LLM provider": (
        Var("ANTHROPIC_API_KEY", "str", "",
            "a real key sends calls to Anthropic; empty: the bundled emulator", secret=True),
        Var("ANTHROPIC_BASE_URL", "url", "",
            "another endpoint (`make run` points it at the emulator without a key)",
            shown="empty: Anthropic's"),
        Var("LLM_TIMEOUT_S", "int", 60,
            "a call slower than this is a timeout (retried, then a fallback)"),
        Var("LLM_GLOBAL_LIMITER", "bool", True,
            "enforce the provider's limits (ModelLimit rows) across every process"),
        Var("PROMPT_RENDER_MAX_LOOPS", "int", 20_000,
            "loop iterations one prompt render may run (nested loops' counted)", minimum=1),
        Var("PROMPT_RENDER_MAX_CHARS", "int", 400_000,
            "characters one prompt render may produce (loop bodies' and `add`'s counted)",
            minimum=1),
        Var("PROMPT_RENDER_MAX_MS", "int", 2000,
            "milliseconds one prompt render may take", minimum=1),
        Var("LLM_PROMPT_CACHING", "bool", True,
            "cache breakpoints on the shared parts of a reading's prompts"),
        Var("LLM_LEASE_TTL_S", "int", None,
            "seconds after which a killed worker's calls stop counting against the limits",
            shown="`15` (`allocation/limiter/params.py`)"),
        Var("LLM_LIMITER_REDIS_URL", "url", "",
            "`redis://...` keeps the limiter's shared state in Redis; empty: Postgres",
            secret=True),
    ),
    "The worker": (
        Var("WORKER_CONCURRENCY", "int", 40, "readings one worker process runs at once",
            minimum=1),
        Var("WORKER_SLOT_WAIT_S", "int", 60,
            "seconds a job waits for room in a full worker before going back to the queue"),
        Var("Q_WORKERS", "int", 1, "django-q2 worker processes"),
        Var("Q_TIMEOUT_S", "int", 300, "seconds a job may run before django-q2 stops it"),
        Var("Q_RETRY_S", "int", 360,
            "seconds before an unacknowledged job is handed out again (keep above Q_TIMEOUT_S)"),
        Var("Q_REDIS_URL", "url", "",
            "`redis://...` moves the job queue to Redis; empty: the database", secret=True),
    ),
    "Spend control, throttles and e-mail": (
        Var("BUDGET_ADMISSION_MARGIN_PERCENT", "int", 20,
            "a budget admits a reading at its expected cost plus this margin", minimum=0),
        Var("BUDGET_WAIT_POLL_S", "int", 2,
            "how often a reading waiting for budget asks again", minimum=1),
        Var("BUDGET_RESERVATION_TTL_S", "int", 86_400,
            "a budget hold whose reading never ends is released after this"),
        Var("READINGS_QUEUED_PER_USER", "int", 2,
            "a user's readings in the worker's queue at once (fair queuing)", minimum=1),
        Var("READING_CREATE_RATE", "str", "10/min",
            "readings one user may create (staff override per user or group)"),
        Var("TOKEN_RATE", "str", "10/min", "token requests per client address"),
        Var("ESTIMATE_RATE", "str", "30/min", "cost estimates one user may ask for"),
        Var("LOGIN_FAILURE_LIMIT", "int", 10,
            "wrong passwords allowed for one account, or from one address; the next sign-in "
            "is refused",
            minimum=1),
        Var("LOGIN_LOCKOUT_MINUTES", "int", 15,
            "how long a locked account or address waits (each failure meanwhile restarts it)",
            minimum=1),
        Var("TRUSTED_PROXIES", "list", (),
            "addresses of the proxies in front of the web server: only their "
            "`X-Forwarded-For` and `X-Forwarded-Proto` are believed (throttles, logs); empty: "
            "nobody's"),
        Var("THROTTLE_REDIS_URL", "url", "",
            "where throttle buckets are shared; empty: a database table", secret=True),
        Var("EMAIL_BACKEND", "str", "django.core.mail.backends.console.EmailBackend",
            "how budget alerts reach staff"),
        Var("EMAIL_HOST", "str", "localhost", "SMTP host"),
        Var("EMAIL_PORT", "int", 25, "SMTP port"),
        Var("DEFAULT_FROM_EMAIL", "str", "tarot@localhost", "sender of budget alerts"),
    ),
    "Development and benchmarks": (
        Var("EMULATOR_PORT", "int", 8765,
            "port of the emulator `manage.py serve` starts when there is no API key"),
        Var("BENCH_LOG_LEVEL", "str", "WARNING", "LOG_LEVEL of the server a benchmark starts"),
        Var("BENCH_STATEMENTS_DIR", "str", "",
            "set by the service bench: the platform's processes count their database "
            "statements into files there"),
        Var("BENCH_KEEP_LOG", "str", "",
            "non-empty: a benchmark keeps its server's log and prints its path"),
    ),
}  # fmt: skip

VARIABLES: dict[str, Var] = {var.name: var for group in SECTIONS.values() for var in group}


# --- Per-spread allocation overrides ----------------------------------------------
# <SPREAD> is the spread's slug upper-cased (celtic_cross -> CELTIC_CROSS); <TASK> the task
# type's short word (allocation.models.TaskType.kind, upper-cased).
TASKS = ("CARD", "OVERALL", "RELATIONSHIPS", "ADVICE")


@dataclass(frozen=True)
class Pattern:
    """A family of variables whose names are only known at call time."""

    name: str  # e.g. "<SPREAD>_<TASK>_MODEL"
    type: str  # str, int, float, decimal or models (comma-separated model ids)
    shown: str  # the default, as the docs show it
    description: str

    @property
    def regex(self) -> re.Pattern:
        spread, task = r"[A-Z][A-Z0-9_]*", "(?:" + "|".join(TASKS) + ")"
        return re.compile(self.name.replace("<SPREAD>", spread).replace("<TASK>", task))


PATTERNS: tuple[Pattern, ...] = (
    Pattern("<SPREAD>_<TASK>_MODEL", "str", "the allocation's",
            "the model that does the task for the spread (it must have a price)"),
    Pattern("<SPREAD>_<TASK>_MAX_TOKENS", "int", "the allocation's",
            "max_tokens, at least 1 (still capped by the spread's max_tokens)"),
    Pattern("<SPREAD>_<TASK>_TEMPERATURE", "float", "the allocation's",
            "temperature, between 0 and 1"),
    Pattern("<SPREAD>_<TASK>_FALLBACK_MODELS", "models", "the allocation's",
            "ordered fallback models, comma-separated; set but empty: no fallbacks"),
    Pattern("<SPREAD>_<TASK>_FALLBACK_COST_CEILING", "decimal", "the allocation's",
            "a fallback may cost at most this multiple of the model's cost (above 0)"),
    Pattern("<SPREAD>_MAX_CONCURRENT_CALLS", "int", "the spread's",
            "LLM calls one reading of the spread makes at once, at least 1"),
)  # fmt: skip


# --- Reading declared variables ----------------------------------------------------
def get(name: str):
    """The declared variable's value, typed; its default when unset (or blank, for an int)."""
    var = VARIABLES.get(name)
    if var is None:
        raise LookupError(f"{name} is not declared in config/env.py; declare it there first.")
    raw = os.environ.get(name)
    if raw is None or (var.type == "int" and raw.strip() == ""):
        default = var.default() if callable(var.default) else var.default
        return list(default) if isinstance(default, tuple) else default
    return _PARSERS[var.type](var, raw)


def _shown(var: Var, raw: str) -> str:
    """NAME='value', or only NAME for a secret."""
    return var.name if var.secret else f"{var.name}={raw!r}"


def _parse_bool(var: Var, raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{_shown(var, raw)} is not a boolean; use 1/0, true/false, yes/no.")


def _parse_int(var: Var, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{_shown(var, raw)} is not a whole number.") from None
    if var.minimum is not None and value < var.minimum:
        raise ImproperlyConfigured(f"{var.name} must be at least {var.minimum}.")
    return value


def _parse_list(var: Var, raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


_PARSERS: dict[str, Callable[[Var, str], object]] = {
    "str": lambda var, raw: raw,
    "url": lambda var, raw: raw,
    "bool": _parse_bool,
    "int": _parse_int,
    "list": _parse_list,
}


# --- Reading per-spread overrides ----------------------------------------------------
class OverrideError(ValueError):
    """A malformed override, when the caller passes no exception class of its own."""


# Every allocation resolves five names per task: matching them against the patterns' regexes
# each time was a fifth of a reading's estimate. The names are few (spreads x tasks).
@functools.lru_cache(maxsize=4096)
def pattern_for(name: str) -> Pattern | None:
    """The declared pattern a variable name belongs to, if any."""
    return next((p for p in PATTERNS if p.regex.fullmatch(name)), None)


def _override_raw(name: str, type_: str) -> str | None:
    pattern = pattern_for(name)
    if pattern is None:
        raise LookupError(f"{name} matches no pattern declared in config/env.py.")
    if pattern.type != type_:
        raise LookupError(f"{name} is declared as {pattern.type} ({pattern.name}), not {type_}.")
    return os.environ.get(name)


def override_str(name: str) -> str | None:
    """The value, stripped; None when unset or blank."""
    raw = _override_raw(name, "str")
    if raw is None or not raw.strip():
        return None
    return raw.strip()


def override_int(name: str, *, error: type[Exception] = OverrideError) -> int | None:
    """A whole number of at least 1; None when unset or empty."""
    raw = _override_raw(name, "int")
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise error(f"{name}={raw!r} is not a whole number.") from None
    if value < 1:
        raise error(f"{name}={raw!r} must be at least 1.")
    return value


def override_float(
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    error: type[Exception] = OverrideError,
) -> float | None:
    """A number within [low, high] (either bound optional); None when unset or empty."""
    raw = _override_raw(name, "float")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise error(f"{name}={raw!r} is not a number.") from None
    if low is not None and high is not None and not low <= value <= high:
        raise error(f"{name}={raw!r} must be between {low:g} and {high:g}.")
    if low is not None and not value >= low:
        raise error(f"{name}={raw!r} must be at least {low:g}.")
    if high is not None and not value <= high:
        raise error(f"{name}={raw!r} must be at most {high:g}.")
    if not math.isfinite(value):
        raise error(f"{name}={raw!r} is not a number.")
    return value


def override_decimal(name: str, *, error: type[Exception] = OverrideError) -> Decimal | None:
    """A finite number above 0; None when unset or empty."""
    raw = _override_raw(name, "decimal")
    if not raw:
        return None
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise error(f"{name}={raw!r} is not a number.") from None
    if not value.is_finite() or value <= 0:
        raise error(f"{name}={raw!r} must be a number above 0.")
    return value


def override_list(name: str) -> list[str] | None:
    """Model ids separated by commas or new lines; None when unset, [] when set but empty
    (an override that says "no fallbacks")."""
    raw = _override_raw(name, "models")
    if raw is None:
        return None
    return [item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()]


# --- The generated table ---------------------------------------------------------------
BEGIN = "<!-- BEGIN GENERATED by `python -m config.env`: do not edit by hand -->"
END = "<!-- END GENERATED -->"


def _default_cell(var: Var) -> str:
    if var.secret:
        return "(secret)"
    if var.shown:
        return var.shown
    value = var.default
    if value is None or value == "" or value == ():
        return "empty"
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if isinstance(value, tuple):
        return f"`{','.join(value)}`"
    return f"`{value}`"


def _description(var: Var) -> str:
    if var.minimum is None:
        return var.description
    return f"{var.description}; at least {var.minimum}"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def table() -> str:
    """Markdown: one table per section, then the per-spread patterns."""
    lines: list[str] = []
    for title, group in SECTIONS.items():
        lines += [f"### {title}", "", _row("variable", "type", "default", "description")]
        lines.append(_row("---", "---", "---", "---"))
        lines += [_row(f"`{v.name}`", v.type, _default_cell(v), _description(v)) for v in group]
        lines.append("")
    lines += ["### Per-spread allocation overrides", ""]
    lines.append(_row("pattern", "type", "default", "description"))
    lines.append(_row("---", "---", "---", "---"))
    lines += [_row(f"`{p.name}`", p.type, p.shown, p.description) for p in PATTERNS]
    return "\n".join(lines) + "\n"


def render_docs(text: str) -> str:
    """`text` (docs/configuration.md) with the generated part replaced by the current table."""
    before, begin, rest = text.partition(BEGIN)
    _, end, after = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{DOCS_PATH.name} lacks the markers {BEGIN!r} and {END!r}.")
    return f"{before}{BEGIN}\n\n{table()}\n{END}{after}"


def main(argv: list[str]) -> int:
    current = DOCS_PATH.read_text()
    updated = render_docs(current)
    if "--check" in argv:
        if updated != current:
            print(f"{DOCS_PATH} is out of date: run `python -m config.env`.", file=sys.stderr)
            return 1
        return 0
    print(table(), end="")
    if updated != current:
        DOCS_PATH.write_text(updated)
        print(f"Wrote {DOCS_PATH.relative_to(BASE_DIR)}.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""One configuration channel: config/env.py declares every environment variable, nothing else
reads the environment, and docs/configuration.md is generated from the declarations."""

import ast
import os
import subprocess
import sys
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env
from spreads.models import TaskType

ROOT = env.BASE_DIR

# Files that still read os.environ themselves: none, and it stays so.
STILL_READING_THE_ENVIRONMENT: set[str] = set()

# Not scanned: tests, migrations, the benchmarks (they hand a modified copy of the
# environment to the processes they start), and the entry points that only set
# DJANGO_SETTINGS_MODULE.
SKIPPED_DIRS = {".venv", "venv", "node_modules", "tests", "migrations", "benchmarks"}
SKIPPED_FILES = {"config/env.py", "manage.py", "config/asgi.py", "config/wsgi.py"}

ENVIRONMENT_READERS = {"environ", "environb", "getenv", "getenvb"}


def project_files() -> list[str]:
    files = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0].startswith(".") or SKIPPED_DIRS & set(relative.parts[:-1]):
            continue
        if relative.as_posix() not in SKIPPED_FILES:
            files.append(relative.as_posix())
    return sorted(files)


def environment_reads(relative: str) -> list[str]:
    """Where a file reads the process environment itself: os.environ, os.getenv,
    `from os import environ`, or dj_database_url.config() (which reads DATABASE_URL).
    Handing the environment on to a child process (os.environ.copy(), {**os.environ}) and
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...) are not reads."""
    tree = ast.parse((ROOT / relative).read_text(), relative)
    os_names = {"os"} | {
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os" and alias.asname
    }

    def is_environ(node) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
            and node.attr in ENVIRONMENT_READERS
        )

    passed_on = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target, method = node.func.value, node.func.attr
            if is_environ(target) and method == "copy" and not node.args:
                passed_on.add(id(target))
            if (
                is_environ(target)
                and method == "setdefault"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == "DJANGO_SETTINGS_MODULE"
            ):
                passed_on.add(id(target))
        if isinstance(node, ast.Dict):
            passed_on |= {id(v) for k, v in zip(node.keys, node.values, strict=True) if k is None}

    found = []
    for node in ast.walk(tree):
        if is_environ(node) and id(node) not in passed_on:
            found.append(f"{relative}:{node.lineno} {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [
                f"{relative}:{node.lineno} from os import {alias.name}"
                for alias in node.names
                if alias.name in ENVIRONMENT_READERS
            ]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "dj_database_url"
            and node.func.attr == "config"
        ):
            found.append(f"{relative}:{node.lineno} dj_database_url.config()")
    return found


def env_get_names(relative: str) -> list[tuple[str, int]]:
    """The constant names a file passes to env.get(...)."""
    tree = ast.parse((ROOT / relative).read_text(), relative)
    return [
        (node.args[0].value, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "env"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]


# --- The one channel ---------------------------------------------------------------


def test_the_docs_table_is_generated_from_the_declarations():
    current = env.DOCS_PATH.read_text()

    assert env.render_docs(current) == current, (
        "docs/configuration.md is out of date with config/env.py: run `python -m config.env`."
    )


def test_no_module_outside_config_env_reads_the_environment():
    reads = [read for path in project_files() for read in environment_reads(path)]
    unexpected = [read for read in reads if read.split(":")[0] not in STILL_READING_THE_ENVIRONMENT]

    assert "config/settings.py" in project_files()
    assert not unexpected, (
        "Read these through config/env.py (declare the variable there, then env.get(name)):\n"
        + "\n".join(unexpected)
    )


def test_the_todo_allow_list_only_holds_files_that_still_read_the_environment():
    for path in STILL_READING_THE_ENVIRONMENT:
        assert (ROOT / path).exists() and environment_reads(path), (
            f"{path} no longer reads the environment itself: remove it from "
            "STILL_READING_THE_ENVIRONMENT in tests/config/test_env.py."
        )


def test_every_variable_read_through_env_get_is_declared():
    undeclared = [
        f"{path}:{line} {name}"
        for path in project_files()
        for name, line in env_get_names(path)
        if name not in env.VARIABLES
    ]

    assert env_get_names("config/settings.py")
    assert not undeclared, "Declare these in config/env.py:\n" + "\n".join(undeclared)


def test_every_declared_variable_is_read_somewhere():
    code = "\n".join(
        (ROOT / path).read_text()
        for path in [*project_files(), *STILL_READING_THE_ENVIRONMENT]
        if path != "config/env.py"
    )
    benchmarks = "\n".join(p.read_text() for p in (ROOT / "benchmarks").rglob("*.py"))

    unread = [name for name in env.VARIABLES if f'"{name}"' not in code + benchmarks]

    assert not unread, f"Declared in config/env.py but read nowhere: {unread}"


def test_each_variable_is_declared_once():
    names = [var.name for group in env.SECTIONS.values() for var in group]

    assert len(names) == len(set(names))


def set_up_and_print(code: str, **variables) -> subprocess.CompletedProcess:
    """Run `code` after Django's set-up in a new process, none of the platform's variables
    set but `variables`."""
    clean = {k: v for k, v in os.environ.items() if k not in env.VARIABLES}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**clean, **variables, "DJANGO_SETTINGS_MODULE": "config.settings"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_load_with_nothing_set_on_sqlite():
    result = set_up_and_print(
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DEBUG, s.SECURE_HSTS_SECONDS, "
        "s.WEB_PROCESSES, s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['token'])"
    )

    assert result.stdout.split() == ["django.db.backends.sqlite3", "False", "0", "1", "10/min"], (
        result.stderr
    )


# --- Declared variables ------------------------------------------------------------


def test_an_unset_variable_is_its_declared_default(monkeypatch):
    for name in ("DEBUG", "ALLOWED_HOSTS", "MAX_JSON_BODY_BYTES", "LOG_LEVEL", "LLM_LEASE_TTL_S"):
        monkeypatch.delenv(name, raising=False)

    assert env.get("DEBUG") is False
    assert env.get("ALLOWED_HOSTS") == ["127.0.0.1", "localhost", "[::1]"]
    assert env.get("MAX_JSON_BODY_BYTES") == 65536
    assert env.get("LOG_LEVEL") == "INFO"
    assert env.get("LLM_LEASE_TTL_S") is None


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("Yes", True), (" on ", True), ("0", False), ("", False)]
)
def test_a_bool_takes_the_usual_words(monkeypatch, raw, value):
    monkeypatch.setenv("DEBUG", raw)

    assert env.get("DEBUG") is value


def test_the_https_family_follows_https_unless_set(monkeypatch):
    for name in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "CSRF_COOKIE_SECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS", "1")
    monkeypatch.setenv("CSRF_COOKIE_SECURE", "0")

    assert env.get("SECURE_SSL_REDIRECT") is True
    assert env.get("SECURE_HSTS_SECONDS") == 31_536_000
    assert env.get("CSRF_COOKIE_SECURE") is False


def test_a_blank_int_is_its_default_and_a_list_is_split_on_commas(monkeypatch):
    monkeypatch.setenv("Q_WORKERS", " ")
    monkeypatch.setenv("ALLOWED_HOSTS", " a.example , ,b.example")

    assert env.get("Q_WORKERS") == 1
    assert env.get("ALLOWED_HOSTS") == ["a.example", "b.example"]


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean; use 1/0, true/false, yes/no."),
        ("EMAIL_PORT", "smtp", "EMAIL_PORT='smtp' is not a whole number."),
        ("WORKER_CONCURRENCY", "0", "WORKER_CONCURRENCY must be at least 1."),
        ("READINGS_QUEUED_PER_USER", "-1", "READINGS_QUEUED_PER_USER must be at least 1."),
    ],
)
def test_a_malformed_value_is_a_start_up_error_naming_the_variable(monkeypatch, name, raw, message):
    monkeypatch.setenv(name, raw)

    with pytest.raises(ImproperlyConfigured) as caught:
        env.get(name)
    assert str(caught.value) == message


def test_a_secrets_value_is_never_in_an_error(monkeypatch):
    monkeypatch.setitem(
        env.VARIABLES, "TEST_SECRET_PIN", env.Var("TEST_SECRET_PIN", "int", 0, "", secret=True)
    )
    monkeypatch.setenv("TEST_SECRET_PIN", "hunter2")

    with pytest.raises(ImproperlyConfigured) as caught:
        env.get("TEST_SECRET_PIN")
    assert "hunter2" not in str(caught.value)
    assert "TEST_SECRET_PIN" in str(caught.value)


def test_secrets_are_marked_and_their_defaults_hidden_in_the_docs():
    secrets = {name for name, var in env.VARIABLES.items() if var.secret}

    assert {"SECRET_KEY", "ANTHROPIC_API_KEY", "METRICS_TOKEN", "DATABASE_URL"} <= secrets
    for name in secrets:
        assert f"| `{name}` | {env.VARIABLES[name].type} | (secret) |" in env.table()
    assert "db.sqlite3`" not in env.table().split("`DATABASE_URL`")[1].split("|")[2]


def test_reading_an_undeclared_variable_is_refused(monkeypatch):
    monkeypatch.setenv("NOT_DECLARED_ANYWHERE", "1")

    with pytest.raises(LookupError, match="declare it there"):
        env.get("NOT_DECLARED_ANYWHERE")


# --- Per-spread overrides ----------------------------------------------------------


def test_the_patterns_tasks_are_the_task_types_short_words():
    assert set(env.TASKS) == {task.kind.upper() for task in TaskType}


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("CELTIC_CROSS_CARD_MODEL", "<SPREAD>_<TASK>_MODEL"),
        ("CELTIC_CROSS_OVERALL_MAX_TOKENS", "<SPREAD>_<TASK>_MAX_TOKENS"),
        ("THREE_CARD_ADVICE_TEMPERATURE", "<SPREAD>_<TASK>_TEMPERATURE"),
        ("CELTIC_CROSS_RELATIONSHIPS_FALLBACK_MODELS", "<SPREAD>_<TASK>_FALLBACK_MODELS"),
        ("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING", "<SPREAD>_<TASK>_FALLBACK_COST_CEILING"),
        ("CELTIC_CROSS_MAX_CONCURRENT_CALLS", "<SPREAD>_MAX_CONCURRENT_CALLS"),
        ("CELTIC_CROSS_SUMMARY_MODEL", None),
        ("celtic_cross_CARD_MODEL", None),
    ],
)
def test_a_name_belongs_to_at_most_one_declared_pattern(name, pattern):
    found = env.pattern_for(name)

    assert (found.name if found else None) == pattern


def test_an_unset_or_empty_override_is_none(monkeypatch):
    monkeypatch.delenv("CELTIC_CROSS_CARD_MAX_TOKENS", raising=False)
    monkeypatch.setenv("CELTIC_CROSS_CARD_TEMPERATURE", "")
    monkeypatch.setenv("CELTIC_CROSS_CARD_MODEL", "  ")
    monkeypatch.setenv("CELTIC_CROSS_MAX_CONCURRENT_CALLS", "")
    monkeypatch.delenv("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING", raising=False)
    monkeypatch.delenv("CELTIC_CROSS_CARD_FALLBACK_MODELS", raising=False)

    assert env.override_int("CELTIC_CROSS_CARD_MAX_TOKENS") is None
    assert env.override_float("CELTIC_CROSS_CARD_TEMPERATURE", 0, 1) is None
    assert env.override_str("CELTIC_CROSS_CARD_MODEL") is None
    assert env.override_int("CELTIC_CROSS_MAX_CONCURRENT_CALLS") is None
    assert env.override_decimal("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING") is None
    assert env.override_list("CELTIC_CROSS_CARD_FALLBACK_MODELS") is None


def test_overrides_are_read_typed_at_call_time(monkeypatch):
    monkeypatch.setenv("CELTIC_CROSS_CARD_MODEL", " claude-haiku-4-5 ")
    monkeypatch.setenv("CELTIC_CROSS_CARD_MAX_TOKENS", "512")
    monkeypatch.setenv("CELTIC_CROSS_CARD_TEMPERATURE", "0.2")
    monkeypatch.setenv("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING", " 1.5 ")
    monkeypatch.setenv("CELTIC_CROSS_CARD_FALLBACK_MODELS", "a, b\nc,,")
    monkeypatch.setenv("CELTIC_CROSS_MAX_CONCURRENT_CALLS", "2")

    assert env.override_str("CELTIC_CROSS_CARD_MODEL") == "claude-haiku-4-5"
    assert env.override_int("CELTIC_CROSS_CARD_MAX_TOKENS") == 512
    assert env.override_float("CELTIC_CROSS_CARD_TEMPERATURE", 0, 1) == 0.2
    assert env.override_decimal("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING") == Decimal("1.5")
    assert env.override_list("CELTIC_CROSS_CARD_FALLBACK_MODELS") == ["a", "b", "c"]
    assert env.override_int("CELTIC_CROSS_MAX_CONCURRENT_CALLS") == 2

    monkeypatch.setenv("CELTIC_CROSS_MAX_CONCURRENT_CALLS", "3")
    assert env.override_int("CELTIC_CROSS_MAX_CONCURRENT_CALLS") == 3


def test_empty_fallback_models_say_no_fallbacks(monkeypatch):
    monkeypatch.setenv("CELTIC_CROSS_CARD_FALLBACK_MODELS", "")

    assert env.override_list("CELTIC_CROSS_CARD_FALLBACK_MODELS") == []


def read_override(name: str, **kwargs):
    """The reader the allocator uses for each pattern."""
    pattern = env.pattern_for(name).name
    if pattern.endswith("_TEMPERATURE"):
        return env.override_float(name, 0, 1, **kwargs)
    if pattern.endswith("_FALLBACK_COST_CEILING"):
        return env.override_decimal(name, **kwargs)
    return env.override_int(name, **kwargs)


# The messages allocation/allocator.py's AllocationError gives today, after "NAME='raw' ".
@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("CELTIC_CROSS_CARD_MAX_TOKENS", "lots", "is not a whole number."),
        ("CELTIC_CROSS_CARD_MAX_TOKENS", "0", "must be at least 1."),
        ("CELTIC_CROSS_MAX_CONCURRENT_CALLS", "1.5", "is not a whole number."),
        ("CELTIC_CROSS_MAX_CONCURRENT_CALLS", "-2", "must be at least 1."),
        ("CELTIC_CROSS_CARD_TEMPERATURE", "hot", "is not a number."),
        ("CELTIC_CROSS_CARD_TEMPERATURE", "1.5", "must be between 0 and 1."),
        ("CELTIC_CROSS_CARD_TEMPERATURE", "nan", "must be between 0 and 1."),
        ("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING", "lots", "is not a number."),
        ("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING", "0", "must be a number above 0."),
        ("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING", "Infinity", "must be a number above 0."),
    ],
)
def test_a_malformed_override_raises_the_allocators_message(monkeypatch, name, raw, message):
    monkeypatch.setenv(name, raw)

    with pytest.raises(env.OverrideError) as caught:
        read_override(name)
    assert str(caught.value) == f"{name}={raw!r} {message}"
    assert isinstance(caught.value, ValueError)


def test_the_caller_chooses_the_exception_class(monkeypatch):
    class AllocationError(Exception):
        pass

    monkeypatch.setenv("CELTIC_CROSS_CARD_MAX_TOKENS", "lots")

    with pytest.raises(AllocationError, match="is not a whole number"):
        env.override_int("CELTIC_CROSS_CARD_MAX_TOKENS", error=AllocationError)


def test_an_override_outside_the_declared_patterns_is_refused():
    with pytest.raises(LookupError, match="matches no pattern"):
        env.override_str("CELTIC_CROSS_SUMMARY_MODEL")
    with pytest.raises(LookupError, match="declared as int"):
        env.override_str("CELTIC_CROSS_CARD_MAX_TOKENS")


def test_log_level_quiets_the_job_queues_logger_too():
    result = set_up_and_print(
        "from django_q.conf import logger; print(logger.getEffectiveLevel())", LOG_LEVEL="WARNING"
    )

    # At INFO, django-q2 logs a line for every job it enqueues (each reading's POST).
    assert result.stdout.split() == ["30"], result.stderr

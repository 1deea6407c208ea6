"""The platform's settings plus the benchmarks app (`make bench`, `manage.py bench`): its
commands and bench user are not part of a production install."""

from config.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks"]  # noqa: F405

#!/usr/bin/env python
import os
import sys

# The benchmarks app is not installed in production: its commands bring it in themselves.
BENCH_COMMANDS = {"bench", "seed_calls", "run_readings"}


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    settings = "config.bench_settings" if command in BENCH_COMMANDS else "config.settings"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

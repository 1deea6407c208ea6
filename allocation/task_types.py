"""The task types allocation rows and the call log are keyed by.

The LLM layer knows a task type only as a string. Which strings exist is the project's
choice, named in settings.LLM_TASK_TYPES: a TextChoices class, by dotted path, whose members
also carry `kind` (the word in environment variable names, e.g. CELTIC_CROSS_CARD_MODEL)
and `builtin_default` (an allocator.BuiltinDefault, used when no allocation row exists).
So the admin offers them as choices and the allocator resolves them without this layer
importing the domain that defines them.
"""

from django.conf import settings
from django.utils.module_loading import import_string


def task_types():
    return import_string(settings.LLM_TASK_TYPES)


def task_type_of(value: str):
    """The member for a task-type string; ValueError for one the project does not name."""
    return task_types()(value)


def task_type_choices() -> list[tuple[str, str]]:
    return task_types().choices

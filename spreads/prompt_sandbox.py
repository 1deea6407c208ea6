"""The template engine prompts render in: Django's template language cut down to what a
prompt needs, because staff write these templates in the admin and every reading runs them.

Only the tags and filters below exist. Nothing else does: no {% debug %} (it prints every
variable in reach), no {% load %} (it would bring the other tags back), no {% include %},
{% extends %} or {% ssi %} (they read other templates and files), no {% url %} or
{% csrf_token %}, and no {% now %} (the guide and layout must be the same bytes on every call
for the provider's prompt cache). The filters are the ones that only reshape text and numbers;
pprint, stringformat and the like (which print an object's insides), dictsort (which follows
lookups given as text), random and date are left out, and so are center, ljust, rjust
and floatformat (a large width or precision makes a huge string, or a slow one).

The values templates see are plain too (spreads.prompt_data), so even the allowed tags have
nothing to reach beyond the reading being written.

And every render is bounded (render()): loop iterations, the characters loop bodies and `add`
produce, and wall time, so that three nested loops over a 1,000-character question or a chain
of `{% with %}` doublings stop with RenderBudgetExceeded instead of taking the CPU or the
memory of the process (PROMPT_RENDER_MAX_LOOPS, _MAX_CHARS and _MAX_MS).
"""

import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.template import Context, Engine, Library, Node, NodeList, defaultfilters, defaulttags
from django.template.base import Lexer, TokenType, filter_re
from django.utils.text import smart_split

ALLOWED_TAGS = (
    "comment",
    "cycle",
    "firstof",
    "for",
    "if",
    "ifchanged",
    "spaceless",
    "verbatim",
    "with",
)
ALLOWED_FILTERS = (
    "add",
    "capfirst",
    "cut",
    "default",
    "default_if_none",
    "divisibleby",
    "first",
    "join",
    "last",
    "length",
    "lower",
    "make_list",
    "pluralize",
    "slice",
    "title",
    "truncatechars",
    "truncatewords",
    "upper",
    "wordcount",
    "wordwrap",
    "yesno",
)
# The words that end or split an allowed tag's block; they are not tags of their own.
_INNER_WORDS = {
    "else",
    "elif",
    "empty",
    "endcomment",
    "endfor",
    "endif",
    "endifchanged",
    "endspaceless",
    "endverbatim",
    "endwith",
}

# The engine's one built-in library (PromptEngine.default_builtins names this module).
register = Library()
register.tags = {name: defaulttags.register.tags[name] for name in ALLOWED_TAGS}
register.filters = {name: defaultfilters.register.filters[name] for name in ALLOWED_FILTERS}


class RenderBudgetExceeded(Exception):
    """A template went over its render budget; the message says which limit."""


@dataclass(frozen=True)
class RenderBudget:
    max_loops: int  # loop iterations, nested loops' included
    max_chars: int  # characters of output, of loop bodies' output, and of a value `add` makes
    max_s: float  # wall time

    @classmethod
    def from_settings(cls) -> "RenderBudget":
        return cls(
            settings.PROMPT_RENDER_MAX_LOOPS,
            settings.PROMPT_RENDER_MAX_CHARS,
            settings.PROMPT_RENDER_MAX_MS / 1000,
        )


class _Spending:
    """What one render has spent of its budget (carried on the render's Context)."""

    def __init__(self, budget: RenderBudget):
        self.budget = budget
        self.loops = 0
        self.chars = 0
        self.deadline = time.monotonic() + budget.max_s
        self.next_pause = time.monotonic() + 0.001

    def loop_body(self, rendered: str) -> None:
        self.loops += 1
        self.chars += len(rendered)
        if self.loops > self.budget.max_loops:
            raise RenderBudgetExceeded(f"more than {self.budget.max_loops:,} loop iterations")
        self.output(self.chars)
        now = time.monotonic()
        if now > self.deadline:
            raise RenderBudgetExceeded(f"more than {self.budget.max_s:g} s")
        if now > self.next_pause:
            # A long render holds the GIL, and each of the process's other threads (the
            # event loop streaming other readings, the database thread) then waits out the
            # 5 ms switch interval every time it wants it back: a reading beside a render
            # held to 2 s took 2.2 s instead of 0.5. Letting go every millisecond keeps the
            # others at their own pace.
            time.sleep(0)
            self.next_pause = now + 0.001

    def output(self, chars: int) -> None:
        if chars > self.budget.max_chars:
            raise RenderBudgetExceeded(f"more than {self.budget.max_chars:,} characters")


def render(template, data: dict, budget: RenderBudget | None = None) -> str:
    """`template` (compiled by engine()) rendered with `data`, within `budget` (settings'
    by default); RenderBudgetExceeded past it."""
    context = Context(data, autoescape=False)
    context.spending = _Spending(budget or RenderBudget.from_settings())
    rendered = template.render(context)
    context.spending.output(len(rendered))
    return rendered


class _ChargedBody(Node):
    """A loop's body: each time it renders is one iteration, charged to the render."""

    child_nodelists = ("nodelist",)

    def __init__(self, nodelist: NodeList):
        self.nodelist = nodelist

    def render(self, context) -> str:
        rendered = self.nodelist.render(context)
        spending = getattr(context, "spending", None)
        if spending is not None:
            spending.loop_body(rendered)
        return rendered


def _bounded_for(parser, token):
    node = defaulttags.do_for(parser, token)
    node.nodelist_loop = NodeList([_ChargedBody(node.nodelist_loop)])
    return node


def _bounded_add(value, arg):
    added = defaultfilters.add(value, arg)
    if isinstance(added, str | list | tuple):
        limit = settings.PROMPT_RENDER_MAX_CHARS
        if len(added) > limit:
            raise RenderBudgetExceeded(f"`add` made a value of more than {limit:,} characters")
    return added


register.tags["for"] = _bounded_for
register.filters["add"] = _bounded_add


class PromptEngine(Engine):
    # Engine adds its default_builtins (every Django tag and filter) to any engine; a prompt
    # engine's only built-in is the allow-list above.
    default_builtins = ["spreads.prompt_sandbox"]


@cache
def engine(*, string_if_invalid: str = "") -> PromptEngine:
    """The engine for templates/reading/ and their admin overrides. Strict about unknown tags
    and filters (TemplateSyntaxError), lenient about missing variables so that one template
    serves every phase; the editor's preview passes string_if_invalid to mark them."""
    return PromptEngine(
        dirs=[settings.BASE_DIR / "templates" / "reading"],
        autoescape=False,  # prompts are plain text
        debug=False,
        libraries={},
        string_if_invalid=string_if_invalid,
    )


def _expressions(body: str):
    """(tag name, its expression) for each expression of each tag in `body`, and (None, the
    expression) for each {{ }}: what the allow-list and the lookups are checked on."""
    for token in Lexer(body).tokenize():
        if token.token_type == TokenType.BLOCK:
            bits = list(smart_split(token.contents))
            if bits:
                yield bits[0], None
                for bit in bits[1:]:
                    yield bits[0], bit
        elif token.token_type == TokenType.VAR:
            yield None, token.contents


def lookups(body: str) -> list[str]:
    """Every variable `body` looks up (`c.card.name`), in tags and in {{ }}, once each."""
    found: dict[str, None] = {}
    for _, expression in _expressions(body):
        for match in filter_re.finditer(expression or ""):
            var = match.group("var")
            if var and not var.startswith(("'", '"')) and "." in var:
                found[var] = None
    return list(found)


def refused(body: str) -> tuple[list[str], list[str]]:
    """The tags and filters `body` uses outside the allow-list, each once, in order."""
    tags: dict[str, None] = {}
    filters: dict[str, None] = {}
    for tag, expression in _expressions(body):
        if expression is None:  # the tag itself
            if tag not in ALLOWED_TAGS and tag not in _INNER_WORDS:
                tags[tag] = None
            continue
        for match in filter_re.finditer(expression):
            name = match.group("filter_name")
            if name and name not in ALLOWED_FILTERS:
                filters[name] = None
    return list(tags), list(filters)


def refusal(body: str) -> str | None:
    """None if `body` keeps to the allowed tags and filters, else a message naming the rest."""
    tags, filters = refused(body)
    if not tags and not filters:
        return None
    used = [f"{{% {name} %}}" for name in tags] + [f"the filter {name}" for name in filters]
    return (
        f"The template does not compile: prompt templates cannot use {_and(used)}. "
        f"Tags they can use: {', '.join(ALLOWED_TAGS)}. "
        f"Filters: {', '.join(ALLOWED_FILTERS)}."
    )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"

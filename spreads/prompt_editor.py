"""What the prompt template editor shows staff: the built-in templates, and a preview of a
template rendered against a sample reading with the variables it does not know.

Rendering uses the prompts' own restricted engine (spreads.prompt_sandbox: a template using a
tag or filter outside its allow-list is refused, naming it), with one difference: a
variable that does not resolve renders as a marker instead of nothing, so a misspelt name
(`{{ qestion }}`, `{{ c.card.nmae }}`) is caught instead of silently leaving a hole in the
prompt sent to the model.
"""

import re
from dataclasses import dataclass, field

from django.conf import settings
from django.template import TemplateSyntaxError

from spreads import prompt_sandbox
from spreads.models import PromptTemplate, Spread
from spreads.prompts import SAMPLE_TEXTS, sample_context

BUILTIN_DIR = settings.BASE_DIR / "templates" / "reading"
# What spreads.prompts.PromptContext hands every template.
KNOWN_VARIABLES = [
    "question",
    "spread",
    "cards",
    "batch",
    "positions",
    "card_results",
    "result_groups",
    "overall",
    "relationships",
]
_MARK = "\x00unknown:{}\x00"
_MARKED = re.compile("\x00unknown:(.*?)\x00")


def _checking_engine() -> prompt_sandbox.PromptEngine:
    return prompt_sandbox.engine(string_if_invalid=_MARK.format("%s"))


@dataclass
class BuiltinTemplate:
    name: str
    overridden_by: PromptTemplate | None


def builtin_templates() -> list[BuiltinTemplate]:
    """The prompt files shipped in templates/reading/, each with its database override."""
    names = sorted(path.name for path in BUILTIN_DIR.glob("*.txt"))
    overrides = {row.name: row for row in PromptTemplate.objects.filter(name__in=names)}
    return [BuiltinTemplate(name, overrides.get(name)) for name in names]


def builtin_source(name: str) -> str | None:
    """The text of a shipped template, to start an override from; None if there is none."""
    if "/" in name or not name.endswith(".txt"):
        return None
    path = BUILTIN_DIR / name
    return path.read_text() if path.is_file() else None


@dataclass
class Preview:
    text: str = ""
    error: str = ""
    unknown: list[str] = field(default_factory=list)


def sample_spread_for(name: str) -> Spread | None:
    """celtic_cross_card.txt previews against the Celtic Cross; card.txt against the first."""
    spreads = Spread.objects.order_by("card_count", "name")
    for spread in spreads:
        if name.startswith(f"{spread.slug}_"):
            return spread
    return spreads.filter(is_active=True).first()


def language_of(name: str) -> str:
    """card_ko.txt is Korean; card.txt is English, the base language."""
    stem = name.removesuffix(".txt")
    code = stem.rsplit("_", 1)[-1] if "_" in stem else ""
    return code if code in SAMPLE_TEXTS else "en"


def preview(body: str, *, spread: Spread | None = None, language: str = "en") -> Preview:
    """The template rendered against a sample reading of `spread` in `language`, and the
    variables in it that do not resolve there, in order of appearance."""
    refused = prompt_sandbox.refusal(body)
    if refused:
        return Preview(error=refused)
    try:
        template = _checking_engine().from_string(body)
        context = sample_context(spread, language).as_dict()
        rendered = prompt_sandbox.render(template, context)
    except TemplateSyntaxError as exc:
        return Preview(error=f"The template does not compile: {exc}")
    except Exception as exc:  # noqa: BLE001 - any render failure is the staff member's to fix
        return Preview(error=f"The template fails to render against a sample reading: {exc}")
    unknown = list(dict.fromkeys(_name(found) for found in _MARKED.findall(rendered)))
    text = _MARKED.sub(lambda m: f"{{{{ {_name(m.group(1))} ?}}}}", rendered).strip()
    return Preview(text=text, unknown=unknown)


# Django leaves the marker's %s unfilled when a method needs arguments (`question.zfill`):
# the name is lost, so say what kind of thing it was.
NEEDS_ARGUMENTS = "a method that needs arguments (templates cannot pass any)"


def _name(found: str) -> str:
    return NEEDS_ARGUMENTS if found == "%s" else found


def unknown_variables_message(unknown: list[str]) -> str:
    names = ", ".join(unknown)
    return (
        f"Unknown variable{'s' if len(unknown) > 1 else ''}: {names}. A sample reading has "
        f"{', '.join(KNOWN_VARIABLES)}; each card (in cards and batch) has position (index, "
        "name, meaning), card (name, keywords, upright, reversed), orientation and meaning."
    )

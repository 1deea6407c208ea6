"""The layers of docs/architecture.md, held against the code's imports.

Every import counts, those inside functions too: an arrow hidden in a function body is still
an arrow. A failure names the file and line of the import that runs the wrong way.
"""

import ast
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)

# Which apps each app may import (besides itself). Arrows run downward only:
#   operations, accounts, reports -> worker -> readings -> budgets, spreads -> allocation
# emulator/ stands alone (a local stand-in for the provider); benchmarks/ and config/ sit on
# top of everything and are not checked.
ALLOWED = {
    "allocation": set(),
    "emulator": set(),
    "spreads": {"allocation"},
    "budgets": {"allocation"},
    # The `read` command starts the emulator when no key is set.
    "readings": {"budgets", "spreads", "allocation", "emulator"},
    # `serve` starts the emulator beside the web server and the worker.
    "worker": {"readings", "budgets", "spreads", "allocation", "emulator"},
    "reports": {"readings", "budgets", "spreads", "allocation"},
    "accounts": {"readings", "budgets", "spreads", "allocation"},
    "operations": {"worker", "readings", "budgets", "spreads", "allocation"},
}
APPS = set(ALLOWED)
# An import circle may tie at most this many modules together.
LARGEST_CIRCLE = 3
# No app may hold more than this share of the code.
LARGEST_SHARE = 0.30


def source_files():
    for app in sorted(APPS):
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield app, path


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def parse(path: Path) -> ast.Module:
    """The file's syntax tree, parsed on a thread of its own: CPython 3.11.7 can raise a false
    "AST constructor recursion depth mismatch" (gh-106905, fixed in 3.11.8) when ast.parse
    runs deep in a long-lived thread's stack, as it does late in the suite."""
    with ThreadPoolExecutor(max_workers=1) as fresh:
        return fresh.submit(ast.parse, path.read_text()).result()


def imports(path: Path, module: str = "", known: frozenset[str] = frozenset()):
    """(line, module imported) for every import in the file, nested ones included; `known`
    names the project's modules, so that importing a submodule is not an arrow to its
    package."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` is an arrow to the module, not to the package.
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            modules = [name for name in submodules if name in known] if known else []
            for name in modules or [base]:
                yield node.lineno, name


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for _, path in source_files()}


def module_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = defaultdict(set)
    for name, path in modules.items():
        for _, imported in imports(path, known=frozenset(modules)):
            if imported in modules and imported != name:
                graph[name].add(imported)
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_runs_down_the_layers():
    wrong = []
    for app, path in source_files():
        for line, imported in imports(path):
            target = imported.split(".")[0]
            if target in APPS and target != app and target not in ALLOWED[app]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not wrong, "Imports against docs/architecture.md's arrows:\n" + "\n".join(
        sorted(set(wrong))
    )


def test_the_llm_layer_imports_no_app_of_the_project():
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for app, path in source_files()
        if app == "allocation"
        for line, imported in imports(path)
        if imported.split(".")[0] in APPS - {"allocation"}
    ]
    assert found == []


def test_no_import_circle_ties_more_than_three_modules():
    too_large = [sorted(c) for c in circles(module_graph()) if len(c) > LARGEST_CIRCLE]
    assert too_large == [], "Import circles (docs/architecture.md):\n" + "\n".join(
        " <-> ".join(c) for c in too_large
    )


def test_no_app_holds_more_than_thirty_percent_of_the_code():
    lines = defaultdict(int)
    for app, path in source_files():
        lines[app] += len(path.read_text().splitlines())
    total = sum(lines.values())
    shares = {app: round(count / total, 3) for app, count in lines.items()}
    assert max(shares.values()) <= LARGEST_SHARE, shares


def test_the_checker_sees_an_arrow_hidden_in_a_function(tmp_path):
    hidden = tmp_path / "hidden.py"
    hidden.write_text("def f():\n    from readings.models import Reading\n")
    assert (2, "readings.models") in list(imports(hidden, "allocation.hidden"))


def test_the_checker_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"a"}, "e": {"a"}}
    assert circles(graph) == [{"a", "b", "c", "d"}]

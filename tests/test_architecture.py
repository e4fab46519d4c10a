"""The import rules between the project's parts, checked on the source.

Every module of the apps and of `beamclaw/` is parsed (nothing is imported) into a graph
of the imports it makes, at module level and inside functions; imports under
`if TYPE_CHECKING:` do not run, so they do not count. The rules are the data below, each
with its reason; docs/architecture.md explains them. The checker's own tests run it on
small made-up graphs, so a rule that stopped catching its edge would fail here too.
"""

from __future__ import annotations

import ast
import re
import tokenize
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The project's own code, with the bench and the test doubles it shares with the tests;
# tests, scripts and migrations are not checked.
PACKAGES = ("beamclaw", "tenants", "agents", "fleet", "marketplace", "bench", "testing")
APPS = ("tenants", "agents", "fleet", "marketplace")
SKIPPED_DIRS = {"migrations", "__pycache__"}


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `importer` imports `target` at `path:line`."""

    importer: str
    target: str
    path: str
    line: int
    function_local: bool = False
    commented: bool = True  # a comment on its line or the line above says why

    def where(self) -> str:
        local = " (in a function)" if self.function_local else ""
        return f"{self.path}:{self.line}  {self.importer} -> {self.target}{local}"


@dataclass(frozen=True)
class Rule:
    """`importers` must not import `forbidden`, except the modules in `exempt`.

    A pattern names a module and everything under it (`agents.runtime` covers
    `agents.runtime.loop`); `*` matches any run of characters, dots included.
    """

    name: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    reason: str
    exempt: tuple[str, ...] = ()
    module_level_only: bool = False


DRF = ("rest_framework", "drf_spectacular")
API_LAYER = ("*.api",)
CELERY = ("celery", "kombu", "beamclaw.celery", "agents.tasks")

RULES: tuple[Rule, ...] = (
    Rule(
        name="runtime-without-drf",
        importers=("agents.runtime",),
        forbidden=DRF + API_LAYER,
        reason="the turn loop runs in workers, not in requests: it raises domain errors, "
        "and the API turns them into HTTP answers",
    ),
    Rule(
        name="runtime-celery-through-dispatch",
        importers=("agents.runtime",),
        forbidden=CELERY,
        exempt=("agents.runtime.dispatch",),
        reason="one module sends the Celery triggers, so the runtime can be read and "
        "tested without a broker",
    ),
    Rule(
        name="tenants-below-agents",
        importers=("tenants",),
        forbidden=("agents",),
        reason="tenants (keys, limits, metering, queues' names) sit under agents: agents "
        "use them, never the reverse",
    ),
    Rule(
        name="nothing-imports-fleet",
        importers=("*",),
        forbidden=("fleet",),
        exempt=("fleet", "bench"),
        reason="fleet keeps workers serving and sits on top: it imports agents and "
        "tenants, and installs what the turn loop asks for when a worker starts",
    ),
    Rule(
        name="nothing-ships-the-bench",
        importers=("beamclaw", "tenants", "agents", "fleet", "marketplace"),
        forbidden=("bench", "testing"),
        reason="the bench and the test doubles (fake model, fake chat APIs) measure and "
        "test the platform; the platform never runs them",
    ),
    Rule(
        name="providers-without-models",
        importers=("agents.providers",),
        forbidden=("*.models",),
        reason="a provider speaks one model API from plain data in and out; the runtime "
        "maps rows to that data",
    ),
    Rule(
        name="drf-only-in-api",
        importers=("*",),
        forbidden=DRF,
        exempt=("*.api", "*.admin", "beamclaw.api.errors"),
        reason="services, the runtime, cron, channels and commands work without HTTP; "
        "settings name DRF classes as strings",
    ),
    Rule(
        name="plumbing-imports-no-app",
        importers=("beamclaw",),
        forbidden=APPS,
        module_level_only=True,
        reason="beamclaw/ is the project's plumbing (settings, urls, Celery app, Redis, "
        "errors, telemetry) that every app loads: at module level it must load none of them",
    ),
)


def matches(module: str, pattern: str) -> bool:
    """Whether `module` is the module `pattern` names or one under it."""
    return fnmatchcase(module, pattern) or fnmatchcase(module, pattern + ".*")


def matches_any(module: str, patterns: Iterable[str]) -> bool:
    return any(matches(module, pattern) for pattern in patterns)


# --- reading the source ---------------------------------------------------------------


def project_modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Module name -> file, for every module of the given packages under `root`."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if SKIPPED_DIRS & set(relative.parts):
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


# Comments for tools, not readers: they say nothing about why an import is where it is.
TOOL_COMMENT = re.compile(r"#\s*(noqa|type:|pragma|fmt:)[\w:, ]*$", re.IGNORECASE)


def _comment_lines(path: Path) -> tuple[set[int], set[int]]:
    """Lines holding a comment, and lines that are only a comment (tool markers aside)."""
    with path.open("rb") as source:
        comments = [
            token
            for token in tokenize.tokenize(source.readline)
            if token.type == tokenize.COMMENT and not TOOL_COMMENT.match(token.string)
        ]
    lines = path.read_text().splitlines()
    anywhere = {token.start[0] for token in comments}
    alone = {n for n in anywhere if lines[n - 1].lstrip().startswith("#")}
    return anywhere, alone


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_statements(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, int]]:
    """(statement, inside a function, first line of its run of imports), skipping
    TYPE_CHECKING blocks. A comment above a run of imports covers the whole run."""

    def walk(body: list[ast.stmt], in_function: bool) -> Iterator:
        run_start = None
        for statement in body:
            if isinstance(statement, ast.Import | ast.ImportFrom):
                run_start = run_start or statement.lineno
                yield statement, in_function, run_start
                continue
            run_start = None
            if isinstance(statement, ast.If) and _is_type_checking(statement):
                yield from walk(statement.orelse, in_function)
                continue
            inner = in_function or isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef)
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(statement, field, None) or []
                for child in children:
                    if isinstance(child, ast.excepthandler | ast.match_case):
                        yield from walk(child.body, inner)
                if children and isinstance(children[0], ast.stmt):
                    yield from walk(children, inner)

    yield from walk(tree.body, False)


def read_imports(root: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import the given modules make, as absolute module names: `from x import y`
    names `x.y` when that is a module of the project, else `x`."""
    imports: list[Import] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        anywhere, alone = _comment_lines(path)
        is_package = path.name == "__init__.py"
        for statement, in_function, run_start in _import_statements(tree):
            if isinstance(statement, ast.Import):
                targets = [alias.name for alias in statement.names]
            else:
                base = statement.module or ""
                if statement.level:
                    package = module.split(".")
                    if not is_package:
                        package.pop()
                    package = package[: len(package) - (statement.level - 1)]
                    base = ".".join([*package, base] if base else package)
                targets = []
                for alias in statement.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in modules else base)
            own_lines = range(statement.lineno, (statement.end_lineno or statement.lineno) + 1)
            commented = any(n in anywhere for n in own_lines) or (run_start - 1) in alone
            for target in dict.fromkeys(targets):
                if target == module:
                    continue
                imports.append(
                    Import(
                        importer=module,
                        target=target,
                        path=str(path.relative_to(root)),
                        line=statement.lineno,
                        function_local=in_function,
                        commented=commented,
                    )
                )
    return imports


# --- the checks -----------------------------------------------------------------------


def rule_violations(imports: Iterable[Import], rules: Iterable[Rule] = RULES) -> dict[str, list]:
    """Rule name -> the imports that break it."""
    found: dict[str, list[Import]] = {}
    for rule in rules:
        for edge in imports:
            if rule.module_level_only and edge.function_local:
                continue
            if (
                matches_any(edge.importer, rule.importers)
                and not matches_any(edge.importer, rule.exempt)
                and matches_any(edge.target, rule.forbidden)
            ):
                found.setdefault(rule.name, []).append(edge)
    return found


def uncommented_local_imports(
    imports: Iterable[Import], packages: Iterable[str] = PACKAGES
) -> list[Import]:
    """Project imports inside functions with no comment saying why they are there."""
    packages = tuple(packages)
    return [
        edge
        for edge in imports
        if edge.function_local and not edge.commented and matches_any(edge.target, packages)
    ]


def cycles(imports: Iterable[Import], packages: Iterable[str] = PACKAGES) -> list[list[Import]]:
    """Import cycles between project modules, each as the path of imports that closes it:
    the shortest cycle through each module of every strongly connected group."""
    graph = _project_graph(imports, packages)
    found: dict[tuple[str, ...], list[Import]] = {}
    for group in _strongly_connected(graph):
        if len(group) < 2:
            continue
        for start in sorted(group):
            path = _shortest_cycle(graph, start, group)
            names = [edge.importer for edge in path]
            turn = names.index(min(names))
            key = tuple(names[turn:] + names[:turn])
            found.setdefault(key, path[turn:] + path[:turn])
    return [found[key] for key in sorted(found)]


def tangles(imports: Iterable[Import], packages: Iterable[str] = PACKAGES) -> list[list[str]]:
    """The groups of modules that import one another, round about: each is one knot to cut."""
    groups = _strongly_connected(_project_graph(imports, packages))
    return sorted(sorted(group) for group in groups if len(group) > 1)


def _project_graph(
    imports: Iterable[Import], packages: Iterable[str]
) -> dict[str, dict[str, Import]]:
    """Importer -> imported project module -> one import that makes the edge."""
    packages = tuple(packages)
    graph: dict[str, dict[str, Import]] = {}
    for edge in imports:
        if not matches_any(edge.target, packages):
            continue
        known = graph.setdefault(edge.importer, {}).get(edge.target)
        # One import per pair is enough to show; prefer the module-level one.
        if known is None or (known.function_local and not edge.function_local):
            graph[edge.importer][edge.target] = edge
    return graph


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative so a long chain of imports cannot overflow the stack."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _shortest_cycle(graph: dict[str, dict[str, Import]], start: str, group: set[str]) -> list:
    """Breadth-first from `start` back to itself, inside its strongly connected group."""
    came_from: dict[str, Import] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target, edge in sorted(graph.get(node, {}).items()):
            if target not in group:
                continue
            if target == start:
                path = [edge]
                while path[0].importer != start:
                    path.insert(0, came_from[path[0].importer])
                return path
            if target not in came_from:
                came_from[target] = edge
                queue.append(target)
    raise AssertionError(f"{start} is in a cycle group but no cycle came back to it")


def describe_cycle(path: list[Import]) -> str:
    hops = "\n".join(f"    {edge.where()}" for edge in path)
    return f"  {' -> '.join([edge.importer for edge in path] + [path[0].importer])}\n{hops}"


def report(imports: list[Import]) -> str:
    """Every broken rule in words, with file:line of each offending import; empty if none."""
    sections: list[str] = []
    loops = cycles(imports)
    if loops:
        knots = "\n".join(
            f"  {len(group)} modules: {', '.join(group)}" for group in tangles(imports)
        )
        body = "\n".join(describe_cycle(path) for path in loops)
        sections.append(
            f"import cycles ({len(loops)}): break them\n"
            f"modules that import one another:\n{knots}\nthe shortest cycle through each:\n{body}"
        )
    reasons = {rule.name: rule.reason for rule in RULES}
    for name, edges in rule_violations(imports).items():
        lines = "\n".join(f"  {edge.where()}" for edge in edges)
        sections.append(f"{name} ({len(edges)}): {reasons[name]}\n{lines}")
    silent = uncommented_local_imports(imports)
    if silent:
        lines = "\n".join(f"  {edge.where()}" for edge in silent)
        sections.append(
            f"function-local project imports without a comment saying why ({len(silent)}): "
            f"import at module level, or say which cycle the import breaks\n{lines}"
        )
    return "\n\n".join(sections)


# --- the project ----------------------------------------------------------------------


def test_the_project_keeps_its_import_rules() -> None:
    modules = project_modules(ROOT)
    problems = report(read_imports(ROOT, modules))
    assert not problems, "\n" + problems


def test_every_part_of_the_project_is_read() -> None:
    modules = project_modules(ROOT)
    assert {"agents.runtime.loop", "tenants.models", "beamclaw.settings"} <= set(modules)
    assert not [name for name in modules if ".migrations" in name]


# --- the checker, on made-up graphs -------------------------------------------------------


def edge(importer: str, target: str, *, local: bool = False, commented: bool = True) -> Import:
    path = importer.replace(".", "/") + ".py"
    return Import(importer, target, path, 7, function_local=local, commented=commented)


@pytest.mark.parametrize(
    ("importer", "target", "rule"),
    [
        ("tenants.queues", "agents.runtime.loop", "tenants-below-agents"),
        ("agents.runtime.loop", "rest_framework.exceptions", "runtime-without-drf"),
        ("agents.runtime.subagents", "beamclaw.api.errors", "runtime-without-drf"),
        ("agents.runtime.reaper", "beamclaw.celery", "runtime-celery-through-dispatch"),
        ("agents.runtime.loop", "agents.tasks", "runtime-celery-through-dispatch"),
        ("agents.runtime.loop", "fleet.drain", "nothing-imports-fleet"),
        ("tenants.queues", "fleet.shards", "nothing-imports-fleet"),
        ("beamclaw.celery", "fleet.signals", "nothing-imports-fleet"),
        ("agents.providers.openai", "agents.models", "providers-without-models"),
        ("agents.providers.base", "tenants.models", "providers-without-models"),
        ("tenants.auth", "rest_framework.authentication", "drf-only-in-api"),
        ("agents.services", "rest_framework.exceptions", "drf-only-in-api"),
        ("beamclaw.settings", "rest_framework", "drf-only-in-api"),
        ("beamclaw.urls", "drf_spectacular.views", "drf-only-in-api"),
        ("beamclaw.workers", "tenants.queues", "plumbing-imports-no-app"),
        ("beamclaw.api.ops", "agents.capacity", "plumbing-imports-no-app"),
    ],
)
def test_a_forbidden_import_is_reported(importer: str, target: str, rule: str) -> None:
    found = rule_violations([edge(importer, target)])
    assert [e.importer for e in found.get(rule, [])] == [importer]
    assert rule in report([edge(importer, target)])


@pytest.mark.parametrize(
    ("importer", "target"),
    [
        ("agents.runtime.dispatch", "agents.tasks"),  # the one dispatch module
        ("agents.runtime.loop", "beamclaw.errors"),  # domain errors are not HTTP
        ("agents.api.views", "rest_framework.response"),
        ("tenants.api.auth", "rest_framework.authentication"),
        ("agents.admin", "rest_framework.exceptions"),
        ("beamclaw.api.errors", "rest_framework.views"),
        ("fleet.queues", "agents.runtime.loop"),
        ("fleet.ops", "tenants.models"),
        ("agents.runtime.loop", "tenants.limits"),
        ("agents.providers.openai", "agents.providers.base"),
        ("beamclaw.redis", "django.conf"),
    ],
)
def test_an_allowed_import_is_not_reported(importer: str, target: str) -> None:
    assert rule_violations([edge(importer, target)]) == {}


def test_plumbing_may_import_an_app_inside_a_function_only() -> None:
    local = edge("beamclaw.health", "agents.models", local=True)
    assert rule_violations([local]) == {}
    assert "plumbing-imports-no-app" in rule_violations([edge("beamclaw.health", "agents.models")])


def test_a_two_module_cycle_is_reported_as_its_path() -> None:
    imports = [
        edge("tenants.queues", "agents.runtime.loop", local=True),
        edge("agents.runtime.loop", "tenants.queues"),
        edge("agents.runtime.loop", "django.conf"),
    ]
    [path] = cycles(imports)
    assert [e.importer for e in path] == ["agents.runtime.loop", "tenants.queues"]
    assert "agents.runtime.loop -> tenants.queues -> agents.runtime.loop" in report(imports)


def test_each_cycle_of_a_tangle_is_reported_once() -> None:
    imports = [
        edge("a.one", "a.two"),
        edge("a.two", "a.three"),
        edge("a.three", "a.one"),
        edge("a.two", "a.one", local=True),
        edge("a.three", "a.four"),  # leads out of the tangle: no cycle
    ]
    found = [[e.importer for e in path] for path in cycles(imports, packages=("a",))]
    assert found == [["a.one", "a.two"], ["a.one", "a.two", "a.three"]]


def test_a_graph_without_cycles_has_none() -> None:
    imports = [edge("a.one", "a.two"), edge("a.two", "a.three"), edge("a.one", "a.three")]
    assert cycles(imports, packages=("a",)) == []
    assert tangles(imports, packages=("a",)) == []


def test_modules_that_import_one_another_are_one_tangle() -> None:
    imports = [edge("a.one", "a.two"), edge("a.two", "a.three"), edge("a.three", "a.one")]
    imports += [edge("a.four", "a.five"), edge("a.five", "a.four", local=True)]
    assert tangles(imports, packages=("a",)) == [
        ["a.five", "a.four"],
        ["a.one", "a.three", "a.two"],
    ]


def test_a_function_local_import_without_a_comment_is_reported() -> None:
    silent = edge("agents.services", "agents.runtime.loop", local=True, commented=False)
    explained = edge("agents.services", "agents.selectors", local=True, commented=True)
    library = edge("agents.services", "yaml", local=True, commented=False)
    assert uncommented_local_imports([silent, explained, library]) == [silent]
    assert "agents/services.py:7" in report([silent])


# --- the reader, on a made-up tree --------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_reader_resolves_relative_and_local_imports(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "agents/__init__.py": "",
            "agents/models.py": "",
            "agents/runtime/__init__.py": "from .loop import run\n",
            "agents/runtime/events.py": "",
            "agents/runtime/loop.py": (
                "from typing import TYPE_CHECKING\n"
                "from . import events\n"
                "from ..models import Turn\n"
                "import rest_framework.exceptions\n"
                "if TYPE_CHECKING:\n"
                "    from tenants.models import Tenant\n"
                "def run():\n"
                "    # the services import this module\n"
                "    from agents.services import submit\n"
                "    from agents import models\n"
                "    x = 1\n"
                "    from agents.runtime import events\n"
                "    try:\n"
                "        from agents.models import Turn  # the models import the runtime\n"
                "    except ImportError:\n"
                "        pass\n"
                "    from agents import runtime  # noqa: F401\n"
                "    from agents import models  # noqa: F401 - the receivers connect\n"
            ),
            "agents/migrations/0001_initial.py": "from agents.runtime import loop\n",
        },
    )
    modules = project_modules(tmp_path, packages=("agents", "tenants"))
    assert set(modules) == {
        "agents",
        "agents.models",
        "agents.runtime",
        "agents.runtime.events",
        "agents.runtime.loop",
    }
    found = {
        (e.importer, e.target, e.line, e.function_local, e.commented)
        for e in read_imports(tmp_path, modules)
    }
    assert found == {
        ("agents.runtime", "agents.runtime.loop", 1, False, False),
        ("agents.runtime.loop", "typing", 1, False, False),
        ("agents.runtime.loop", "agents.runtime.events", 2, False, False),
        ("agents.runtime.loop", "agents.models", 3, False, False),
        ("agents.runtime.loop", "rest_framework.exceptions", 4, False, False),
        ("agents.runtime.loop", "agents.services", 9, True, True),
        ("agents.runtime.loop", "agents.models", 10, True, True),
        ("agents.runtime.loop", "agents.runtime.events", 12, True, False),
        ("agents.runtime.loop", "agents.models", 14, True, True),
        # A linter's marker is not a reason.
        ("agents.runtime.loop", "agents.runtime", 17, True, False),
        ("agents.runtime.loop", "agents.models", 18, True, True),
    }

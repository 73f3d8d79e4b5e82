"""Layering (DESIGN.md "Shape of the code", STYLE.md C2): imports only point down, and never loop.

Every module under ``src/celeriac`` is parsed with :mod:`ast`. Layers, bottom up:

1. ``protocol`` and ``errors``
2. ``brokers`` and ``store`` (the key-value store sits beside the brokers it shares files
   and connections with)
3. the producer side, in four ordered sub-layers:

   a. vocabulary: ``states``, ``einfo``, ``context``, ``hooks``, and Celery's paths that need
      nothing above them: ``exceptions``, ``schedules``, ``utils`` (with ``_compat``, their
      table of the names celeriac lacks)
   b. services: ``routing``, ``config``, ``results`` (and Celery's path to them, ``result``),
      ``fixups`` (framework integrations)
   c. sending: ``task``, ``sending``, ``canvas``, and ``signals`` (which the producer sends too)
   d. the app: ``app``, ``_state`` and the public package ``celeriac/__init__.py``
4. ``worker``
5. ``observe``
6. ``cli`` (and ``__main__``)

A module may import its own layer and the layers below. Exceptions and extra rules:

* imports under ``if TYPE_CHECKING:`` are annotations only and may point anywhere;
* the worker may import ``observe/records.py`` and nothing else of ``observe``
  (STYLE C2 rule 6: the worker imports only the records, to emit them);
* a broker or store module imports only ``protocol``, ``errors``, ``brokers`` and ``store``
  modules, the standard library, ``orjson`` and its own driver (STYLE C2 rule 2);
* broker drivers (redis, the AMQP client) are imported only in their broker family;
* no import cycle, inside a layer or across, except the loops declared in
  :data:`DECLARED_LOOPS` with their reason;
* no import up a layer but those in :data:`DECLARED_UPWARD`, with their reason (each closes
  a loop too, which that declaration covers).

Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import celeriac

SRC = Path(celeriac.__file__).resolve().parent

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("protocol", ("celeriac.errors", "celeriac.protocol")),
    ("brokers", ("celeriac.brokers", "celeriac.store")),
    (
        "vocabulary",
        (
            "celeriac.states",
            "celeriac.einfo",
            "celeriac.context",
            "celeriac.hooks",
            "celeriac._compat",
            "celeriac.exceptions",
            "celeriac.schedules",
            "celeriac.utils",
        ),
    ),
    (
        "services",
        ("celeriac.routing", "celeriac.config", "celeriac.results", "celeriac.result", "celeriac.fixups"),
    ),
    ("sending", ("celeriac.task", "celeriac.sending", "celeriac.canvas", "celeriac.signals")),
    ("app", ("celeriac", "celeriac._state", "celeriac.app")),
    ("worker", ("celeriac.worker",)),
    ("observe", ("celeriac.observe",)),
    ("cli", ("celeriac.cli", "celeriac.__main__")),
)
#: The import loops allowed, each edge that closes one with its reason.
DECLARED_LOOPS: dict[tuple[str, str], str] = {
    ("celeriac._state", "celeriac.app"): (
        "the default app of shared_task: an app makes itself the default when created, and a "
        "shared task defined before any app exists creates one (Celery's behaviour)"
    ),
}
#: Imports that point up a layer, each with its reason (each also closes an import loop).
DECLARED_UPWARD: dict[tuple[str, str], str] = {
    ("celeriac.app", "celeriac.cli.main"): (
        "app.start() and app.worker_main() run the command line from a user's script, as "
        "Celery's do (`if __name__ == '__main__': app.start()`); imported when called"
    ),
}
#: The only part of observe the worker may import.
WORKER_MAY_IMPORT_FROM_OBSERVE = frozenset({"celeriac.observe.records"})
#: Third-party packages every broker module may use.
BROKER_COMMON_THIRD_PARTY = frozenset({"orjson"})
#: The driver each broker family may import (a package: every module in it).
BROKER_DRIVERS: dict[str, frozenset[str]] = {
    "celeriac.brokers.redis": frozenset({"redis", "hiredis"}),
    "celeriac.brokers.amqp": frozenset({"amqp"}),
    "celeriac.store.redis": frozenset({"redis", "hiredis"}),
}
ALL_DRIVERS = frozenset().union(*BROKER_DRIVERS.values())


@dataclass(frozen=True)
class Import:
    target: str  # dotted module name
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def celeriac_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


MODULES = celeriac_modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.imports: list[Import] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # only the `if TYPE_CHECKING:` body is exempt
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append(Import(alias.name, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base_parts = self.package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            target = submodule if submodule in MODULES else base
            self.imports.append(Import(target, node.lineno))


def imports_of_source(source: str, module: str, is_package: bool = False) -> list[Import]:
    collector = _ImportCollector(module, is_package)
    collector.visit(ast.parse(source))
    return collector.imports


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    return imports_of_source(path.read_text(), module, path.name == "__init__.py")


def layer_of(module: str) -> int | None:
    """Index of the layer ``module`` belongs to (None for modules outside celeriac)."""
    if module != "celeriac" and not module.startswith("celeriac."):
        return None
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "celeriac" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def drivers_of(module: str) -> frozenset[str]:
    """The drivers ``module`` may import: its broker family's."""
    for family, drivers in BROKER_DRIVERS.items():
        if module == family or module.startswith(family + "."):
            return drivers
    return frozenset()


def top_package(name: str) -> str:
    return name.split(".", 1)[0]


def layering_violations(module: str, imports: list[Import]) -> list[str]:
    own = layer_of(module)
    assert own is not None, module
    problems = []
    for imp in imports:
        target_layer = layer_of(imp.target)
        if target_layer is None:
            continue
        if target_layer <= own:
            continue
        where = f"{module}:{imp.line} imports {imp.target}"
        if (LAYERS[own][0], LAYERS[target_layer][0]) == ("worker", "observe"):
            if imp.target not in WORKER_MAY_IMPORT_FROM_OBSERVE:
                problems.append(f"{where} (the worker may import only observe/records.py)")
        else:
            problems.append(f"{where} ({LAYERS[target_layer][0]} is above {LAYERS[own][0]})")
    return problems


def import_graph(modules: dict[str, list[Import]]) -> dict[str, set[str]]:
    """Module -> the celeriac modules it imports at run time (lazily or not)."""
    return {
        module: {imp.target for imp in imports if imp.target in modules and imp.target != module}
        for module, imports in modules.items()
    }


def _reachable(edges: dict[str, list[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen


def import_cycles(graph: dict[str, set[str]], allowed: set[tuple[str, str]] = frozenset()) -> list[list[str]]:
    """Every group of modules that import each other in a loop, each sorted; an edge in
    ``allowed`` does not count. (Modules that reach each other form one group.)"""
    edges = {module: [t for t in targets if (module, t) not in allowed] for module, targets in graph.items()}
    reach = {module: _reachable(edges, module) for module in edges}
    groups = {
        tuple(sorted({module} | {other for other in reach[module] if module in reach[other]}))
        for module in edges
        if module in reach[module]
    }
    return sorted(list(group) for group in groups)


# -- the checker itself can fail --------------------------------------------------------------


def test_checker_flags_an_upward_import_and_exempts_type_checking():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "if TYPE_CHECKING:\n"
        "    from celeriac.worker.master import Master\n"
        "if typing.TYPE_CHECKING:\n"
        "    import celeriac.cli\n"
        "else:\n"
        "    import celeriac.observe.records\n"
        "def later():\n"
        "    from celeriac.app import Celeriac\n"
    )
    imports = imports_of_source(source, "celeriac.protocol.fake")
    assert [i.target for i in imports] == ["typing", "typing", "celeriac.observe.records", "celeriac.app"]
    problems = layering_violations("celeriac.protocol.fake", imports)
    assert len(problems) == 2
    assert "celeriac.protocol.fake:8 imports celeriac.observe.records" in problems[0]
    assert "celeriac.protocol.fake:10 imports celeriac.app" in problems[1]


def test_checker_resolves_from_imports_of_submodules_and_relative_imports():
    imports = imports_of_source(
        "from celeriac import _state, config\nfrom . import message\nfrom ..errors import ProtocolError\n",
        "celeriac.protocol.validate",
    )
    assert [i.target for i in imports] == [
        "celeriac._state",
        "celeriac.config",
        "celeriac.protocol.message",
        "celeriac.errors",
    ]


def test_checker_allows_the_worker_only_observe_records():
    ok = layering_violations("celeriac.worker.child", [Import("celeriac.observe.records", 1)])
    bad = layering_violations("celeriac.worker.child", [Import("celeriac.observe.sampler", 2)])
    upward = layering_violations("celeriac.observe.records", [Import("celeriac.cli", 3)])
    assert ok == []
    assert bad == [
        "celeriac.worker.child:2 imports celeriac.observe.sampler "
        "(the worker may import only observe/records.py)"
    ]
    assert upward == ["celeriac.observe.records:3 imports celeriac.cli (cli is above observe)"]


def test_cycle_finder_finds_a_loop_made_by_a_lazy_import_inside_one_layer():
    sources = {
        "celeriac.task": "from celeriac.sending import Producer\n",
        "celeriac.sending": "def later():\n    from celeriac.canvas.chunks import Chunks\n",
        "celeriac.canvas.chunks": "import celeriac.task\n",
        "celeriac.routing": "from celeriac.errors import ConfigurationError\n",
        "celeriac.errors": "",
    }
    graph = import_graph({name: imports_of_source(text, name) for name, text in sources.items()})
    assert import_cycles(graph) == [["celeriac.canvas.chunks", "celeriac.sending", "celeriac.task"]]
    assert import_cycles(graph, {("celeriac.canvas.chunks", "celeriac.task")}) == []


def test_cycle_finder_ignores_annotations_and_reports_separate_loops_apart():
    sources = {
        "a": "import b\n",
        "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n",
        "c": "import d\n",
        "d": "import c\n",
        "e": "import f\n",
        "f": "import g\n",
        "g": "import e\n",
    }
    graph = import_graph({name: imports_of_source(text, name) for name, text in sources.items()})
    assert import_cycles(graph) == [["c", "d"], ["e", "f", "g"]]


# -- the real code ----------------------------------------------------------------------------


def test_every_module_belongs_to_a_layer():
    unplaced = [name for name in MODULES if layer_of(name) is None]
    assert unplaced == [], f"add these modules to LAYERS in {__file__}: {unplaced}"


def test_the_layers_are_all_present():
    present = {LAYERS[layer_of(name)][0] for name in MODULES}
    assert present == {name for name, _ in LAYERS}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_only(module):
    imports = [imp for imp in imports_of(module) if (module, imp.target) not in DECLARED_UPWARD]
    assert layering_violations(module, imports) == []


BROKER_MODULES = sorted(name for name in MODULES if layer_of(name) == 1)


@pytest.mark.parametrize("module", BROKER_MODULES)
def test_broker_modules_import_only_protocol_errors_their_driver_and_stdlib(module):
    allowed_third_party = BROKER_COMMON_THIRD_PARTY | drivers_of(module)
    problems = []
    for imp in imports_of(module):
        top = top_package(imp.target)
        if top == "celeriac":
            if layer_of(imp.target) not in (0, 1):
                problems.append(f"{module}:{imp.line} imports {imp.target}")
        elif top not in sys.stdlib_module_names and top not in allowed_third_party:
            problems.append(f"{module}:{imp.line} imports third-party {imp.target}")
    assert problems == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_broker_drivers_are_imported_only_in_their_broker_module(module):
    own_drivers = drivers_of(module)
    stray = [
        f"{module}:{imp.line} imports {imp.target}"
        for imp in imports_of(module)
        if top_package(imp.target) in ALL_DRIVERS - own_drivers
    ]
    assert stray == []


GRAPH = import_graph({module: imports_of(module) for module in MODULES})


def test_no_import_cycle_but_the_declared_ones():
    cycles = import_cycles(GRAPH, set(DECLARED_LOOPS) | set(DECLARED_UPWARD))
    assert cycles == [], (
        f"import cycles (break them, or declare the closing edge in DECLARED_LOOPS with why): {cycles}"
    )


@pytest.mark.parametrize(("importer", "imported"), sorted([*DECLARED_LOOPS, *DECLARED_UPWARD]))
def test_each_declared_loop_still_exists(importer, imported):
    assert imported in GRAPH[importer], (
        f"{importer} no longer imports {imported}: drop it from DECLARED_LOOPS or DECLARED_UPWARD"
    )
    assert import_cycles(GRAPH) != [], "a declared loop closes no cycle any more: drop it"

"""Layering (DESIGN.md "Shape of the code", STYLE.md C2): imports only point down.

Every module under ``src/celeriac`` is parsed with :mod:`ast`. Layers, bottom up:

1. ``protocol`` and ``errors``
2. ``brokers``
3. the producer side: ``app``, ``chunks``, ``task``, ``routing``, ``results``, ``config``,
   ``hooks``, ``_state`` and the public package ``celeriac/__init__.py``
4. ``worker``
5. ``observe``
6. ``cli`` (and ``__main__``)

A module may import its own layer and the layers below. Exceptions and extra rules:

* imports under ``if TYPE_CHECKING:`` are annotations only and may point anywhere;
* the worker may import ``observe/records.py`` and nothing else of ``observe``
  (STYLE C2 rule 6: the worker imports only the records, to emit them);
* a broker module imports only ``protocol``, ``errors``, other ``brokers`` modules,
  the standard library, ``orjson`` and its own driver (STYLE C2 rule 2);
* broker drivers (redis, the AMQP client) are imported only in their broker module.

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
    ("brokers", ("celeriac.brokers",)),
    (
        "producer",
        (
            "celeriac",
            "celeriac._state",
            "celeriac.context",
            "celeriac.app",
            "celeriac.chunks",
            "celeriac.task",
            "celeriac.routing",
            "celeriac.results",
            "celeriac.config",
            "celeriac.hooks",
        ),
    ),
    ("worker", ("celeriac.worker",)),
    ("observe", ("celeriac.observe",)),
    ("cli", ("celeriac.cli", "celeriac.cli_monitor", "celeriac.__main__")),
)
#: The only part of observe the worker may import.
WORKER_MAY_IMPORT_FROM_OBSERVE = frozenset({"celeriac.observe.records"})
#: Third-party packages every broker module may use.
BROKER_COMMON_THIRD_PARTY = frozenset({"orjson"})
#: The driver each broker module may import (add a row with each new broker module).
BROKER_DRIVERS: dict[str, frozenset[str]] = {
    "celeriac.brokers.redis.broker": frozenset({"redis", "hiredis"}),
    "celeriac.brokers.redis.connection": frozenset({"redis", "hiredis"}),
    "celeriac.brokers.amqp.broker": frozenset({"amqp"}),
    "celeriac.brokers.amqp.connection": frozenset({"amqp"}),
    "celeriac.brokers.amqp.wire": frozenset({"amqp"}),
    "celeriac.brokers.amqp.sidequeues": frozenset({"amqp"}),
    "celeriac.brokers.amqp.declarations": frozenset({"amqp"}),
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


# -- the real code ----------------------------------------------------------------------------


def test_every_module_belongs_to_a_layer():
    unplaced = [name for name in MODULES if layer_of(name) is None]
    assert unplaced == [], f"add these modules to LAYERS in {__file__}: {unplaced}"


def test_the_layers_are_all_present():
    present = {LAYERS[layer_of(name)][0] for name in MODULES}
    assert present == {name for name, _ in LAYERS}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_only(module):
    assert layering_violations(module, imports_of(module)) == []


BROKER_MODULES = sorted(name for name in MODULES if layer_of(name) == 1)


@pytest.mark.parametrize("module", BROKER_MODULES)
def test_broker_modules_import_only_protocol_errors_their_driver_and_stdlib(module):
    allowed_third_party = BROKER_COMMON_THIRD_PARTY | BROKER_DRIVERS.get(module, frozenset())
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
    own_drivers = BROKER_DRIVERS.get(module, frozenset())
    stray = [
        f"{module}:{imp.line} imports {imp.target}"
        for imp in imports_of(module)
        if top_package(imp.target) in ALL_DRIVERS - own_drivers
    ]
    assert stray == []

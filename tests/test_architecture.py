"""The shape of the code: no import cycles, imports only down through the layers, modules under 400 lines.

The import graph is read from the source with ast, so nothing is imported to check it. An import names the
deepest project module it reaches (`from firmware import tlv` is firmware.tlv); parent packages are not edges.
Layering counts every import, module level or inside a function; cycles count module-level imports only
(a function-level import runs after both modules are loaded, and `if TYPE_CHECKING:` never runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contracts", "ui", "drivers", "registry", "firmware", "hostsim", "provisioning", "forecourtcli")
MAX_LINES = 400
# Directories that hold no project modules (tests/ is exempt from the size rule, the rest is not ours).
SKIP_DIRS = {".git", ".venv", "node_modules", "build", "dist", "__pycache__", ".state", "tests"}

# Project packages each package may import (itself always). firmware imports drivers only lazily, at its
# composition root: see lazy_only.
ALLOWED = {
    "contracts": set(),
    "ui": {"contracts"},
    "drivers": {"contracts", "ui"},
    "registry": {"contracts"},
    "firmware": {"contracts", "ui"},
    "hostsim": {"contracts", "ui", "drivers", "registry", "firmware", "provisioning"},
    "provisioning": {"contracts", "ui", "drivers", "registry", "firmware", "hostsim"},
    "forecourtcli": set(PACKAGES),
}
# Exceptions to ALLOWED, each an importer prefix and the module it may reach.
# The registry talks MQTT through the same link as the terminal, and derives each PIN pad's DUKPT initial key
# (key injection) with the same pure AES DUKPT code, and tells systemd it is ready (sd_notify, no I/O else).
ALLOWED_MODULES = {("registry", "drivers.mqtt"), ("registry", "drivers.pinpad.dukpt_aes"),
                   ("registry", "drivers.systemd")}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    module_level: bool      # not inside a function
    runtime: bool           # not under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        where = "" if self.module_level else " (in a function)"
        return f"{self.importer}:{self.line} imports {self.target}{where}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_sources(root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    """Module name -> (source, is a package) of every module in the project's packages."""
    sources: dict[str, tuple[str, bool]] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if SKIP_DIRS.isdisjoint(path.relative_to(root).parts):
                source = path.read_text(encoding="utf-8")
                sources[module_name(path, root)] = (source, path.name == "__init__.py")
    return sources


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool, runtime: bool) -> Iterable[tuple[ast.AST, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, in_function, runtime
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, in_function, False
                yield from _walk(stmt, in_function, False)
            for stmt in child.orelse:
                yield stmt, in_function, runtime
                yield from _walk(stmt, in_function, runtime)
        else:
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from _walk(child, nested, runtime)


def _deepest(name: str, modules: Mapping[str, object]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def imports_of(name: str, source: str, is_package: bool, modules: Mapping[str, object]) -> list[Import]:
    """The project modules one module imports; third-party and standard-library imports are left out."""
    found = []
    package = name if is_package else name.rpartition(".")[0]
    for node, in_function, runtime in _walk(ast.parse(source, filename=name), False, True):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        for target in targets:
            module = _deepest(target, modules)
            if module is not None and module != name:
                found.append(Import(name, module, getattr(node, "lineno", 0), not in_function, runtime))
    return found


def all_imports(sources: Mapping[str, tuple[str, bool]]) -> list[Import]:
    return [imp for name, (source, is_package) in sources.items()
            for imp in imports_of(name, source, is_package, sources)]


def find_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per strongly connected group of modules, by module-level imports."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.module_level and imp.runtime:
            graph.setdefault(imp.importer, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:      # Tarjan; recursion depth is bounded by the module count
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: set[str], graph: Mapping[str, set[str]]) -> list[str]:
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:             # breadth first: the shortest way back to start
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                frontier.append(nxt)
    raise AssertionError(f"no cycle through {start}")


def lazy_only(imp: Import) -> bool:
    """firmware's composition root (firmware/terminal*) builds the drivers inside functions."""
    return (imp.importer.split(".")[0] == "firmware" and imp.target.split(".")[0] == "drivers"
            and imp.importer.startswith("firmware.terminal") and not imp.module_level)


def layer_violations(imports: Iterable[Import]) -> list[str]:
    bad = []
    for imp in imports:
        source, target = imp.importer.split(".")[0], imp.target.split(".")[0]
        if source == target or target in ALLOWED.get(source, set()) or lazy_only(imp):
            continue
        if any(imp.importer.startswith(who) and (imp.target + ".").startswith(what + ".")
               for who, what in ALLOWED_MODULES):
            continue
        bad.append(str(imp))
    return sorted(bad)


def oversized(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    """Python files outside tests/ with more than `limit` lines, as 'path: lines'."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if not SKIP_DIRS.isdisjoint(rel.parts) or any(p.startswith(".") for p in rel.parts[:-1]):
            continue
        lines = len(path.read_text(encoding="utf-8", errors="replace").splitlines())
        if lines > limit:
            found.append(f"{rel}: {lines}")
    return found


# -- the project ------------------------------------------------------------------------------------------

def test_no_import_cycles() -> None:
    cycles = find_cycles(all_imports(project_sources()))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_imports_follow_the_layers() -> None:
    bad = layer_violations(all_imports(project_sources()))
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_modules_are_under_400_lines() -> None:
    big = oversized()
    assert not big, f"modules over {MAX_LINES} lines:\n" + "\n".join(big)


def test_the_graph_sees_the_project() -> None:
    imports = all_imports(project_sources())
    assert any(imp.importer == "firmware.tlv" and imp.target == "contracts.errors" for imp in imports)
    assert {imp.importer.split(".")[0] for imp in imports} >= {"ui", "drivers", "firmware", "hostsim"}


# -- the checker itself, on made-up modules -----------------------------------------------------------------

def _sources(**modules: str) -> dict[str, tuple[str, bool]]:
    """Made-up modules: a__b="..." is module a.b; a package is named with a trailing __init."""
    out = {}
    for key, source in modules.items():
        name = key.replace("__", ".")
        is_package = name.endswith(".init")
        out[name.removesuffix(".init")] = (source, is_package)
    return out


def test_a_cycle_is_named() -> None:
    sources = _sources(firmware__a="from firmware import b\n", firmware__b="import firmware.c\n",
                       firmware__c="from firmware.a import thing\n", firmware__d="import firmware.a\n")
    assert find_cycles(all_imports(sources)) == [["firmware.a", "firmware.b", "firmware.c", "firmware.a"]]


def test_relative_imports_and_packages_make_edges() -> None:
    sources = _sources(hostsim__cards__init="from .emv import EmvCard\n",
                       hostsim__cards__emv="from . import profile\n",
                       hostsim__cards__profile="from hostsim.cards import EmvCard\n")
    assert find_cycles(all_imports(sources)) == [
        ["hostsim.cards", "hostsim.cards.emv", "hostsim.cards.profile", "hostsim.cards"]]


def test_function_level_and_type_checking_imports_make_no_cycle() -> None:
    sources = _sources(
        ui__a="import ui.b\n",
        ui__b="def f():\n    import ui.a\n",
        ui__c="from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ui.d\n",
        ui__d="import ui.c\n")
    assert find_cycles(all_imports(sources)) == []


def test_a_bad_import_is_flagged() -> None:
    sources = _sources(contracts__init="", contracts__errors="import json\n",
                       firmware__init="", firmware__sale="import contracts.errors\nimport hostsim.world\n",
                       firmware__terminal="def build():\n    from drivers import pump\n",
                       firmware__bank="def build():\n    import drivers.pump\n",
                       drivers__init="", drivers__pump="from firmware.sale import Sale\n",
                       hostsim__init="", hostsim__world="import firmware.sale\n",
                       registry__init="", registry__server="import drivers.mqtt\nimport drivers.pump\n",
                       drivers__mqtt="")
    assert layer_violations(all_imports(sources)) == [
        "drivers.pump:1 imports firmware.sale",
        "firmware.bank:2 imports drivers.pump (in a function)",
        "firmware.sale:2 imports hostsim.world",
        "registry.server:2 imports drivers.pump",
    ]


def test_an_overlong_module_is_flagged(tmp_path: Path) -> None:
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "short.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "firmware" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_long.py").write_text("x = 1\n" * 1000)
    (tmp_path / "tests" / "micropython" / "node_modules").mkdir(parents=True)
    (tmp_path / "tests" / "micropython" / "node_modules" / "big.py").write_text("x = 1\n" * 1000)
    assert oversized(tmp_path) == [f"firmware/long.py: {MAX_LINES + 1}"]

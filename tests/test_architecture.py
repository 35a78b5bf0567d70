"""The floor plan of ``executor/``, read from the code with ``ast`` (docs/design.md).

Every import, at module level, inside a function or under ``TYPE_CHECKING``, is
an arrow. The rules: no cycle; no arrow that points up the ranks below; each
outside system imported by exactly one module; a private module (``_x``) used
only inside its own folder; no CLI subcommand importing another.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "executor"

# A unit (a folder, or a module at the top) may import units of a lower rank only.
RANKS = {
    # the base every layer may use, itself in three steps
    "_version": 0,
    "errors": 0,
    "job": 0,
    "canonical": 0.1,
    "progress": 0.1,
    "paths": 0.1,
    "owner": 0.1,
    "safeio": 0.2,
    "outputs": 0.3,
    "htmlpage": 0.3,
    # one outside system or mechanism each
    "snapshot": 1,
    "host": 1,
    "runtime": 1,
    "signing": 1,
    "determinism": 1,
    "contracts": 1.5,
    # what a run is made of
    "spec": 2,
    "code": 2,
    "record": 3,
    "images": 3,
    # what is done with records and specs
    "compare": 4,
    "chain": 4.2,
    "gate": 4.3,
    "approvals": 3.5,  # below registry and export, which carry approvals along
    "registry": 4,
    "export": 4,
    "lock": 4,
    "catalog": 4.5,
    # the orchestration, and what drives it
    "runner": 5,
    "replay": 6,
    "cluster": 6,
    "pipelines": 6.5,
    "web": 6.5,
    "cli": 7,
    "__main__": 8,
    "": 8,
}
# The only module (or folder: its modules are one adapter) allowed to import each system.
EXTERNAL = {
    "docker": {"executor.runtime.docker"},
    "pynvml": {"executor.host.nvml"},
    "psutil": {"executor.host.system"},
    "sigstore": {"executor.signing.sigstore"},
    "sigstore_models": {"executor.signing.sigstore"},
    "psycopg": {"executor.catalog.postgres"},
    "pyarrow": {"executor.contracts.check"},
    "flask": {"executor.web.app"},
    "werkzeug": {"executor.cli.ui"},  # Flask's own WSGI server, to serve the app
    "sqlite3": {"executor.catalog.sqlite", "executor.snapshot.statcache"},  # two separate caches
    # the transport of the two above, for their exception types
    "requests": {"executor.runtime.docker", "executor.signing.sigstore"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every module ``name`` imports (executor modules resolved, outside ones by top name)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            if target.split(".")[0] == "executor" and subs and len(subs) == len(node.names):
                yield from subs  # `from executor import snapshot`: the submodule, not the face
            else:
                yield target
                yield from subs


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {i for i in imports(name, path, known) if i in known and i != name}
        for name, path in known.items()
    }


def unit(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_there_are_no_import_cycles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert cycles == []


def test_every_unit_has_a_rank() -> None:
    assert sorted({unit(m) for m in modules()} - set(RANKS)) == []


def test_no_import_points_up_the_ranks() -> None:
    upward = [
        f"{a} -> {b}"
        for a, targets in graph().items()
        for b in sorted(targets)
        if unit(a) != unit(b) and RANKS[unit(a)] <= RANKS[unit(b)]
    ]
    assert upward == []


def test_private_modules_are_used_only_inside_their_folder() -> None:
    leaks = [
        f"{a} -> {b}"
        for a, targets in graph().items()
        for b in sorted(targets)
        if b.rsplit(".", 1)[-1].startswith("_")
        and not b.endswith("_version")
        and not a.startswith(b.rsplit(".", 1)[0] + ".")
        and a != b.rsplit(".", 1)[0]
    ]
    assert leaks == []


def test_each_outside_system_has_one_importer() -> None:
    known = modules()
    found: dict[str, set[str]] = {system: set() for system in EXTERNAL}
    for name, path in known.items():
        for target in imports(name, path, known):
            top = target.split(".")[0]
            if top in found:
                found[top].add(name)

    def allowed(system: str, name: str) -> bool:
        return any(name == a or name.startswith(a + ".") for a in EXTERNAL[system])

    strays = {s: sorted(n for n in m if not allowed(s, n)) for s, m in found.items()}
    assert strays == {s: [] for s in EXTERNAL}


def test_no_cli_subcommand_imports_another() -> None:
    def subcommand(name: str) -> bool:
        parts = name.split(".")
        return len(parts) == 3 and parts[1] == "cli" and not parts[2].startswith("_")

    crossing = [
        f"{a} -> {b}"
        for a, targets in graph().items()
        for b in sorted(targets)
        if subcommand(a) and subcommand(b) and a != b
    ]
    assert crossing == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_a_warehouse(name: str) -> None:
    """A module over ~400 lines has usually grown a second concept: split it."""
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= 450, f"{name}: {lines} lines"

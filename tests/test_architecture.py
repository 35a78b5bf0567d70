"""The floor plan of ``executor/``, read from the code with ``ast`` (docs/design.md).

Every import, at module level, inside a function or under ``TYPE_CHECKING``, is
an arrow. The rules: no cycle; no arrow that points up the ranks below; each
outside system imported by exactly one module; a private module (``_x``) used
only inside its own folder; no CLI subcommand importing another.
"""

from __future__ import annotations

import ast
import re
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
    "metrics": 1.6,
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
    "cluster": 6.2,  # a job on a node may be a rerun (regenerate --submit)
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
    "jinja2": {"executor.htmlpage"},  # every page, served or written, from one renderer
    "markupsafe": {"executor.htmlpage"},
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


# Modules allowed past the size limit, each with why it is still one concept (none today).
LARGE: dict[str, str] = {}
SIZE_LIMIT = 450


def test_no_module_is_a_warehouse() -> None:
    """A module over ~400 lines has usually grown a second concept: split it."""
    large = {
        name: len(path.read_text().splitlines())
        for name, path in modules().items()
        if name not in LARGE
    }
    assert {n: lines for n, lines in large.items() if lines > SIZE_LIMIT} == {}


# Folders that are no Python package: shipped into the job's container as plain files.
NOT_PACKAGES = {"job"}
# Imports that may reach past a folder's face, and why.
SEAMS = {
    # a folder of its own (with its face), imported only when keyless signing or
    # verification is asked for: importing sigstore costs a tenth of a second
    "executor.signing.sigstore": "lazy",
}


def folders() -> list[Path]:
    return sorted(
        d
        for d in PACKAGE.rglob("*")
        if d.is_dir() and any(d.glob("*.py")) and d.name not in NOT_PACKAGES
    )


def face_all(folder: Path) -> set[str]:
    tree = ast.parse((folder / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def test_every_folder_has_a_face() -> None:
    """A folder's ``__init__.py`` says what it is (a docstring) and what others may use
    (``__all__``)."""
    faceless = []
    for folder in folders():
        face = folder / "__init__.py"
        if not face.is_file():
            faceless.append(f"{folder.relative_to(PACKAGE.parent)}: no __init__.py")
            continue
        tree = ast.parse(face.read_text())
        if ast.get_docstring(tree) is None or not face_all(folder):
            faceless.append(f"{face.relative_to(PACKAGE.parent)}: no docstring or no __all__")
    assert faceless == []


def _imports_from(path: Path) -> Iterator[ast.ImportFrom]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node


def test_other_folders_are_reached_only_through_their_face() -> None:
    """From outside a folder, ``from executor.record import …``, never
    ``from executor.record.reader import …``: the face is the folder's promise, its
    modules are free to change."""
    faces = {".".join(f.relative_to(PACKAGE.parent).parts): f for f in folders()}
    reaching = []
    for name, path in modules().items():
        for node in _imports_from(path):
            owner = next(
                (
                    f
                    for f in sorted(faces, key=len, reverse=True)
                    if node.module.startswith(f + ".")
                ),
                None,
            )
            if owner is None or name == owner or name.startswith(owner + "."):
                continue
            if node.module in SEAMS or any(node.module.startswith(s + ".") for s in SEAMS):
                continue
            if node.module in faces:  # a sub-folder's face, reached past its parent's
                if ".".join(node.module.split(".")[:-1]) in faces and node.module not in SEAMS:
                    reaching.append(f"{name} -> {node.module}")
                continue
            reaching.append(f"{name} -> {node.module}")
    assert reaching == []


def test_what_is_taken_from_a_face_is_in_its_all() -> None:
    faces = {".".join(f.relative_to(PACKAGE.parent).parts): f for f in folders()}
    exported = {face: face_all(folder) for face, folder in faces.items()}
    unlisted = []
    for name, path in modules().items():
        for node in _imports_from(path):
            if node.module not in faces or name == node.module:
                continue
            if name.startswith(node.module + "."):
                continue  # a module of the folder itself
            for alias in node.names:
                seam = f"{node.module}.{alias.name}" in SEAMS  # a lazily imported module
                if alias.name not in exported[node.module] and not seam:
                    unlisted.append(f"{name}: {alias.name} from {node.module}")
    assert unlisted == []


# SQL a module may hold: the catalog's, and the snapshot stat cache's own small database.
SQL_HOMES = ("executor.catalog", "executor.snapshot.statcache")
SQL = re.compile(
    r"\s*(SELECT|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET|CREATE\s+(TABLE|INDEX)|WITH\s+RECURSIVE)\b"
)


def test_no_catalog_sql_outside_the_catalog() -> None:
    """Callers ask the catalog typed questions; the SQL that answers them lives in it."""
    found = []
    for name, path in modules().items():
        if name.startswith(SQL_HOMES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and SQL.match(node.value)
            ):
                found.append(f"{name}:{node.lineno}: {node.value.strip()[:40]}")
    assert found == []


DESIGN = PACKAGE.parent / "docs" / "design.md"


@pytest.mark.parametrize("part", ["floor plan", "rank table"])
def test_the_design_document_covers_every_unit(part: str) -> None:
    """docs/design.md draws every unit in its floor plan and ranks it in its table."""
    text = DESIGN.read_text()
    plan = text.split("## The floor plan", 1)[1].split("## Direction rules", 1)[0]
    table = text.split("## Direction rules", 1)[1].split("## CLI layout", 1)[0]
    units = {unit(m) for m in modules()} - {"", "__main__"}
    if part == "floor plan":
        missing = [u for u in units if not re.search(rf"^\s+{re.escape(u)}(/|\.py)", plan, re.M)]
    else:
        missing = [u for u in units if f"`{u}`" not in table]
    assert sorted(missing) == []

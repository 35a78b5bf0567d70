"""``rexec run --check`` in the image: what would stop a job a minute in, found before it starts.

Every pin is checked (as a run does) and the image resolved; then one short helper runs
in the image, hardened like any helper, with nothing mounted: it says whether the
command's program exists there and which modules the entry script imports at its top
that the image's Python cannot find. A module that is a file or package of the code
directory is the code's, not the image's, and is not asked about.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from executor import spec
from executor.errors import InputError, RexecError
from executor.images import image_for_run
from executor.runner.container import container_user, job_argv
from executor.runner.options import RunOptions
from executor.runner.preflight import preflight
from executor.runtime import ContainerRuntime

__all__ = ["Check", "check"]

PYTHONS = ("python", "python3")
# Run in the image: argv[0] looked up as the job's PATH would, each module looked for.
_PROBE = (
    "import importlib.util, json, os, shutil, sys\n"
    "ask = json.loads(sys.argv[1])\n"
    "prog = ask['program']\n"
    "found = prog if os.path.isabs(prog) and os.access(prog, os.X_OK) else shutil.which(prog)\n"
    "missing = []\n"
    "for name in ask['modules']:\n"
    "    try:\n"
    "        if importlib.util.find_spec(name) is None: missing.append(name)\n"
    "    except (ImportError, ValueError): missing.append(name)\n"
    "print(json.dumps({'program': found, 'missing': missing}))\n"
)


@dataclass(frozen=True)
class Check:
    """What the check found: the program, the modules asked about and those missing."""

    program: str
    found: str | None
    modules: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The JSON form ``run --check --json`` prints."""
        return {
            "program": self.program,
            "found": self.found,
            "modules": list(self.modules),
            "missing": list(self.missing),
            "notes": list(self.notes),
            "ok": self.found is not None and not self.missing,
        }


def check(run_spec: spec.RunSpec, *, runtime: ContainerRuntime, options: RunOptions) -> Check:
    """Pins, image, program and imports, checked; no job container is started."""
    say = options.say
    preflight(run_spec, runtime=runtime, allow_dirty=options.allow_dirty, say=say)
    image = image_for_run(
        run_spec.image,
        runtime=runtime,
        spec_name=run_spec.name,
        say=say,
        allow_unpinned=options.allow_unpinned,
        push=None,
    )
    argv = job_argv(run_spec)
    modules, notes = _imports(run_spec, argv)
    ask = json.dumps({"program": argv[0], "modules": list(modules)})
    try:
        out = runtime.run_capture(
            image.resolved.run_ref, ["python3", "-c", _PROBE, ask], user=container_user(run_spec)
        )
        answer = json.loads(out.strip().splitlines()[-1])
    except (RexecError, ValueError, IndexError) as exc:
        raise InputError(
            f"{run_spec.source}: could not look inside the image ({exc})",
            hint="the check runs the image's python3; an image without one cannot be checked",
        ) from exc
    # the image answers: only a printable path is believed, only modules asked about count
    program = answer.get("program") if isinstance(answer, dict) else None
    found = program if isinstance(program, str) and program.isprintable() else None
    said = answer.get("missing") if isinstance(answer, dict) else None
    missing = tuple(m for m in modules if isinstance(said, list) and m in said)
    return Check(argv[0], found, modules, missing, notes)


def _imports(run_spec: spec.RunSpec, argv: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The top-level modules the entry script imports at its top (``python X.py``, or
    ``python -m pkg``), less those the code directory holds."""
    if PurePosixPath(argv[0]).name not in PYTHONS or len(argv) < 2:
        return (), ()
    if argv[1] == "-m" and len(argv) > 2:
        return (argv[2].split(".")[0],), ()
    code = run_spec.code
    if code is None or not argv[1].startswith(code.mount.rstrip("/") + "/"):
        return (), (f"{argv[1]} is not in the code directory: its imports are not read",)
    script = code.path / argv[1].removeprefix(code.mount.rstrip("/") + "/")
    try:
        tree = ast.parse(script.read_bytes(), filename=str(script))
    except (OSError, SyntaxError, ValueError) as exc:
        return (), (f"{argv[1]}: not read ({exc})",)
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    local = {script.parent, code.path}
    own = [n for n in names if not any(_is_module(d, n) for d in local)]
    return tuple(dict.fromkeys(own)), ()


def _is_module(directory: Path, name: str) -> bool:
    return (directory / f"{name}.py").is_file() or (directory / name / "__init__.py").is_file()

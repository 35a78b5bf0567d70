"""``pipeline.toml``: the stage specs of a pipeline, and the order their ``from`` links imply.

The file lists specs and nothing else; every link between stages is an
ordinary ``from = "latest:<stage>:<path>"`` input of a spec, so each stage stays
a spec ``rexec run`` accepts alone. Order is topological (stdlib ``graphlib``),
ties in the file's order; a cycle or a duplicate stage name is an error.
"""

from __future__ import annotations

import graphlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from executor import safeio, spec
from executor.errors import SpecError

__all__ = ["Pipeline", "Stage", "load_pipeline"]

PIPELINE_CAP = 1 << 20


@dataclass(frozen=True)
class Stage:
    """One stage: its spec and the stages whose outputs it reads."""

    name: str
    spec_path: Path
    run_spec: spec.RunSpec
    needs: tuple[str, ...]
    # ``pipeline run --allow-unpinned``: what was pinned at load time (the record says so)
    pins: Mapping[str, object] | None = None


@dataclass(frozen=True)
class Pipeline:
    """The stages of a ``pipeline.toml`` in the order they run."""

    name: str
    path: Path
    sha256: str
    stages: tuple[Stage, ...]


def _fail(path: Path, problem: str, hint: str) -> SpecError:
    return SpecError(f"{path}: {problem}", hint=hint)


# Reads a stage spec: spec.load, or one that pins what is unpinned first (and says what).
Loader = Callable[[Path], tuple[spec.RunSpec, Mapping[str, object] | None]]


def load_pipeline(path: Path, *, loader: Loader | None = None) -> Pipeline:
    """Read ``path`` and every spec it lists; all specs are checked before anything runs.
    ``loader``: how a stage spec is read (default: as it is, every pin in it)."""
    from executor.canonical import sha256_hex

    try:
        data = safeio.read_capped(path, cap=PIPELINE_CAP)
        doc = tomllib.loads(data.decode())
    except (OSError, safeio.UnsafeFile) as exc:
        raise _fail(path, f"cannot read the pipeline ({exc})", "pass a pipeline.toml") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _fail(path, f"not TOML ({exc})", "see docs/pipelines.md for the format") from exc
    example = 'version = 1\nstages = ["extract.toml", "train.toml"]'
    unknown = sorted(set(doc) - {"version", "name", "stages"})
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r}", f"a pipeline lists its specs:\n{example}")
    if doc.get("version") != 1:
        raise _fail(path, "version: expected 1", f"a pipeline starts:\n{example}")
    listed = doc.get("stages")
    if not isinstance(listed, list) or not listed or not all(isinstance(s, str) for s in listed):
        raise _fail(path, "stages: expected a list of spec files", example)
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not spec.NAME_RE.match(name):
        raise _fail(path, "name: use letters, digits, '.', '_' or '-'", example)
    specs: dict[str, tuple[Path, spec.RunSpec]] = {}
    pins: dict[str, Mapping[str, object] | None] = {}
    for index, rel in enumerate(listed):
        spec_path = (path.parent / rel).resolve()
        run_spec, pinned = loader(spec_path) if loader else (spec.load(spec_path), None)
        if run_spec.name in specs:
            raise _fail(
                path,
                f"stages[{index}] ({rel}): a second stage named {run_spec.name!r}",
                "stages are linked by their spec's name: give each spec its own name",
            )
        specs[run_spec.name] = (spec_path, run_spec)
        pins[run_spec.name] = pinned
    needs: dict[str, tuple[str, ...]] = {}
    for stage, (_, run_spec) in specs.items():
        found = []
        for item in run_spec.inputs:
            match = spec.FROM_RE.match(item.from_ref or "")
            if match and match.group(1) == "latest" and match.group(2) in specs:
                found.append(match.group(2))
        needs[stage] = tuple(dict.fromkeys(found))
    sorter = graphlib.TopologicalSorter(needs)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise _fail(
            path,
            f"the stages' from links form a cycle: {cycle}",
            "a stage cannot read its own downstream",
        ) from exc
    position = {stage: i for i, stage in enumerate(specs)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    stages = tuple(Stage(s, specs[s][0], specs[s][1], needs[s], pins[s]) for s in order)
    return Pipeline(name=name, path=path.resolve(), sha256=sha256_hex(data), stages=stages)

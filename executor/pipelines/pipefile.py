"""``pipeline.toml``: the stage specs of a pipeline, and the order their ``from`` links imply.

The file lists specs and nothing else; every link between stages is an
ordinary ``from = "latest:<stage>:<path>"`` input of a spec, so each stage stays
a spec ``rexec run`` accepts alone. Order is topological (stdlib ``graphlib``),
ties in the file's order; a cycle or a duplicate stage name is an error.
"""

from __future__ import annotations

import graphlib
import itertools
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    # a variant: the spec's name (``name`` is ``train[lr=0.1]``), and for each upstream
    # spec it reads ``latest:`` from, the variant of it this one reads
    base: str = ""
    binds: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    """The stages of a ``pipeline.toml`` in the order they run."""

    name: str
    path: Path
    sha256: str
    stages: tuple[Stage, ...]


def _fail(path: Path, problem: str, hint: str) -> SpecError:
    return SpecError(f"{path}: {problem}", hint=hint)


# Reads a stage spec with param overrides: spec.load, or one that pins what is unpinned
# first (and says what).
Overrides = Sequence[tuple[str, Any]]
Loader = Callable[[Path, Overrides], tuple[spec.RunSpec, Mapping[str, object] | None]]
MAX_VARIANTS = 64


def _load(path: Path, overrides: Overrides) -> tuple[spec.RunSpec, None]:
    return spec.load(path, overrides=overrides), None


def load_pipeline(path: Path, *, loader: Loader | None = None, params: Overrides = ()) -> Pipeline:
    """Read ``path`` and every spec it lists; all specs are checked before anything runs.
    ``loader``: how a stage spec is read (default: as it is, every pin in it); ``params``:
    ``STAGE.KEY`` overrides (``pipeline run --param``)."""
    from executor.canonical import sha256_hex

    try:
        data = safeio.read_capped(path, cap=PIPELINE_CAP)
        doc = tomllib.loads(data.decode())
    except (OSError, safeio.UnsafeFile) as exc:
        raise _fail(path, f"cannot read the pipeline ({exc})", "pass a pipeline.toml") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _fail(path, f"not TOML ({exc})", "see docs/pipelines.md for the format") from exc
    example = 'version = 1\nstages = ["extract.toml", "train.toml"]'
    unknown = sorted(set(doc) - {"version", "name", "stages", "variants"})
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
    load = loader or _load
    specs: dict[str, tuple[Path, spec.RunSpec]] = {}
    pins: dict[str, Mapping[str, object] | None] = {}
    for index, rel in enumerate(listed):
        spec_path = (path.parent / rel).resolve()
        run_spec, pinned = load(spec_path, ())
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
    grid = _variants(path, doc.get("variants", {}), specs)
    given = _stage_params(path, params, specs)
    stages: list[Stage] = []
    made: dict[str, list[Stage]] = {}  # spec name -> its stages (one, or one per variant)
    for base in order:
        spec_path = specs[base][0]
        ups = [made[n] for n in needs[base]]
        for own in grid.get(base, [()]):
            for chosen in itertools.product(*ups):  # a variant of each upstream it reads
                label = ", ".join(f"{k}={spec.format_value(v)}" for k, v in own)
                label += "".join(f", {u.name}" for u in chosen if u.name != u.base)
                label = label.removeprefix(", ")
                stage_name = f"{base}[{label}]" if label else base
                if own or base in given:
                    run_spec, pinned = load(spec_path, (*own, *given.get(base, ())))
                else:
                    run_spec, pinned = specs[base][1], pins[base]
                binds = {u.base: u.name for u in chosen}
                needed = tuple(u.name for u in chosen)
                made.setdefault(base, []).append(
                    Stage(stage_name, spec_path, run_spec, needed, pinned, base, binds)
                )
        stages += made[base]
    if len(stages) > MAX_VARIANTS * max(1, len(order)):
        raise _fail(path, f"{len(stages)} stage runs", "fewer variants: at most 64 a stage")
    return Pipeline(name=name, path=path.resolve(), sha256=sha256_hex(data), stages=tuple(stages))


def _variants(path: Path, raw: Any, specs: Mapping[str, Any]) -> dict[str, list[Overrides]]:
    """``[variants.STAGE] KEY = [v1, v2]`` as each stage's list of param overrides (every
    combination)."""
    example = "[variants.train]\nlr = [0.1, 0.3]"
    if not isinstance(raw, Mapping):
        raise _fail(path, "variants: expected tables of params", example)
    grid: dict[str, list[Overrides]] = {}
    for stage, table in raw.items():
        if stage not in specs:
            raise _fail(path, f"variants.{stage}: no such stage", f"stages: {', '.join(specs)}")
        if not isinstance(table, Mapping) or not all(
            isinstance(v, list) and v for v in table.values()
        ):
            raise _fail(path, f"variants.{stage}: expected KEY = [values…]", example)
        keys = sorted(table)
        values = itertools.product(*(table[k] for k in keys))
        combos: list[Overrides] = [tuple(zip(keys, v, strict=True)) for v in values]
        if len(combos) > MAX_VARIANTS:
            raise _fail(path, f"variants.{stage}: {len(combos)} combinations", "at most 64")
        grid[stage] = combos
    return grid


def _stage_params(path: Path, params: Overrides, specs: Mapping[str, Any]) -> dict[str, Overrides]:
    """``pipeline run --param STAGE.KEY=VALUE``, by stage (each of its variants takes it)."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for text_key, value in params:
        stage, _, key = text_key.partition(".")
        if stage not in specs or not key:
            stages = ", ".join(specs)
            raise _fail(path, f"--param {text_key}: expected STAGE.KEY", f"stages: {stages}")
        found.setdefault(stage, []).append((key, value))
    return {stage: tuple(items) for stage, items in found.items()}

"""``[[inputs]] from = "run:<id>:<path>"``: an earlier run's output directory as an input.

Resolved before the run, from the runs dir or the catalog: the directory is
``<record>/outputs/<path>``, and its digest is the tree the upstream record
signs for it (computed from its signed subjects, as ``outputTrees`` is), so a
spec may leave ``digest`` out. A digest the spec does give must be that one.
The record then names the upstream run and its Statement's sha256 beside the
input: a chain of Statements a verifier can walk offline, raw data to model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from executor import snapshot, spec
from executor.catalog.store import Catalog
from executor.errors import InputError, MismatchError
from executor.record.reader import RunRecord, load_record

__all__ = ["pin_from", "resolve_inputs"]


def _record(kind: str, ident: str, *, runs_dir: Path, catalog: Catalog | None) -> Path:
    if kind == "run" and (runs_dir / ident / "statement.json").is_file():
        return runs_dir / ident
    if catalog is not None:
        if kind == "run":
            rows = catalog.rows("SELECT path FROM runs WHERE run_id = ?", [ident])
        else:
            rows = catalog.rows(
                "SELECT path FROM runs WHERE name = ? AND status = 'succeeded' AND kind = 'run'"
                " ORDER BY started DESC LIMIT 1",
                [ident],
            )
        if rows and (Path(rows[0]["path"]) / "statement.json").is_file():
            return Path(rows[0]["path"])
    what = f"run {ident}" if kind == "run" else f"a succeeded run named {ident!r}"
    raise InputError(
        f"from {kind}:{ident}: no record of {what} in {runs_dir} or the catalog",
        hint="pass the --runs-dir it was written to, or `rexec catalog index` that runs dir",
    )


def _signed_tree(record: RunRecord, rel: str) -> str:
    directory = record.outputs_dir / rel
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory of run {record.run_id}'s outputs")
    prefix = rel.rstrip("/") + "/"
    digests = {n[len(prefix) :]: d for n, d in record.outputs.items() if n.startswith(prefix)}
    return snapshot.trees_of(directory, digests)[""]


def pin_from(ref: str, *, runs_dir: Path, catalog: Catalog | None) -> tuple[str, str]:
    """``rexec lock``: ``run:``/``latest:<name>:<path>`` as ``run:<id>:<path>`` (the run it
    names now) and the tree digest that run's record signs for the path."""
    match = spec.FROM_RE.match(ref)
    if match is None:
        raise InputError(f"from {ref!r}: expected run:<id>:<path> or latest:<name>:<path>")
    kind, ident, rel = match.groups()
    record = load_record(_record(kind, ident, runs_dir=runs_dir, catalog=catalog))
    return f"run:{record.run_id}:{rel}", _signed_tree(record, rel)


def resolve_inputs(
    run_spec: spec.RunSpec, *, runs_dir: Path, catalog: Catalog | None
) -> spec.RunSpec:
    """``run_spec`` with every ``from`` input's path, digest and upstream run filled in."""
    if not any(i.from_ref and not i.from_run for i in run_spec.inputs):
        return run_spec
    resolved = []
    for index, item in enumerate(run_spec.inputs):
        if item.from_ref is None or item.from_run is not None:  # a path, or resolved (replay)
            resolved.append(item)
            continue
        match = spec.FROM_RE.match(item.from_ref)
        assert match is not None  # the parser checked the form
        kind, ident, rel = match.groups()
        record = load_record(_record(kind, ident, runs_dir=runs_dir, catalog=catalog))
        digest = _signed_tree(record, rel)
        if item.digest != spec.UNRESOLVED_DIGEST and item.digest != digest:
            raise MismatchError(
                f"inputs[{index}] ({item.name}): pinned {item.digest}, but run {record.run_id} "
                f"signed {digest} for outputs/{rel}",
                hint="pin the digest the upstream record signs, or name the run you meant",
            )
        resolved.append(
            replace(
                item,
                path=record.outputs_dir / rel,
                digest=digest,
                from_run=record.run_id,
                from_statement=record.statement_sha256,
            )
        )
    return replace(run_spec, inputs=tuple(resolved))

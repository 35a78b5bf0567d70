"""What `rerun` and `replay` share: each metric before and after, judged against the
spread of the runs of the original's spec with other seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from executor.cli._render import safe
from executor.compare import MetricChange, metric_changes, series_of
from executor.errors import RexecError
from executor.record import RunRecord
from executor.signing import TrustPolicy

if TYPE_CHECKING:
    from executor import catalog


def judged_changes(
    original: RunRecord, new: RunRecord, policy: TrustPolicy | None
) -> tuple[list[MetricChange], catalog.Reference]:
    """Every metric of either record, each change judged against the seeds' spread."""
    reference = seed_reference(original, policy)
    changes = metric_changes(series_of(original), series_of(new), reference.values)
    return changes, reference


def seed_reference(record: RunRecord, policy: TrustPolicy | None) -> catalog.Reference:
    """The runs of the record's spec with other seeds, from the catalog, each verified under
    ``policy`` (best effort: no catalog, no reference, and the verdicts say so)."""
    from executor import catalog  # only once the job is done

    try:
        cat = catalog.open_catalog(create=False)
    except RexecError:
        return catalog.Reference()
    try:
        return catalog.seed_reference(cat, record, policy)
    finally:
        cat.close()


def reference_json(reference: catalog.Reference) -> dict[str, Any]:
    """Which seeds the verdicts were judged against, and how many runs did not verify."""
    return {"seeds": list(reference.seeds), "refused": reference.refused}


def print_metric_changes(out: Any, changes: Sequence[MetricChange], sides: str) -> None:
    """Each metric, before → after, with its noise verdict under a change."""
    if not changes:
        return
    out.print(f"[bold]metrics[/] ({sides})")
    for m in changes:
        out.print(f"  {safe(m.file)} {safe(m.key)}: {_side_by_side(m)}")
        if m.noise is not None:
            out.print(f"    {safe(m.noise.describe())}")


def _side_by_side(m: MetricChange) -> str:
    if m.before is None or m.after is None:
        return f"{m.before} → {m.after}"
    if m.before == m.after:
        return f"{m.before:.6g} (same)"
    return f"{m.before:.6g} → {m.after:.6g} ({m.after - m.before:+.3g})"

"""The metrics of two runs side by side: every numeric leaf of their JSON outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import safeio
from executor.canonical import strict_loads
from executor.compare.numeric import flatten


@dataclass(frozen=True)
class MetricChange:
    """One numeric leaf of a JSON metrics file, before and after."""

    file: str
    key: str
    before: float | None  # None: the key is new
    after: float | None  # None: the key is gone

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``rerun --json``."""
        return {"file": self.file, "key": self.key, "before": self.before, "after": self.after}


def metric_changes(before_dir: Path, after_dir: Path, names: Sequence[str]) -> list[MetricChange]:
    """Every numeric leaf of the ``.json`` outputs both runs have, side by side.

    What a data fix did to the metrics is the question a rerun answers, so all
    metrics are listed, changed or not; unreadable or non-JSON files are skipped.
    """
    changes: list[MetricChange] = []
    for name in sorted(names):
        if not name.endswith(".json"):
            continue
        try:
            before = _numeric_leaves(safeio.read_capped(before_dir / name))
            after = _numeric_leaves(safeio.read_capped(after_dir / name))
        except (OSError, ValueError, RecursionError, safeio.UnsafeFile):
            continue
        for key in sorted(set(before) | set(after)):
            changes.append(MetricChange(name, key, before.get(key), after.get(key)))
    return changes


def _numeric_leaves(data: bytes) -> dict[str, float]:
    leaves: dict[str, Any] = {}
    flatten(strict_loads(data), "", leaves)
    return {
        key: float(value)
        for key, value in leaves.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


@dataclass(frozen=True)
class MetricSpread:
    """One numeric leaf across runs that differ only in their seed: how much it moves."""

    file: str
    key: str
    values: tuple[float, ...]  # in run order; a run without the key is left out

    @property
    def mean(self) -> float:
        """The mean over the runs that have the key."""
        return sum(self.values) / len(self.values)

    @property
    def stdev(self) -> float:
        """The sample standard deviation (0 for a single value): the seed noise."""
        if len(self.values) < 2:
            return 0.0
        m = self.mean
        variance = sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1)
        return float(variance**0.5)

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``run --seeds --json``."""
        return {
            "file": self.file,
            "key": self.key,
            "values": list(self.values),
            "mean": self.mean,
            "stdev": self.stdev,
            "min": min(self.values),
            "max": max(self.values),
        }


def metric_spread(output_dirs: Sequence[Path]) -> list[MetricSpread]:
    """Every numeric leaf of the ``.json`` outputs of several runs, with its spread."""
    per_run: list[dict[tuple[str, str], float]] = []
    for directory in output_dirs:
        leaves: dict[tuple[str, str], float] = {}
        for path in sorted(directory.glob("*.json")):
            try:
                found = _numeric_leaves(safeio.read_capped(path))
            except (OSError, ValueError, RecursionError, safeio.UnsafeFile):
                continue
            leaves |= {(path.name, key): value for key, value in found.items()}
        per_run.append(leaves)
    keys = sorted(set().union(*per_run)) if per_run else []
    return [
        MetricSpread(file, key, tuple(run[(file, key)] for run in per_run if (file, key) in run))
        for file, key in keys
    ]

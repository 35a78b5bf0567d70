"""Is a change in a metric more than the seeds alone move it?

Runs of one spec that differ only in their seed (``rexec run --seeds N``) show how
far a metric moves by chance. A change is judged against their sample standard
deviation: within :data:`WITHIN` standard deviations it is noise. With fewer than
two such runs there is no reference, and the verdict says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WITHIN = 2.0  # standard deviations of the seeds' spread that a change may move and be noise


@dataclass(frozen=True)
class Noise:
    """One metric's change, judged against the seeds' spread."""

    change: float
    seeds: int  # how many runs with other seeds gave the reference
    stdev: float | None  # their sample standard deviation; None without two of them

    @property
    def sds(self) -> float | None:
        """The change in standard deviations of the seeds (None: no reference)."""
        if self.stdev is None:
            return None
        if self.stdev == 0:
            return 0.0 if self.change == 0 else float("inf")
        return abs(self.change) / self.stdev

    @property
    def verdict(self) -> str:
        """``within noise``, ``beyond noise`` or ``no seed reference``."""
        if self.sds is None:
            return "no seed reference"
        return "within noise" if self.sds <= WITHIN else "beyond noise"

    def describe(self) -> str:
        """``1.0 sd of 3 seeds, within noise``, or how to get a reference."""
        if self.sds is None:
            return (
                f"no seed reference ({self.seeds} run{'s' if self.seeds != 1 else ''} of this "
                "spec with other seeds; `rexec run --seeds 3` gives one)"
            )
        return f"{self.sds:.1f} sd of {self.seeds} seeds, {self.verdict}"

    def to_json(self) -> dict[str, Any]:
        """The verdict as ``rerun --json`` and ``compare --json`` give it."""
        return {
            "change": self.change,
            "seeds": self.seeds,
            "stdev": self.stdev,
            "sds": self.sds if self.sds is None or self.sds != float("inf") else None,
            "verdict": self.verdict,
        }


def noise_of(change: float, reference: Sequence[float]) -> Noise:
    """``change`` judged against the values the seeded runs gave."""
    if len(reference) < 2:
        return Noise(change, len(reference), None)
    return Noise(change, len(reference), statistics.stdev(reference))

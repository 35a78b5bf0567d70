"""Compare a run's outputs with another run's, file by file, with numeric tolerance.

Equal sha256 is the only proof of bitwise equality, so that is checked first
and decides ``identical``. When two files differ, a bare "different" tells an
auditor nothing about whether the change matters; for numeric formats
(``.npy``, ``.npz``, ``.safetensors`` and JSON metrics) we therefore read both
files and report the largest absolute and relative difference, and whether
every element lies within the tolerance the original spec declared in
``[replay] tolerance``. Only then may a difference count as
``within-tolerance``.

The readers use the standard library only (``struct``, ``zipfile``,
``ast.literal_eval`` for the ``.npy`` header), so comparing outputs needs
no numpy on the auditor's machine. Elements are compared in chunks, so memory
stays bounded for large tensors.

Tolerance semantics are numpy's ``isclose`` with the original as reference:
``|replay - original| <= atol + rtol * |original|`` for every element; NaN
equals NaN only at the same position; infinities must match exactly.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from executor import safeio
from executor.compare.numeric import (
    NotNumeric,
    NumericDiff,
    numeric_diff,
)
from executor.outputs import is_subject_name
from executor.spec import Tolerance

IDENTICAL = "identical"
WITHIN_TOLERANCE = "within-tolerance"
DIFFERENT = "different"
MISSING = "missing"
EXTRA = "extra"
VOLATILE = "volatile"  # differs, is missing or new, and the spec declared it volatile
NUMERIC_SUFFIXES = (".npy", ".npz", ".safetensors", ".json")


@dataclass(frozen=True)
class FileComparison:
    """How one output compares between two runs, and, for numbers, by how much."""

    name: str
    status: str  # identical | within-tolerance | different | missing | extra
    original_sha256: str | None
    replay_sha256: str | None
    numeric: NumericDiff | None = None
    tolerance: Tolerance | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``diff --json`` and the replay verdict."""
        return {
            "name": self.name,
            "status": self.status,
            "original": self.original_sha256,
            "replay": self.replay_sha256,
            "numeric": self.numeric.to_json() if self.numeric else None,
            "tolerance": None
            if self.tolerance is None
            else {
                "pattern": self.tolerance.pattern,
                "rtol": self.tolerance.rtol,
                "atol": self.tolerance.atol,
            },
            "note": self.note,
        }


@dataclass(frozen=True)
class OutputComparison:
    """Every output of two runs compared: the basis of a replay verdict."""

    files: tuple[FileComparison, ...]

    def named(self, status: str) -> list[str]:
        """The names of the files with ``status``."""
        return [f.name for f in self.files if f.status == status]

    @property
    def bitwise(self) -> bool:
        """True when every output is bit-identical (or declared volatile) and none is
        missing or extra."""
        return all(f.status in (IDENTICAL, VOLATILE) for f in self.files)

    @property
    def within_tolerance(self) -> bool:
        """True when every difference lies within its tolerance."""
        return all(f.status in (IDENTICAL, VOLATILE, WITHIN_TOLERANCE) for f in self.files)

    def to_json(self) -> list[dict[str, Any]]:
        """The JSON form: one entry per file."""
        return [f.to_json() for f in self.files]


def _matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether a pattern matches the output's path or its file name."""
    base = PurePosixPath(name).name
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(base, p) for p in patterns)


def match_tolerance(name: str, tolerances: Sequence[Tolerance]) -> Tolerance | None:
    """The first ``[replay] tolerance`` entry whose pattern matches the output's
    path or its file name (so ``metrics.json`` also covers ``eval/metrics.json``)."""
    base = PurePosixPath(name).name
    for tol in tolerances:
        if fnmatch.fnmatchcase(name, tol.pattern) or fnmatch.fnmatchcase(base, tol.pattern):
            return tol
    return None


def compare_outputs(
    *,
    original: Mapping[str, str],
    original_dir: Path | None,
    replay: Mapping[str, str],
    replay_dir: Path,
    tolerances: Sequence[Tolerance] = (),
    volatile: Sequence[str] = (),
) -> OutputComparison:
    """Compare two output sets, given as ``name -> sha256`` (the signed subjects).

    ``original_dir`` holds the original files when they are at hand; without
    them a differing file can only be reported as ``different``.
    """
    files: list[FileComparison] = []
    for name in sorted(set(original) | set(replay)):
        before, after = original.get(name), replay.get(name)
        if before != after and _matches(name, volatile):
            note = "declared volatile ([outputs] volatile): signed, not compared"
            files.append(FileComparison(name, VOLATILE, before, after, note=note))
        elif after is None:
            files.append(FileComparison(name, MISSING, before, None))
        elif before is None:
            files.append(FileComparison(name, EXTRA, None, after))
        elif before == after:
            files.append(FileComparison(name, IDENTICAL, before, after))
        else:
            files.append(
                _compare_different(
                    name,
                    before=before,
                    after=after,
                    original_dir=original_dir,
                    replay_dir=replay_dir,
                    tolerance=match_tolerance(name, tolerances),
                )
            )
    return OutputComparison(tuple(files))


def _compare_different(
    name: str,
    *,
    before: str,
    after: str,
    original_dir: Path | None,
    replay_dir: Path,
    tolerance: Tolerance | None,
) -> FileComparison:
    result = FileComparison(name, DIFFERENT, before, after, tolerance=tolerance)
    if not name.lower().endswith(NUMERIC_SUFFIXES):
        return result
    if not is_subject_name(name):
        return _note(result, "not a safe output name, so only digests were compared")
    if original_dir is None or not os.path.lexists(original_dir / name):
        return _note(result, "the original file is not at hand, so only digests were compared")
    try:
        matches = safeio.sha256_file(original_dir / name) == before
    except (safeio.UnsafeFile, OSError):
        matches = False
    if not matches:
        return _note(result, "the original file no longer matches its signed digest")
    try:
        diff = numeric_diff(original_dir / name, replay_dir / name, tolerance=tolerance)
    except NotNumeric as exc:
        return _note(result, f"not compared numerically: {exc}")
    status = WITHIN_TOLERANCE if tolerance is not None and diff.within() else DIFFERENT
    return FileComparison(name, status, before, after, numeric=diff, tolerance=tolerance)


def _note(result: FileComparison, note: str) -> FileComparison:
    return FileComparison(
        result.name,
        result.status,
        result.original_sha256,
        result.replay_sha256,
        tolerance=result.tolerance,
        note=note,
    )

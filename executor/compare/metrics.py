"""A run's metrics read from its record, and the same metrics of several runs side by side.

Only bytes the record signs are read: the job's stdout (``logs/stdout.log``) and its
outputs, each checked against the Statement's sha256 (a file edited after signing
gives no metrics). Where the metrics are comes from the signed spec's ``metrics``
(docs/spec.md); every ``.json`` output it does not name is read as well, as before.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from executor import metrics, safeio
from executor.metrics import Noise, Series, Source
from executor.record import RunRecord, StatementView, writer

FILE_CAP = 256 << 20  # an output the spec names for its metrics
JSON_CAP = 16 << 20  # a .json output it does not name (not a file of weights)
LOG_CAP = 4 << 30  # the log is streamed: a line at a time, hashed as it goes
MAX_EVENT_FILES = 64


def series_of(record: RunRecord) -> list[Series]:
    """Every metric of a record, declared or found in its JSON outputs, by source and name."""
    declared = record.metrics
    named = {s.target for s in declared if s.kind != "stdout"}
    found: list[Series] = []
    for source in declared:
        found += _read(record, source)
    for name in sorted(record.outputs):
        if name.endswith(".json") and name not in named:
            data = _signed_output(record, name, JSON_CAP)
            found += metrics.from_json(data, name) if data is not None else []
    return sorted(found, key=lambda s: (s.source, s.name))


def _read(record: RunRecord, source: Source) -> list[Series]:
    if source.kind == "stdout":
        return _from_stdout(record, source)
    if source.kind == "file":
        data = _signed_output(record, source.target)
        reader = metrics.READERS[PurePosixPath(source.target).suffix.lower()]
        return reader(data, source.label, source) if data is not None else []
    points = metrics.Points(source.label, source)
    for name in _event_files(record, source.target):
        data = _signed_output(record, name)
        if data is not None:
            metrics.add_events(data, points)
    return points.series()


def _event_files(record: RunRecord, target: str) -> list[str]:
    """The TensorBoard event files at or under ``target`` (as the Statement names them)."""
    prefix = target.rstrip("/") + "/"
    names = [
        n
        for n in sorted(record.outputs)
        if (n == target or n.startswith(prefix))
        and PurePosixPath(n).name.startswith("events.out.tfevents.")
    ]
    return names[:MAX_EVENT_FILES]


def _signed_output(record: RunRecord, name: str, cap: int = FILE_CAP) -> bytes | None:
    digest = record.outputs.get(name)
    if digest is None:
        return None
    try:
        # the name is the record's: below outputs/, no link followed on the way
        data = safeio.read_under(record.outputs_dir, name, cap=cap)
    except (OSError, safeio.UnsafeFile):
        return None
    return data if hashlib.sha256(data).hexdigest() == digest else None


def _from_stdout(record: RunRecord, source: Source) -> list[Series]:
    digest = StatementView(record.statement).file_digests().get(writer.STDOUT_LOG)
    if digest is None:
        return []
    hasher = hashlib.sha256()
    try:
        found = metrics.from_log(_lines(record.path, writer.STDOUT_LOG, hasher), source)
    except (OSError, safeio.UnsafeFile, _TooLarge):
        return []
    return found if hasher.hexdigest() == digest else []


class _TooLarge(Exception):
    """A log past :data:`LOG_CAP`."""


def _lines(root: os.PathLike[str], relative: str, hasher: Any) -> Iterator[bytes]:
    """The lines of a file below ``root``, read once, each byte passed to ``hasher``."""
    fd = safeio.open_under(root, relative)
    with os.fdopen(fd, "rb") as f:
        total, rest = 0, b""
        while chunk := f.read(1 << 20):
            total += len(chunk)
            if total > LOG_CAP:
                raise _TooLarge
            hasher.update(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from lines
        if rest:
            yield rest


@dataclass(frozen=True)
class MetricChange:
    """One metric's value before and after (``rerun``), judged against the seeds' spread."""

    file: str  # the series' source: an output's name, or stdout
    key: str  # the metric's name
    before: float | None  # None: the metric is new
    after: float | None  # None: the metric is gone
    noise: Noise | None = None  # None: the value did not change, or has no other side

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``rerun --json``."""
        doc: dict[str, Any] = {
            "file": self.file,
            "key": self.key,
            "before": self.before,
            "after": self.after,
        }
        if self.noise is not None:
            doc["noise"] = self.noise.to_json()
        return doc


def metric_changes(
    before: Sequence[Series],
    after: Sequence[Series],
    reference: Mapping[str, Sequence[float]] | None = None,
) -> list[MetricChange]:
    """Every metric of either run, side by side; a changed one judged against
    ``reference`` (metric key → the values runs with other seeds gave) when given."""
    old = {s.key: s for s in before}
    new = {s.key: s for s in after}
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        source, name = (a or b).source, (a or b).name  # type: ignore[union-attr]
        x, y = (a.value if a else None), (b.value if b else None)
        noise = None
        if x is not None and y is not None and reference is not None and x != y:
            noise = metrics.noise_of(y - x, reference.get(key, ()))
        changes.append(MetricChange(source, name, x, y, noise))
    return changes


@dataclass(frozen=True)
class MetricSpread:
    """One metric across runs that differ only in their seed: how much it moves."""

    file: str
    key: str
    values: tuple[float, ...]  # in run order; a run without the metric is left out

    @property
    def mean(self) -> float:
        """The mean over the runs that have the metric."""
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


def metric_spread(runs: Sequence[Sequence[Series]]) -> list[MetricSpread]:
    """Each metric's summary value across several runs, with its spread."""
    per_run = [{s.key: s for s in found} for found in runs]
    keys = sorted(set().union(*per_run)) if per_run else []
    spreads = []
    for key in keys:
        present = [run[key] for run in per_run if key in run]
        spreads.append(
            MetricSpread(present[0].source, present[0].name, tuple(s.value for s in present))
        )
    return spreads

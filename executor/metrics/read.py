"""Series from the bytes a run left: its log, JSON, JSON Lines and CSV outputs.

Every byte here came from the job, so every reader is bounded: lines over
:data:`MAX_LINE` are skipped, at most :data:`MAX_SERIES` metrics of
:data:`MAX_POINTS` points each are kept, and a pattern has :data:`LOG_BUDGET`
seconds for a whole log (a backtracking pattern can take for ever on one line). What
cannot be read gives no series rather than an error:
a metric is an index into a run, never a reason to refuse it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from executor.metrics.model import NAME, STEP, VALUE, Series, Source, compile_pattern, finite

MAX_LINE = 4096  # bytes: a longer line is not a metric line
MAX_SERIES = 256
MAX_POINTS = 1_000_000
MAX_DEPTH = 32
BLOCK = 8 << 20  # bytes of log searched at once
LOG_BUDGET = 10.0  # seconds a pattern may take over one log


class Points:
    """Points gathered by metric name, in the order they came, within the caps."""

    def __init__(self, source: str, rule: Source | None = None) -> None:
        self.source, self.rule = source, rule
        self.steps: dict[str, list[float]] = {}
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, step: float | None, value: Any) -> None:
        """One point; ``step`` None: the next index. Not a finite number: nothing."""
        number = finite(value)
        if number is not None:
            self.put(name, step, number)

    def put(self, name: str, step: float | None, number: float) -> None:
        """One point whose value is a finite float already (the log's hot path)."""
        if not name or len(name) > 200:
            return
        steps = self.steps.get(name)
        if steps is None:
            if len(self.steps) >= MAX_SERIES:
                return
            steps = self.steps[name] = []
            self.values[name] = []
        if len(steps) < MAX_POINTS:
            steps.append(float(len(steps)) if step is None else step)
            self.values[name].append(number)

    def series(self) -> list[Series]:
        """What was gathered, by name, each summed up as the declaration says."""
        rule = self.rule
        return [
            Series(
                self.source,
                name,
                tuple(self.steps[name]),
                tuple(self.values[name]),
                rule.summary_of(name) if rule else "last",
            )
            for name in sorted(self.steps)
        ]


def from_log(lines: Iterable[bytes], rule: Source, *, budget: float = LOG_BUDGET) -> list[Series]:
    """The metrics a pattern finds in the job's stdout, a block of lines at a time (one
    search over each block, ``^`` and ``$`` at each line). A pattern that takes more than
    ``budget`` seconds over the whole log gives nothing: half a series would sum up wrong."""
    pattern = compile_pattern(rule.target)
    index = pattern.groupindex
    metrics = [(g, i) for g, i in index.items() if g not in (STEP, NAME, VALUE)]
    step_at, name_at, value_at = index.get(STEP), index.get(NAME), index.get(VALUE)
    points = Points(rule.label, rule)
    deadline = time.monotonic() + budget
    try:
        for block in _blocks(lines):
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            for match in pattern.finditer(block, timeout=left):
                step = _number(match.group(step_at)) if step_at else None
                if name_at and value_at:
                    value = _number(match.group(value_at))
                    if value is not None:
                        points.put(match.group(name_at) or "", step, value)
                for name, at in metrics:
                    value = _number(match.group(at))
                    if value is not None:
                        points.put(name, step, value)
    except TimeoutError:
        return []
    return points.series()


def _blocks(lines: Iterable[bytes]) -> Iterator[str]:
    """The lines as text, :data:`BLOCK` bytes or so at a time; a line over :data:`MAX_LINE`
    is left out (no metric line is that long)."""
    kept: list[bytes] = []
    size = 0
    for raw in lines:
        if len(raw) > MAX_LINE:
            continue
        kept.append(raw)
        size += len(raw) + 1
        if size >= BLOCK:
            yield b"\n".join(kept).decode("utf-8", "replace")
            kept, size = [], 0
    if kept:
        yield b"\n".join(kept).decode("utf-8", "replace")


def from_json(data: bytes, source: str, rule: Source | None = None) -> list[Series]:
    """A JSON document: each number a one-point metric (``a.b``); a list of numbers, or of
    objects (``[{"step": 1, "loss": 0.5}, …]``), a series; nested lists (weights) nothing."""
    try:
        doc = json.loads(data, parse_constant=_reject)
    except (ValueError, RecursionError):
        return []
    points = Points(source, rule)
    _walk(doc, "", points, rule.step if rule else None, 0)
    return points.series()


def from_jsonl(data: bytes, source: str, rule: Source | None = None) -> list[Series]:
    """JSON Lines: one object per line (a step), each numeric key a series."""
    points = Points(source, rule)
    step_key = rule.step if rule and rule.step else STEP
    for index, raw in enumerate(data.splitlines()):
        if len(raw) > MAX_LINE or not raw.strip():
            continue
        try:
            row = json.loads(raw, parse_constant=_reject)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, Mapping):
            _row(row, "", points, step_key, float(index))
    return points.series()


def from_csv(data: bytes, source: str, rule: Source | None = None) -> list[Series]:
    """CSV with a header: each numeric column a series, the step column (``step``) its steps."""
    points = Points(source, rule)
    step_key = rule.step if rule and rule.step else STEP
    text = io.StringIO(data.decode("utf-8", "replace"), newline="")
    try:
        for index, row in enumerate(csv.DictReader(text)):
            step = _number(row.get(step_key))
            for name, cell in row.items():
                if isinstance(name, str) and name != step_key:
                    points.add(name.strip(), float(index) if step is None else step, _number(cell))
    except csv.Error:
        pass
    return points.series()


READERS = {".json": from_json, ".jsonl": from_jsonl, ".ndjson": from_jsonl, ".csv": from_csv}


def _walk(value: Any, prefix: str, points: Points, step_key: str | None, depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _walk(item, f"{prefix}.{key}" if prefix else str(key), points, step_key, depth + 1)
    elif isinstance(value, list):
        if all(finite(v) is not None for v in value):
            for item in value:
                points.add(prefix or "value", None, item)
        elif all(isinstance(v, Mapping) for v in value):
            for index, row in enumerate(value):
                _row(row, prefix, points, step_key or STEP, float(index))
    else:
        points.add(prefix or "value", 0.0, value)


def _row(row: Mapping[str, Any], prefix: str, points: Points, step_key: str, index: float) -> None:
    step = finite(row.get(step_key))
    for key, item in row.items():
        if key != step_key:
            points.add(
                f"{prefix}.{key}" if prefix else str(key), index if step is None else step, item
            )


def _number(text: Any) -> float | None:
    """A finite number from text a job wrote (None for anything else)."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _reject(name: str) -> None:
    raise ValueError(f"{name} is not JSON")

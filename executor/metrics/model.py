"""What a spec's ``[[metrics]]`` declares, and the series read from a run.

A declaration says where a run's metrics are (patterns over its stdout, a JSON, JSON
Lines or CSV output, TensorBoard event files) and which value sums a run up (the
last, the least or the greatest). It is part of the signed spec, so anyone reading
a record reads its metrics the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

KINDS = ("stdout", "file", "tensorboard")
SUMMARIES = ("last", "min", "max")
FILE_FORMATS = (".json", ".jsonl", ".ndjson", ".csv")
# The group names a stdout pattern gives a meaning; any other named group is a metric.
STEP, NAME, VALUE = "step", "name", "value"
MAX_SOURCES = 32
MAX_PATTERN = 1000  # characters

AddError = Callable[[str, str], None]


@dataclass(frozen=True)
class Source:
    """One ``[[metrics]]`` entry: where the values are and how a run is summed up."""

    kind: str  # stdout | file | tensorboard
    target: str  # the pattern (stdout), a path under outputs/ (file, tensorboard)
    step: str | None = None  # file: the key or column holding the step
    summary: str = "last"
    summaries: Mapping[str, str] = field(default_factory=dict)  # a metric's own rule

    @property
    def label(self) -> str:
        """What the catalog files its metrics under: ``stdout`` or the path read."""
        return "stdout" if self.kind == "stdout" else self.target

    def summary_of(self, name: str) -> str:
        """The rule that sums up ``name``: its own, else the entry's."""
        return self.summaries.get(name, self.summary)

    def to_json(self) -> dict[str, Any]:
        """The form the Statement's spec records (``externalParameters.spec.metrics``)."""
        doc: dict[str, Any] = {self.kind: self.target, "summary": self.summary}
        if self.step is not None:
            doc["step"] = self.step
        if self.summaries:
            doc["summaries"] = dict(sorted(self.summaries.items()))
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Source | None:
        """A recorded entry, or None when it is not one this rexec reads (a hostile or
        newer record: its metrics are then not read, nothing else changes)."""
        errors: list[str] = []
        found = parse_sources([doc], "metrics", lambda key, msg: errors.append(msg))
        return found[0] if found and not errors else None


@dataclass(frozen=True)
class Series:
    """One metric of a run: its values by step (one point for a plain number)."""

    source: str  # Source.label, or the JSON output a number came from
    name: str
    steps: tuple[float, ...]
    values: tuple[float, ...]
    summary: str = "last"

    @property
    def value(self) -> float:
        """The run's value of this metric, as the declaration sums it up."""
        if self.summary == "min":
            return min(self.values)
        if self.summary == "max":
            return max(self.values)
        return self.values[-1]

    @property
    def is_curve(self) -> bool:
        """More than one point: something to draw over steps."""
        return len(self.values) > 1

    @property
    def key(self) -> str:
        """``SOURCE:NAME``, as the catalog's ``metrics.FILE:KEY`` names it."""
        return f"{self.source}:{self.name}"

    def numbers(self) -> dict[str, Any]:
        """What a chart of it shows, in numbers (``rexec show``, the run page's table)."""
        values = self.values
        extent = {"first": values[0], "min": min(values), "max": max(values), "last": values[-1]}
        return self.to_json() | extent

    def to_json(self) -> dict[str, Any]:
        """The summary and the size of the series (its points are drawn, not listed)."""
        return {
            "source": self.source,
            "name": self.name,
            "summary": self.summary,
            "value": self.value,
            "points": len(self.values),
            "firstStep": self.steps[0],
            "lastStep": self.steps[-1],
        }


def parse_sources(raw: Any, key: str, add: AddError) -> tuple[Source, ...]:
    """``[[metrics]]`` as TOML decodes it, every problem reported through ``add``."""
    if not isinstance(raw, list):
        add(key, "expected an array of tables ([[metrics]])")
        return ()
    if len(raw) > MAX_SOURCES:
        add(key, f"at most {MAX_SOURCES} entries")
        return ()
    found = []
    for i, item in enumerate(raw):
        source = _parse_one(item, f"{key}[{i}]", add)
        if source is not None:
            found.append(source)
    return tuple(found)


def _parse_one(item: Any, key: str, add: AddError) -> Source | None:
    if not isinstance(item, Mapping):
        add(key, "expected a table")
        return None
    kinds = [k for k in KINDS if k in item]
    unknown = sorted(set(item) - {*KINDS, "step", "summary", "summaries"})
    for name in unknown:
        add(f"{key}.{name}", "unknown key (check the spelling; see docs/spec.md)")
    if len(kinds) != 1:
        add(
            key, "set exactly one of `stdout` (a pattern), `file` or `tensorboard` (an output path)"
        )
        return None
    kind = kinds[0]
    target = item[kind]
    if not isinstance(target, str) or not target:
        add(f"{key}.{kind}", "expected a non-empty string")
        return None
    ok = _check_pattern(target, f"{key}.stdout", add) if kind == "stdout" else True
    ok = ok and (kind == "stdout" or _check_path(target, kind, f"{key}.{kind}", add))
    step = item.get("step")
    if step is not None and (kind != "file" or not isinstance(step, str) or not step):
        add(f"{key}.step", "a `file` entry's key or column holding the step, as a string")
        ok = False
    summary, summaries = _parse_summary(item.get("summary", "last"), f"{key}.summary", add)
    extra = item.get("summaries", {})
    if not isinstance(extra, Mapping) or not all(v in SUMMARIES for v in extra.values()):
        add(f"{key}.summaries", f"expected a table of metric = one of {SUMMARIES}")
        ok = False
    else:
        summaries = {**summaries, **{str(k): str(v) for k, v in extra.items()}}
    if not ok or summary is None:
        return None
    return Source(kind, target, step, summary, summaries)


def _parse_summary(raw: Any, key: str, add: AddError) -> tuple[str | None, dict[str, str]]:
    """``summary = "min"`` for every metric of the entry, or ``{val_ppl = "min"}``."""
    if isinstance(raw, str) and raw in SUMMARIES:
        return raw, {}
    if isinstance(raw, Mapping) and all(v in SUMMARIES for v in raw.values()):
        return "last", {str(k): str(v) for k, v in raw.items()}
    add(key, f"expected one of {SUMMARIES} (the run's value), or a table of metric = one of them")
    return None, {}


def compile_pattern(pattern: str) -> Any:
    """A stdout pattern, compiled by ``regex`` with ``^`` and ``$`` at each line: Python's
    syntax, and a timeout on a whole search (a pattern from a record may be hostile, and
    one line can make a backtracking pattern run for ever). Raises ValueError for a
    pattern it does not read."""
    import regex  # the one importer; only specs with a stdout pattern pay for it

    try:
        return regex.compile(pattern, regex.MULTILINE)
    except regex.error as exc:
        raise ValueError(str(exc)) from exc


def _check_pattern(pattern: str, key: str, add: AddError) -> bool:
    """A pattern that compiles, with a named group to read."""
    if len(pattern) > MAX_PATTERN:
        add(key, f"at most {MAX_PATTERN} characters")
        return False
    try:
        groups = set(compile_pattern(pattern).groupindex)
    except ValueError as exc:
        add(key, f"not a regular expression ({exc}); named groups are written (?P<loss>…)")
        return False
    if (NAME in groups) != (VALUE in groups):
        add(key, "(?P<name>…) and (?P<value>…) go together: the name of a metric and its value")
        return False
    if not groups - {STEP, NAME}:
        add(
            key,
            "name the numbers it reads: (?P<loss>[0-9.e+-]+) for a metric called loss, or "
            "(?P<name>…) with (?P<value>…); (?P<step>…) is the step",
        )
        return False
    return True


def _check_path(target: str, kind: str, key: str, add: AddError) -> bool:
    path = PurePosixPath(target)
    if path.is_absolute() or ".." in path.parts or "\0" in target or target.startswith("./"):
        add(key, f"expected a path under the outputs directory, like 'history.csv', got {target!r}")
        return False
    if kind == "file" and path.suffix.lower() not in FILE_FORMATS:
        add(
            key,
            f"expected a {', '.join(FILE_FORMATS)} file; TensorBoard event files are read "
            "with `tensorboard = DIR`",
        )
        return False
    return True


def finite(value: Any) -> float | None:
    """A number a metric may hold: finite, not a boolean; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None

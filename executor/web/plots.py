"""The charts each page shows, from the records the catalog points to.

A run's curves are read from its own record (its signed log and outputs, each
checked against its sha256); the seed band from the runs of its spec with other
seeds (``runs.seed_key``), drawn as the span of their values at each step they all
reached. Across the runs of a name, the values are the catalog's summaries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from executor import catalog
from executor.compare import series_of
from executor.errors import RexecError
from executor.metrics import Series
from executor.record import load_record
from executor.web import charts

MAX_SEEDS = 20  # runs with other seeds drawn as a band
MAX_CHARTS = 12  # curves on one page; the rest are listed as numbers
MAX_RUNS = 500  # runs of a name in a scatter or parallel coordinates
MAX_AXES = 6
Link = Callable[[str], str]


def series_at(path: str | Path) -> list[Series]:
    """The metrics of the record at ``path`` (none when it is unreadable or not there)."""
    try:
        return series_of(load_record(Path(path)))
    except (RexecError, OSError):
        return []


def run_charts(cat: catalog.Catalog, row: Mapping[str, Any], found: Sequence[Series]) -> list[str]:
    """One chart per curve of the run, over the band its spec's other seeds span."""
    curves = [s for s in found if s.is_curve][:MAX_CHARTS]
    if not curves:
        return []
    others = [
        series_at(r["path"])
        for r in _seeded(cat, row.get("seed_key"))
        if r["statement_sha256"] != row["statement_sha256"]
    ]
    drawn = []
    for series in curves:
        same = [s for found in others for s in found if s.key == series.key and s.is_curve]
        band = _band(same) if len(same) >= 2 else None
        line = charts.Line(f"seed {row.get('seed')}", series.steps, series.values)
        label = f"{len(same)} other seeds: their range" if band else ""
        drawn.append(charts.curves(_title(series), [line], band=band, band_label=label))
    return drawn


def overlay_charts(records: Sequence[tuple[str, str]]) -> list[str]:
    """Each curve the compared runs share, one line per run (run id, record path)."""
    per_run = [
        (run_id, {s.key: s for s in series_at(path) if s.is_curve}) for run_id, path in records
    ]
    keys = sorted({k for _, found in per_run for k in found})[:MAX_CHARTS]
    drawn = []
    for key in keys:
        lines = [
            charts.Line(run_id, found[key].steps, found[key].values)
            for run_id, found in per_run
            if key in found
        ]
        first = next(f[key] for _, f in per_run if key in f)
        drawn.append(charts.curves(_title(first, value=False), lines))
    return drawn


def name_charts(cat: catalog.Catalog, name: str, metric: str | None, link: Link) -> dict[str, Any]:
    """Across the runs of ``name``: each param that varies against a metric (a scatter),
    and all of them with it (parallel coordinates); what can be chosen, and what was."""
    rows = catalog.log(cat, name=name, status="succeeded", limit=MAX_RUNS)
    values = cat.values_of([r["statement_sha256"] for r in rows])
    runs = [(r, values[r["statement_sha256"]]) for r in rows]
    metrics = sorted({k for _, v in runs for k in v if k.startswith("metrics.")})
    chosen = metric if metric in metrics else (metrics[0] if metrics else None)
    params = _varying([v for _, v in runs])
    doc: dict[str, Any] = {"name": name, "metrics": metrics, "metric": chosen, "params": params}
    doc["runs"], doc["scatters"], doc["parallel"] = len(runs), [], ""
    if chosen is None:
        return doc
    label = chosen.split(":")[-1]
    for param in params[:MAX_AXES]:
        points = [
            charts.Point(r["run_id"], float(v[param]), float(v[chosen]), link(r["run_id"]))
            for r, v in runs
            if _is_number(v.get(param)) and _is_number(v.get(chosen))
        ]
        doc["scatters"].append(
            charts.scatter(
                f"{label} by {param.removeprefix('params.')}",
                param.removeprefix("params."),
                label,
                points,
            )
        )
    axes = [*params[: MAX_AXES - 1], chosen]
    lines = [(r["run_id"], [_float(v.get(a)) for a in axes], link(r["run_id"])) for r, v in runs]
    names = [a.removeprefix("params.").split(":")[-1] for a in axes]
    doc["parallel"] = charts.parallel(f"{name}: params and {label}", names, lines)
    return doc


def _seeded(cat: catalog.Catalog, seed_key: Any) -> list[dict[str, Any]]:
    return cat.seeded(seed_key, limit=MAX_SEEDS + 1) if isinstance(seed_key, str) else []


def _band(found: Sequence[Series]) -> tuple[list[float], list[float], list[float]]:
    """The least and greatest value at each step every one of ``found`` reached."""
    by_step = [dict(zip(s.steps, s.values, strict=True)) for s in found]
    steps = sorted(set.intersection(*(set(d) for d in by_step)))
    lows = [min(d[x] for d in by_step) for x in steps]
    highs = [max(d[x] for d in by_step) for x in steps]
    return steps, lows, highs


def _varying(found: Sequence[Mapping[str, Any]]) -> list[str]:
    """The numeric params whose value differs between runs (what a scatter can show)."""
    seen: dict[str, set[float]] = {}
    for values in found:
        for key, value in values.items():
            if key.startswith("params.") and _is_number(value):
                seen.setdefault(key, set()).add(float(value))
    return sorted(k for k, v in seen.items() if len(v) > 1)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _title(series: Series, *, value: bool = True) -> str:
    """The metric, where it is read from, and (one run's chart) the run's value."""
    if not value:
        return f"{series.name} ({series.source}; run value: its {series.summary})"
    return f"{series.name} ({series.source}; run value: {series.summary} {series.value:.6g})"

"""What each page shows, gathered from the catalog and the signed records: plain data,
no web framework, so the server and the one-file report render the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from executor import catalog
from executor.errors import RexecError
from executor.record.reader import load_record

__all__ = [
    "PER_PAGE",
    "compare_page",
    "ledger_page",
    "lineage_page",
    "regeneration_page",
    "run_page",
]

PER_PAGE = 50
Link = Callable[[str], str]  # run id -> the URL of its page


def ledger_page(cat: catalog.Catalog, query: Mapping[str, Any]) -> dict[str, Any]:
    """The ledger, newest first, filtered like ``rexec log``, one page at a time."""
    page = max(1, int(query.get("page") or 1))
    where = [w for w in query.get("where", []) if w]
    filters = {k: query.get(k) or None for k in ("name", "status", "input", "signer")}
    rows = catalog.log(
        cat, where=where, limit=PER_PAGE + 1, offset=(page - 1) * PER_PAGE, **filters
    )
    return {
        "runs": rows[:PER_PAGE],
        "page": page,
        "more": len(rows) > PER_PAGE,
        "filters": {**{k: v or "" for k, v in filters.items()}, "where": where},
    }


def _host(record_path: str) -> list[tuple[str, str]]:
    """Host and GPUs from the record's signed host capture (nothing when unreadable)."""
    try:
        host = load_record(Path(record_path)).host or {}
    except (RexecError, OSError):
        return []

    def brief(value: Any, drop: tuple[str, ...] = ()) -> str:
        if isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k not in drop}
        return json.dumps(value, sort_keys=True)[:600]

    rows = []
    osinfo = host.get("os") or {}
    if isinstance(osinfo, Mapping):
        rows.append(("os", f"{osinfo.get('name')} (kernel {osinfo.get('kernel')})"))
    for key, drop in (("cpu", ("flags",)), ("memory", ()), ("engine", ()), ("gpu", ())):
        if host.get(key) is not None:
            rows.append((key, brief(host[key], drop)))
    return rows


def run_page(cat: catalog.Catalog, run_id: str) -> dict[str, Any]:
    """Everything about one run: ``rexec show`` plus host, replays and approvals."""
    doc = catalog.show(cat, run_id)
    run = doc["run"]
    doc["host"] = _host(run["path"])
    doc["replays"] = cat.rows(
        "SELECT run_id, status, started, verdict FROM runs WHERE replay_of = ? ORDER BY started",
        [run_id],
    )
    who = json.loads(run["invoker"]) if run.get("invoker") else None
    doc["invoker"] = (
        f"{who.get('user')} (uid {who.get('uid')}) on {who.get('host')}"
        if isinstance(who, Mapping)
        else "not recorded"
    )
    return doc


def lineage_page(cat: catalog.Catalog, ref: str, direction: str, link: Link) -> dict[str, Any]:
    """The graph around a run or digest, as SVG whose nodes open the runs' pages."""
    graph = catalog.lineage(cat, ref, direction=direction)
    links = {r["run_id"]: link(r["run_id"]) for r in graph["runs"]}
    svg = catalog.render_lineage(graph, "svg", links=links)
    return {"graph": graph, "svg": svg, "direction": direction, "ref": ref}


def compare_page(cat: catalog.Catalog, runs: Sequence[str], *, everything: bool) -> dict[str, Any]:
    """2 to 5 runs side by side, changed rows only unless ``everything``."""
    return catalog.compare(cat, list(runs), changed_only=not everything)


def regeneration_page(cat: catalog.Catalog, regeneration: str | None) -> dict[str, Any]:
    """Every regeneration the catalog knows, or one: which run replaced which."""
    if regeneration is None:
        return {
            "regenerations": cat.rows(
                "SELECT regeneration, count(*) AS runs FROM supersedes"
                " GROUP BY regeneration ORDER BY regeneration DESC"
            )
        }
    rows = cat.rows(
        "SELECT s.run_id, s.old_run, r.name, r.status FROM supersedes s"
        " JOIN runs r ON r.run_id = s.run_id WHERE s.regeneration = ? ORDER BY r.started",
        [regeneration],
    )
    fixes = cat.rows(
        "SELECT c.run_id, c.old_digest, c.new_digest FROM corrections c"
        " JOIN supersedes s ON s.run_id = c.run_id WHERE s.regeneration = ? ORDER BY c.run_id",
        [regeneration],
    )
    return {"id": regeneration, "runs": rows, "corrections": fixes}

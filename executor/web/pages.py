"""What each page shows, gathered from the catalog and the signed records: plain data,
no web framework, so the server and the one-file report render the same thing.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from executor import catalog, safeio
from executor.compare import series_of
from executor.errors import RexecError
from executor.paths import config_dir
from executor.record import RunRecord, load_record
from executor.web import plots

__all__ = [
    "FILTERS",
    "PER_PAGE",
    "compare_page",
    "ledger_page",
    "lineage_page",
    "plots_page",
    "regeneration_page",
    "run_page",
]

PER_PAGE = 50
MAX_COLUMNS = 6  # metric and param columns the ledger shows unless ?column= names them
FILTERS = ("name", "search", "status", "input", "signer", "tag", "archived")  # the ledger's
MAX_COMPARED = catalog.MAX_COMPARED  # runs side by side: any a ledger page shows
Link = Callable[[str], str]  # run id -> the URL of its page


def ledger_page(cat: catalog.Catalog, query: Mapping[str, Any]) -> dict[str, Any]:
    """The ledger, newest first, filtered like ``rexec runs``, one page at a time."""
    page = int(query.get("page") or 1)
    where = [w for w in query.get("where", []) if w]
    filters = {k: query.get(k) or None for k in FILTERS}
    sort, ascending = query.get("sort") or None, query.get("order") == "asc"
    rows = catalog.log(
        cat,
        where=where,
        limit=PER_PAGE + 1,
        offset=(page - 1) * PER_PAGE,
        sort=sort,
        ascending=ascending,
        **filters,
    )
    shown = rows[:PER_PAGE]
    values = cat.values_of([r["statement_sha256"] for r in shown])
    notes = catalog.annotations_of(cat, [r["statement_sha256"] for r in shown])
    chosen = [c for c in query.get("column", []) if c]
    columns = chosen or _shared(list(values.values()))
    kept = [(k, v) for k, v in filters.items() if v] + [("where", w) for w in where]
    kept += [("column", c) for c in chosen]
    ordered = [("sort", sort), ("order", "asc" if ascending else "desc")] if sort else []
    names = signer_aliases()
    return {
        "runs": [
            {
                **r,
                "cells": [_cell(values[r["statement_sha256"]].get(c)) for c in columns],
                "who": _who(r.get("signer_kind"), r.get("signer"), names),
                "checked": _checked(r.get("verification")),
                "tags": [t["value"] for t in notes[r["statement_sha256"]].tags],
                "archived": notes[r["statement_sha256"]].archived is not None,
            }
            for r in shown
        ],
        "columns": [
            {
                "key": c,
                "label": c.split(":")[-1].removeprefix("params."),
                # a click sorts by it, greatest first; a second click, least first
                "sort": urlencode([*kept, ("sort", c), ("order", _next_order(c, sort, ascending))]),
                "arrow": ("▲" if ascending else "▼") if c == sort else "",
            }
            for c in columns
        ],
        "sort": sort,
        "unsorted": urlencode(kept),
        "page": page,
        "more": len(rows) > PER_PAGE,
        "filters": {**{k: v or "" for k, v in filters.items()}, "where": where},
        # every filter, each --where too, and the order, for the previous and next links
        "query": urlencode(kept + ordered),
    }


def _next_order(column: str, sort: str | None, ascending: bool) -> str:
    """A column's first click sorts greatest first; a click on the sorted one turns it."""
    return "asc" if column == sort and not ascending else "desc"


def _shared(found: list[dict[str, Any]]) -> list[str]:
    """The ledger's default columns: the metrics, then the params, that every run on the
    page has (what its runs can be compared by), at most :data:`MAX_COLUMNS`."""
    keys = [set(v) for v in found if v]
    common = set.intersection(*keys) if keys else set()
    metrics = sorted(k for k in common if k.startswith("metrics."))
    params = sorted(k for k in common if k.startswith("params."))
    return (metrics + params)[:MAX_COLUMNS]


def signer_aliases(path: Path | None = None) -> dict[str, str]:
    """Short local names for signers (``~/.config/rexec/aliases.toml``, ``[signers]``,
    a key hint or an identity = a name): shown in the ledger, marked as local and unsigned,
    never stored in the catalog or a record. None when there is no such file."""
    path = path or Path(config_dir()) / "aliases.toml"
    try:
        table = tomllib.loads(safeio.read_capped(path, cap=1 << 20).decode()).get("signers", {})
    except (OSError, safeio.UnsafeFile, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def _who(kind: Any, signer: Any, names: Mapping[str, str]) -> dict[str, str]:
    """The signer as one short word (an alias, a key's first characters, an identity
    without its issuer), the whole of it on hover."""
    if not signer:
        return {"short": "unsigned" if kind is None else "?", "title": "no signer recorded"}
    text = str(signer)
    identity = text.split(" (issuer ", 1)[0]
    if text in names or identity in names:
        alias = names.get(text) or names[identity]
        return {"short": alias, "title": f"{text} (a local alias, not signed)"}
    short = f"key {text[:8]}…" if kind == "key" else identity
    return {"short": short, "title": text}


def _checked(verification: Any) -> dict[str, str]:
    """The verification as one word (verified, failed, unchecked), its detail on hover."""
    text = str(verification or "")
    if text.startswith("verified"):
        return {"word": "verified", "title": text, "style": "ok"}
    if text.startswith("failed"):
        return {"word": "failed", "title": text, "style": "bad"}
    return {
        "word": "unchecked",
        "title": "not verified when indexed: rexec catalog index --verify checks it",
        "style": "muted",
    }


def _cell(value: Any) -> str:
    """A param or metric as the ledger shows it: a number to 6 digits, a string param
    as its text (params hold JSON), nothing for a run without it."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    try:
        text = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        text = value
    return text if isinstance(text, str) else json.dumps(text, sort_keys=True)


def _host(record: RunRecord | None) -> list[tuple[str, str]]:
    """Host and GPUs from the record's signed host capture (nothing when unreadable)."""
    host = (record.host if record is not None else None) or {}

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


def run_page(cat: catalog.Catalog, statement: str) -> dict[str, Any]:
    """Everything about one record: ``rexec show`` (its replays and approvals, each a fact
    only when verified) plus the host it ran on."""
    doc = catalog.show_record(cat, statement)
    run = doc["run"]
    record = _record(run["path"])
    found = series_of(record) if record is not None else []
    doc["host"] = _host(record)
    doc["series"] = [s.numbers() for s in found]
    doc["charts"] = plots.run_charts(cat, run, found)
    who = json.loads(run["invoker"]) if run.get("invoker") else None
    doc["invoker"] = (
        f"{who.get('user')} (uid {who.get('uid')}) on {who.get('host')}"
        if isinstance(who, Mapping)
        else "not recorded"
    )
    return doc


def _record(path: str) -> RunRecord | None:
    """The record at ``path``, its files checked as read (None: the page shows the catalog's)."""
    try:
        return load_record(Path(path))
    except (RexecError, OSError):
        return None


def lineage_page(cat: catalog.Catalog, ref: str, direction: str, link: Link) -> dict[str, Any]:
    """The graph around a run or digest, as SVG whose nodes open the runs' pages."""
    graph = catalog.lineage(cat, ref, direction=direction)
    links = {r["run_id"]: link(r["run_id"]) for r in graph["runs"]}
    svg = catalog.render_lineage(graph, "svg", links=links)
    return {"graph": graph, "svg": svg, "direction": direction, "ref": ref}


def compare_page(cat: catalog.Catalog, runs: Sequence[str], *, everything: bool) -> dict[str, Any]:
    """2 to 50 runs side by side, changed rows only unless ``everything``; their curves
    overlaid, one chart per metric."""
    doc = catalog.compare(cat, list(runs), changed_only=not everything)
    paths = [(run_id, (cat.records_of(run_id) or [{}])[0].get("path")) for run_id in doc["runs"]]
    doc["charts"] = plots.overlay_charts([(r, p) for r, p in paths if p])
    return doc


def plots_page(cat: catalog.Catalog, name: str, metric: str | None, link: Link) -> dict[str, Any]:
    """The runs of one name: a metric against each param that varies, and all at once."""
    return plots.name_charts(cat, name, metric, link)


def regeneration_page(cat: catalog.Catalog, regeneration: str | None) -> dict[str, Any]:
    """Every regeneration the catalog knows, or one: which run replaced which (a record
    that did not verify is shown as a claim)."""
    if regeneration is None:
        return {"regenerations": cat.regenerations()}
    runs, fixes = cat.regeneration(regeneration)
    stages = []
    for row in runs:
        claim = catalog.claim(row)
        stages.append(
            {
                "name": row["name"],
                "old_run": row["old_run"],
                "new_run": row["run_id"],
                "status": row["status"],
                "claim": not claim["verified"],
                "signer": claim.get("signer"),
            }
        )
    return {"id": regeneration, "stages": stages, "corrections": fixes}

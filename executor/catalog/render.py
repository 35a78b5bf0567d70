"""Lineage drawn: an indented tree, JSON, Graphviz DOT, or Mermaid (renders in GitHub/GitLab).

Names in a record are untrusted strings: every label (the tree's lines too) is
escaped (quotes, control characters, terminal escapes), and node ids are
generated, never taken from a record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["FORMATS", "render_lineage"]

FORMATS = ("tree", "json", "dot", "mermaid")


def _short(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}"


def _label(text: str) -> str:
    """A label safe inside a double-quoted DOT or Mermaid string."""
    out = text.replace("\\", "\\\\").replace('"', "'")
    return "".join(c if c.isprintable() else "?" for c in out)[:120]


def render_lineage(graph: Mapping[str, Any], fmt: str) -> str:
    """``graph`` (from :func:`executor.catalog.lineage`) in format ``fmt``."""
    if fmt == "json":
        return json.dumps(
            {"schema": "rexec.lineage/v1", **graph}, indent=2, sort_keys=True, default=str
        )
    runs = {r["run_id"]: r for r in graph["runs"]}
    order = list(runs)
    producers: dict[str, list[str]] = {}
    for out in graph["outputs"]:
        producers.setdefault(out["digest"], []).append(out["run_id"])
    edges: list[tuple[str, str, str]] = []  # (producer run, consumer run, artifact label)
    for item in graph["inputs"]:
        for producer in producers.get(item["digest"], []):
            if producer != item["run_id"]:
                edges.append((producer, item["run_id"], f"{item['name']} {_short(item['digest'])}"))
    if fmt == "tree":
        lines = []
        for run_id in order:
            run = runs[run_id]
            status, name = _label(str(run.get("status"))), _label(str(run.get("name")))
            lines.append(f"{_label(run_id)}  {status}  {name}")
            for src, dst, what in edges:
                if dst == run_id:
                    lines.append(f"  <- {_label(src)}  ({_label(what)})")
        return "\n".join(lines) + "\n"
    ids = {run_id: f"r{i}" for i, run_id in enumerate(order)}
    if fmt == "dot":
        lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
        lines += [
            f'  {ids[r]} [label="{_label(r)}\\n{_label(str(runs[r].get("status")))}"];'
            for r in order
        ]
        lines += [f'  {ids[a]} -> {ids[b]} [label="{_label(w)}"];' for a, b, w in edges]
        return "\n".join([*lines, "}"]) + "\n"
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        lines += [
            f'  {ids[r]}["{_label(r)} ({_label(str(runs[r].get("status")))})"]' for r in order
        ]
        lines += [f'  {ids[a]} -->|"{_label(w)}"| {ids[b]}' for a, b, w in edges]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}")

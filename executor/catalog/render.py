"""Lineage drawn: an indented tree, JSON, Graphviz DOT, Mermaid (renders in GitHub/GitLab),
SVG (Graphviz lays out the DOT) or one self-contained HTML page.

Names in a record are untrusted strings: every label (the tree's lines too) is
escaped (quotes, control characters, terminal escapes; HTML entities in the
page), and node ids are generated, never taken from a record. The HTML page
loads nothing (:mod:`executor.htmlpage`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from executor.catalog.graphviz import svg_of
from executor.htmlpage import render

__all__ = ["FORMATS", "render_lineage"]

FORMATS = ("tree", "json", "dot", "mermaid", "svg", "html")


def _short(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}"


def _label(text: str) -> str:
    """A label safe inside a double-quoted DOT or Mermaid string."""
    out = text.replace("\\", "\\\\").replace('"', "'")
    return "".join(c if c.isprintable() else "?" for c in out)[:120]


def render_lineage(
    graph: Mapping[str, Any], fmt: str, *, links: Mapping[str, str] | None = None
) -> str:
    """``graph`` (from :func:`executor.catalog.lineage`) in format ``fmt``; for svg,
    ``links`` maps a run id to the URL its node opens (the web view's run pages). A node
    is a record (its Statement), labelled with the run id it claims: two records that
    claim one run id are two nodes."""
    if fmt == "json":
        return json.dumps(
            {"schema": "rexec.lineage/v1", **graph}, indent=2, sort_keys=True, default=str
        )
    runs = {r["statement_sha256"]: r for r in graph["runs"]}
    order = list(runs)
    producers: dict[str, list[str]] = {}
    for out in graph["outputs"]:
        producers.setdefault(out["digest"], []).append(out["statement_sha256"])
    edges: list[tuple[str, str, str]] = []  # (producer, consumer, artifact label)
    for item in graph["inputs"]:
        for producer in producers.get(item["digest"], []):
            if producer != item["statement_sha256"]:
                what = f"{item['name']} {_short(item['digest'])}"
                edges.append((producer, item["statement_sha256"], what))
    if fmt == "tree":
        lines = []
        for key in order:
            run = runs[key]
            status, name = _label(str(run.get("status"))), _label(str(run.get("name")))
            lines.append(f"{_label(run['run_id'])}  {status}  {name}")
            for src, dst, what in edges:
                if dst == key:
                    lines.append(f"  <- {_label(runs[src]['run_id'])}  ({_label(what)})")
        return "\n".join(lines) + "\n"
    ids = {key: f"r{i}" for i, key in enumerate(order)}
    if fmt in ("dot", "svg", "html"):
        lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
        for r in order:
            run_id, status = runs[r]["run_id"], _label(str(runs[r].get("status")))
            url = f"#{ids[r]}" if fmt == "html" else (links or {}).get(run_id)
            link = f', URL="{_label(url)}", tooltip="{_label(run_id)}"' if url else ""
            lines.append(f'  {ids[r]} [label="{_label(run_id)}\\n{status}"{link}];')
        lines += [f'  {ids[a]} -> {ids[b]} [label="{_label(w)}"];' for a, b, w in edges]
        dot = "\n".join([*lines, "}"]) + "\n"
        if fmt == "dot":
            return dot
        if fmt == "svg":
            return svg_of(dot)
        return _page(graph, svg_of(dot), ids)
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        lines += [
            f'  {ids[r]}["{_label(runs[r]["run_id"])} ({_label(str(runs[r].get("status")))})"]'
            for r in order
        ]
        lines += [f'  {ids[a]} -->|"{_label(w)}"| {ids[b]}' for a, b, w in edges]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}")


def _page(graph: Mapping[str, Any], svg: str, ids: Mapping[str, str]) -> str:
    """One HTML file: the graph (each node links to its run below) and every run's rows."""
    focus = graph.get("focus") or {}
    runs = [
        {
            **run,
            "anchor": ids[run["statement_sha256"]],
            "inputs": [
                i for i in graph["inputs"] if i["statement_sha256"] == run["statement_sha256"]
            ],
            "outputs": [
                o for o in graph["outputs"] if o["statement_sha256"] == run["statement_sha256"]
            ],
        }
        for run in graph["runs"]
    ]
    doc = {"ref": f"{focus.get('kind', '')} {focus.get('value', '')}", "svg": svg, "runs": runs}
    return render("lineage.html", doc=doc, report=True, made_by="rexec lineage --format html")

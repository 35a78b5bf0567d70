"""Lineage drawn: an indented tree, JSON, Graphviz DOT, Mermaid (renders in GitHub/GitLab),
SVG (Graphviz lays out the DOT) or one self-contained HTML page.

Names in a record are untrusted strings: every label (the tree's lines too) is
escaped (quotes, control characters, terminal escapes; HTML entities in the
page), and node ids are generated, never taken from a record. The HTML page
loads nothing: its Content-Security-Policy forbids scripts and every fetch.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from executor.catalog.graphviz import svg_of

__all__ = ["FORMATS", "render_lineage"]

FORMATS = ("tree", "json", "dot", "mermaid", "svg", "html")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1d2330; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.graph svg { max-width: 100%; height: auto; border: 1px solid #d5dae3; border-radius: 6px; }
table { border-collapse: collapse; margin: .4em 0 1.2em; }
th, td { text-align: left; padding: .2em .8em .2em 0; vertical-align: top; }
code { font: 12px ui-monospace, monospace; word-break: break-all; }
section:target { background: #fff7d6; }
"""


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
    if fmt in ("dot", "svg", "html"):
        lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
        for r in order:
            link = f', URL="#{ids[r]}", tooltip="{_label(r)}"' if fmt == "html" else ""
            lines.append(
                f'  {ids[r]} [label="{_label(r)}\\n{_label(str(runs[r].get("status")))}"{link}];'
            )
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
            f'  {ids[r]}["{_label(r)} ({_label(str(runs[r].get("status")))})"]' for r in order
        ]
        lines += [f'  {ids[a]} -->|"{_label(w)}"| {ids[b]}' for a, b, w in edges]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}")


def _page(graph: Mapping[str, Any], svg: str, ids: Mapping[str, str]) -> str:
    """One HTML file: the graph (each node links to its run below) and every run's rows."""
    e = html.escape
    focus = graph.get("focus") or {}
    title = f"Lineage of {focus.get('kind', '')} {focus.get('value', '')}"
    ins: dict[str, list[Mapping[str, Any]]] = {}
    outs: dict[str, list[Mapping[str, Any]]] = {}
    for item in graph["inputs"]:
        ins.setdefault(item["run_id"], []).append(item)
    for item in graph["outputs"]:
        outs.setdefault(item["run_id"], []).append(item)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<p>Made by <code>rexec lineage --format html</code> from the run catalog. Each box is a"
        " run; an arrow is an output of one run that another read, matched by digest.</p>",
        f'<div class="graph">{svg}</div>',
    ]
    for run in graph["runs"]:
        run_id = run["run_id"]
        parts.append(f'<section id="{ids[run_id]}"><h2><code>{e(str(run_id))}</code></h2><table>')
        for key in ("name", "status", "kind", "started", "signer", "verification", "path"):
            parts.append(f"<tr><th>{key}</th><td>{e(str(run.get(key)))}</td></tr>")
        parts.append("</table><table><tr><th>input</th><th>digest</th></tr>")
        for item in ins.get(run_id, []):
            parts.append(
                f"<tr><td>{e(item['name'])}</td><td><code>{e(item['digest'])}</code></td></tr>"
            )
        parts.append("<tr><th>output</th><th>digest</th></tr>")
        for item in outs.get(run_id, []):
            parts.append(
                f"<tr><td>{e(item['name'])}</td><td><code>{e(item['digest'])}</code></td></tr>"
            )
        parts.append("</table></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

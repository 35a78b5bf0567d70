"""The side-by-side a reviewer reads after a regeneration: one self-contained HTML file.

Per stage: what was decided and why, the inputs that changed, each output
identical or different, every metric before → after with its delta. Every value
comes from records (job-controlled) and is escaped (:mod:`executor.htmlpage`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor.htmlpage import esc, page

__all__ = ["regeneration_html"]


def _short(digest: object) -> str:
    text = str(digest or "—")
    algo, sep, hexpart = text.partition(":")
    return f"{algo}:{hexpart[:12]}…" if sep else text


def _delta(before: Any, after: Any) -> str:
    if isinstance(before, int | float) and isinstance(after, int | float):
        return f"{after - before:+.4g}"
    return ""


def regeneration_html(doc: Mapping[str, Any]) -> str:
    """``doc`` is :meth:`Campaign.to_json`."""
    trigger = doc["trigger"]
    counts = ", ".join(f"{n} {k}" for k, n in sorted(doc["summary"].items()))
    parts = [
        "<p>Made by <code>rexec regenerate</code>. The corrected input "
        f"<code>{esc(_short(trigger['from']))}</code> → <code>{esc(_short(trigger['to']))}</code>"
        f" ({esc(trigger.get('path'))}); stages: {esc(counts)}.</p>",
        f"<p>Signed record of this regeneration: <code>{esc(doc.get('ledger'))}</code></p>",
    ]
    for step in doc["stages"]:
        css = {"regenerated": "changed", "pruned": "same"}.get(step["decision"], "bad")
        decision = f'<span class="{css}">{esc(step["decision"])}</span>'
        new_run = esc(step.get("runId") or "—")
        parts.append(
            f"<section><h2>{esc(step['stage'])} — {decision}</h2>"
            f"<p>{esc(step['reason'])}</p><table>"
            f"<tr><th>old run</th><td><code>{esc(step['oldRun'])}</code></td></tr>"
            f"<tr><th>new run</th><td><code>{new_run}</code></td></tr></table>"
        )
        if step["changedInputs"]:
            parts.append("<table><tr><th>input</th><th>before</th><th>after</th></tr>")
            for c in step["changedInputs"]:
                parts.append(
                    f"<tr><td>{esc(c.get('name'))}</td><td><code>{esc(_short(c.get('from')))}</code>"
                    f"</td><td><code>{esc(_short(c.get('to')))}</code></td></tr>"
                )
            parts.append("</table>")
        if step["outputs"]:
            parts.append("<table><tr><th>output</th><th></th><th>before</th><th>after</th></tr>")
            for o in step["outputs"]:
                same = (
                    '<span class="same">identical</span>'
                    if o["same"]
                    else '<span class="changed">different</span>'
                )
                parts.append(
                    f"<tr><td>{esc(o['name'])}</td><td>{same}</td><td><code>{esc(_short(o['before']))}"
                    f"</code></td><td><code>{esc(_short(o['after']))}</code></td></tr>"
                )
            parts.append("</table>")
        if step["metrics"]:
            parts.append("<table><tr><th>metric</th><th>before</th><th>after</th><th>Δ</th></tr>")
            for m in step["metrics"]:
                delta = esc(_delta(m["before"], m["after"]))
                parts.append(
                    f"<tr><td>{esc(m['file'])} {esc(m['key'])}</td><td>{esc(m['before'])}</td>"
                    f"<td>{esc(m['after'])}</td><td>{delta}</td></tr>"
                )
            parts.append("</table>")
        for line in step.get("details") or []:
            parts.append(f"<p><code>{esc(line)}</code></p>")
        parts.append("</section>")
    return page(f"Regeneration {doc['id']}", "\n".join(parts))

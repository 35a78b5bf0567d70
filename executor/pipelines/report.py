"""The side-by-side a reviewer reads after a regeneration: one self-contained HTML file.

Per stage: what was decided and why, the inputs that changed, each output identical or
different, every metric before → after with its delta. Drawn by the same template as the
web view's regeneration page (:mod:`executor.htmlpage`), which escapes every value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor.htmlpage import render

__all__ = ["regeneration_html"]


def regeneration_html(doc: Mapping[str, Any]) -> str:
    """``doc`` is :meth:`Campaign.to_json`."""
    stages = [
        {
            "name": step["stage"],
            "decision": step["decision"],
            "reason": step["reason"],
            "old_run": step["oldRun"],
            "new_run": step.get("runId"),
            "changed_inputs": step["changedInputs"],
            "outputs": step["outputs"],
            "metrics": [{**m, "delta": _delta(m["before"], m["after"])} for m in step["metrics"]],
            "details": step.get("details") or [],
        }
        for step in doc["stages"]
    ]
    page = {
        "id": doc["id"],
        "trigger": doc["trigger"],
        "summary": ", ".join(f"{n} {k}" for k, n in sorted(doc["summary"].items())),
        "ledger": doc.get("ledger"),
        "stages": stages,
    }
    return render("regeneration.html", doc=page, report=True, made_by="rexec regenerate")


def _delta(before: Any, after: Any) -> str:
    if isinstance(before, int | float) and isinstance(after, int | float):
        return f"{after - before:+.4g}"
    return ""

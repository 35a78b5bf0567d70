"""Graphviz's ``dot``, the one place rexec runs it: DOT text in, SVG out.

An optional tool (Debian package ``graphviz``): when it is missing the error
says how to install it and which formats need nothing (dot, mermaid).
"""

from __future__ import annotations

import shutil
import subprocess

from executor.errors import InfrastructureError

__all__ = ["svg_of"]

TIMEOUT_S = 120  # a graph of thousands of runs lays out in seconds; never hang a command


def svg_of(dot_text: str) -> str:
    """The SVG Graphviz lays out for ``dot_text`` (no XML prolog: fit to inline in HTML)."""
    dot = shutil.which("dot")
    if dot is None:
        raise InfrastructureError(
            "Graphviz's `dot` is not installed: --format svg and html need it",
            hint="apt-get install graphviz, or use --format dot or mermaid (no tool needed)",
        )
    try:
        done = subprocess.run(
            [dot, "-Tsvg"],
            input=dot_text.encode(),
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InfrastructureError(f"Graphviz took over {TIMEOUT_S} s to lay out") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()[:500]
        raise InfrastructureError(f"Graphviz failed (exit {done.returncode}): {reason}")
    svg = done.stdout.decode()
    return svg[svg.index("<svg") :] if "<svg" in svg else svg

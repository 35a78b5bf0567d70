"""Every HTML page rexec makes, from one set of templates: served (``rexec ui``) or
written (``rexec report``, ``rexec lineage --format html``, a regeneration's report).

One renderer, Jinja2 with autoescape on, so whatever a job or a record controls is shown
as text; the only markup passed through is the SVG Graphviz drew from escaped DOT. One
stylesheet, inlined, and one Content-Security-Policy, in the page and (served) in the
header: no script, nothing fetched. Jinja2 is imported on the first page, not before: a
command that makes no page does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["CSP", "drawn", "render"]

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "base-uri 'none'"
)
TEMPLATES = Path(__file__).resolve().parent / "templates"

_environment: Any = None


def render(template: str, **context: Any) -> str:
    """The page ``template`` draws from ``context``; ``report=True`` for a page read
    offline (no links to a server), ``url_for`` for a page a server answers with."""
    return str(_templates().get_template(template).render(**context))


def drawn(svg: str) -> str:
    """SVG rexec drew itself (a chart), every text in it escaped already: passed through
    the templates as markup. Nothing a record holds may reach here unescaped."""
    from markupsafe import Markup

    return Markup(svg)


def short(digest: object) -> str:
    """A digest as people compare it by eye: its algorithm and 12 hex digits."""
    text = str(digest or "—")
    algo, sep, hexpart = text.partition(":")
    return f"{algo}:{hexpart[:12]}…" if sep else text


def _templates() -> Any:
    global _environment
    if _environment is None:
        import jinja2
        from markupsafe import Markup

        _environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
        )
        _environment.filters["q"] = lambda text: quote(str(text), safe="")
        _environment.filters["short"] = short
        _environment.globals.update(
            csp=Markup(CSP), style=Markup((TEMPLATES / "style.css").read_text())
        )
    return _environment

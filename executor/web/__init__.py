"""The catalog for people who would rather look than read: ``rexec ui`` and ``rexec report``
(the face of ``web/``; an optional extra, ``rexec[web]``).

``pages`` gathers what each page shows (no framework), ``app`` is the Flask app
and its templates render it; :func:`report` renders the same templates into one
self-contained file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from executor.errors import InfrastructureError

__all__ = ["LOOPBACK_NAMES", "create_app", "report"]

MAX_REPORT_RUNS = 50
# The names a view bound to loopback answers to (a request naming any other is refused).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")  # an IPv6 Host is bracketed


def _flask() -> Any:
    try:
        from executor.web import app
    except ImportError as exc:
        raise InfrastructureError(
            "the web view needs Flask, which is not installed",
            hint="pip install 'rexec[web]'",
        ) from exc
    return app


def create_app(
    location: str, *, token: str | None = None, hosts: Sequence[str] | None = None
) -> Any:
    """The WSGI app of ``rexec ui`` over the catalog at ``location``, answering only
    requests whose Host is one of ``hosts`` (default: the loopback names)."""
    return _flask().create_app(location, token=token, hosts=hosts or LOOPBACK_NAMES)


def report(location: str, ref: str) -> str:
    """``rexec report``: the run (or digest), its lineage both ways and each run in it,
    as one HTML file: the stylesheet inline, links within the page, nothing fetched."""
    return str(_flask().report_html(location, ref, max_runs=MAX_REPORT_RUNS))

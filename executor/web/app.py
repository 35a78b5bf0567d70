"""``rexec ui``: the read-only web view, a Flask app (the one importer of Flask).

Flask (with Jinja2, autoescaping every value) rather than a hand-written
server: routing, escaping and a WSGI server that is maintained elsewhere. Every
page opens the catalog read-only for the request; nothing a request names is a
path: run ids and digests are looked up in the catalog, and the only files
served are the view's own stylesheet. Each response carries a strict
Content-Security-Policy (no script at all), and with an access token every
request must present it.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flask import Flask, abort, make_response, redirect, request, url_for

from executor import catalog
from executor.errors import InputError
from executor.htmlpage import CSP, render
from executor.web import artifacts, pages

__all__ = ["create_app", "report_html"]

TOKEN_COOKIE = "rexec_ui_token"


MAX_PAGE = 1_000_000


# A Host header: a name or IPv4 address, or a bracketed IPv6 address, and a port.
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::[0-9]{1,5})?", re.ASCII | re.IGNORECASE)


def host_name(header: str) -> str | None:
    """The name a ``Host`` header carries (IPv6 in brackets), lowercased; None if malformed."""
    match = _HOST.fullmatch(header)
    return match.group(1).lower() if match else None


def create_app(location: str, *, token: str | None = None, hosts: Sequence[str]) -> Flask:
    """The app over the catalog at ``location``; ``token``, when set, is required.

    ``hosts``: the only names a request's ``Host`` may carry (the port aside); any other
    is answered 400, so a page on another site cannot reach the view through DNS
    rebinding: its requests carry its own name. (Werkzeug's TRUSTED_HOSTS cannot name
    an IPv6 address, hence this check.)
    """
    app = Flask("executor.web", static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=64 << 10)
    allowed = frozenset(h.lower() for h in hosts)

    @contextmanager
    def opened() -> Iterator[catalog.Catalog]:
        cat = catalog.open_catalog(location, create=False)
        try:
            yield cat
        finally:
            cat.close()

    def run_url(run_id: str) -> str:
        return url_for("run", run_id=run_id)

    def html(template: str, **context: Any) -> str:
        return render(template, url_for=url_for, run_url=run_url, **context)

    @app.before_request
    def check_host() -> Any:
        if host_name(request.headers.get("Host", "")) not in allowed:
            abort(400)
        return None

    @app.before_request
    def check_token() -> Any:
        if token is None:
            return None
        given = request.args.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header.removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(401)
        if request.args.get("token"):  # once in the URL, then a cookie, out of the history
            response = redirect(request.path)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
            return response
        return None

    @app.after_request
    def harden(response: Any) -> Any:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(InputError)
    def bad_input(exc: InputError) -> Any:
        return make_response(html("error.html", error=exc), 404)

    @app.get("/")
    def ledger() -> Any:
        query: dict[str, Any] = {
            k: request.args.get(k, "") for k in (*pages.FILTERS, "sort", "order")
        }
        page = request.args.get("page") or "1"
        if not page.isdigit() or not 1 <= int(page) <= MAX_PAGE:
            abort(400)
        query["page"] = int(page)
        query["where"] = request.args.getlist("where")
        query["column"] = request.args.getlist("column")[:20]
        with opened() as cat:
            doc = pages.ledger_page(cat, query)
        return html("ledger.html", doc=doc)

    @app.get("/run/<path:run_id>")
    def run(run_id: str) -> Any:
        with opened() as cat:
            claims = cat.records_of(run_id)
            if not claims:
                abort(404)
            if len(claims) > 1:
                doc = catalog.show(cat, run_id)
                return html("conflict.html", doc=doc)
            doc = pages.run_page(cat, claims[0]["statement_sha256"])
        return html("run.html", doc=doc)

    @app.get("/run/<run_id>/file/<path:name>")
    def artifact(run_id: str, name: str) -> Any:
        with opened() as cat:
            claims = cat.records_of(run_id)
        if len(claims) != 1:
            abort(404)
        doc = artifacts.view(claims[0]["path"], name)
        return html("artifact.html", doc=doc, run_id=run_id)

    @app.get("/lineage/<path:ref>")
    def lineage(ref: str) -> Any:
        direction = request.args.get("direction", "both")
        if direction not in ("upstream", "downstream", "both"):
            abort(400)
        with opened() as cat:
            doc = pages.lineage_page(cat, ref, direction, run_url)
        return html("lineage.html", doc=doc)

    @app.get("/compare")
    def compare() -> Any:
        runs = [r for r in request.args.getlist("run") if r]
        if not 2 <= len(runs) <= pages.MAX_COMPARED:
            return html("compare.html", doc=None, runs=runs, max_compared=pages.MAX_COMPARED)
        with opened() as cat:
            doc = pages.compare_page(cat, runs, everything=request.args.get("all") == "1")
        return html("compare.html", doc=doc, runs=runs)

    @app.get("/plots")
    def plots() -> Any:
        name = request.args.get("name", "")
        if not name:
            abort(400)
        with opened() as cat:
            doc = pages.plots_page(cat, name, request.args.get("metric"), run_url)
        return html("plots.html", doc=doc)

    @app.get("/pipelines")
    def pipelines() -> Any:
        with opened() as cat:
            doc = {"pipelines": catalog.pipeline_runs(cat, limit=pages.PER_PAGE)}
        return html("pipelines.html", doc=doc)

    @app.get("/regenerations")
    def regenerations() -> Any:
        with opened() as cat:
            doc = pages.regeneration_page(cat, None)
        return html("regenerations.html", doc=doc)

    @app.get("/regeneration/<path:regeneration>")
    def regeneration(regeneration: str) -> Any:
        with opened() as cat:
            doc = pages.regeneration_page(cat, regeneration)
        if not doc["stages"]:
            abort(404)
        return html("regeneration.html", doc=doc)

    return app


def report_html(location: str, ref: str, *, max_runs: int) -> str:
    """The report page: the same templates as the server, rendered once, links as anchors."""
    cat = catalog.open_catalog(location, create=False)
    try:

        def anchor(run_id: str) -> str:
            return f"#run-{run_id}"

        lineage = pages.lineage_page(cat, ref, "both", anchor)
        records = [r["statement_sha256"] for r in lineage["graph"]["runs"]][:max_runs]
        docs = [pages.run_page(cat, statement) for statement in records]
        return render(
            "report.html",
            ref=ref,
            lineage=lineage,
            docs=docs,
            run_url=anchor,
            report=True,
            made_by="rexec report",
        )
    finally:
        cat.close()

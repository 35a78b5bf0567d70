"""``rexec ui``: the catalog as read-only web pages, served."""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import sys
from pathlib import Path

from executor import catalog, safeio
from executor.cli._catalog import add_catalog_option
from executor.errors import InfrastructureError, InputError

UI_EPILOG = """\
examples:
  rexec ui                                   http://127.0.0.1:8765/ over your catalog
  rexec ui --catalog postgresql://rexec@db/rexec --port 9000
  rexec ui --host 0.0.0.0 --token-file ~/.config/rexec/ui-token     others may connect

Read-only: pages for the run ledger (filters, pages), each run (inputs and who
produced them, outputs, params, metrics, host, signer, verification, replays),
lineage as a clickable graph, a comparison of 2-5 runs and regenerations. It
binds to 127.0.0.1; any other address needs --host and prints a warning, and
then an access token is made for you (or read with --token-file) unless --no-token.
A request whose Host header names another host is refused (400), so a web page
elsewhere cannot read the view through DNS rebinding; --allow-host adds a name.
Needs `pip install 'rexec[web]'` (Flask) and Graphviz for the lineage graph.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec ui`` to the parser."""
    p = sub.add_parser(
        "ui",
        help="a read-only web view of the catalog (runs, lineage, compare)",
        description="Serve the run catalog as read-only web pages.",
        epilog=UI_EPILOG,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="default: 8765")
    p.add_argument(
        "--token-file", type=Path, help="require the token in this file on every request"
    )
    p.add_argument("--no-token", action="store_true", help="serve another address without a token")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name clients reach the view by (its Host header); requests naming any "
        "other host are refused, which stops DNS rebinding (default: the bound address, "
        "localhost, and this machine's names when bound to every address)",
    )
    add_catalog_option(p)
    p.set_defaults(handler=handle_ui)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        try:
            text = safeio.read_capped(args.token_file, cap=4096).decode().strip()
        except (OSError, safeio.UnsafeFile, UnicodeDecodeError) as exc:
            raise InputError(f"--token-file {args.token_file}: cannot read it ({exc})") from exc
        if len(text) < 16:
            raise InputError(
                f"--token-file {args.token_file}: the token is shorter than 16 characters"
            )
        return text
    if _loopback(args.host) or args.no_token:
        return None
    return secrets.token_urlsafe(24)


def _hosts(args: argparse.Namespace) -> list[str]:
    """The names a request's Host may carry: what the view is bound to, and what is named."""
    from executor.web import LOOPBACK_NAMES

    names = [args.host, *args.allow_host]
    if _loopback(args.host):
        names += LOOPBACK_NAMES
    elif args.host in ("0.0.0.0", "::"):
        import socket

        names += [*LOOPBACK_NAMES, socket.gethostname(), socket.getfqdn()]
    bare = {n.strip("[]").lower() for n in names if n}
    return sorted(f"[{n}]" if ":" in n else n for n in bare)  # a Host names IPv6 in brackets


def handle_ui(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from executor import web

    location = str(args.catalog) if args.catalog else catalog.default_location()
    opened = catalog.open_catalog(location, create=False)  # missing or broken: fails here
    label = opened.label
    opened.close()
    token = _token(args)
    if not _loopback(args.host):
        print(
            f"rexec: warning: serving on {args.host}, reachable from other machines;"
            + (" every request must carry the token" if token else " WITHOUT a token (--no-token)"),
            file=sys.stderr,
        )
    app = web.create_app(location, token=token, hosts=_hosts(args))
    import logging

    from werkzeug.serving import make_server

    # Werkzeug logs every request line, query string included: a token would land in logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as exc:
        raise InfrastructureError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror})",
            hint="choose another --port, or stop what uses this one",
        ) from exc
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{server.server_port}/" + (f"?token={token}" if token else "")
    print(
        f"rexec ui: {url}  (catalog {label}; Ctrl-C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

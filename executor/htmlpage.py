"""One self-contained HTML page: inline style, no script, nothing fetched.

Every page rexec writes (lineage, regeneration reports) is made here so that
each has the same Content-Security-Policy (``default-src 'none'``: no script,
no request of any kind) and escapes what it is given: callers pass text
through :func:`esc`, and only markup they built themselves as ``body``.
"""

from __future__ import annotations

import html

__all__ = ["CSP", "esc", "page"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1d2330; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.graph svg { max-width: 100%; height: auto; border: 1px solid #d5dae3; border-radius: 6px; }
table { border-collapse: collapse; margin: .4em 0 1.2em; }
th, td { text-align: left; padding: .2em .8em .2em 0; vertical-align: top; }
code { font: 12px ui-monospace, monospace; word-break: break-all; }
section:target { background: #fff7d6; }
.same { color: #4a6; } .changed { color: #b50; } .bad { color: #c22; font-weight: 600; }
"""


def esc(value: object) -> str:
    """Any value as HTML text: markup, quotes and control characters made inert."""
    text = html.escape(str(value), quote=True)
    return "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)


def page(title: str, body: str) -> str:
    """The whole document around ``body`` (markup the caller built, its text escaped)."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>\n{body}\n</body></html>\n"
    )

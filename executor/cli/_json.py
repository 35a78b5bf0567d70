"""What ``--json`` prints, the same for every command (kept apart from ``_render``, which
imports rich: a command that prints JSON should not pay for it)."""

from __future__ import annotations

import json
from typing import Any


def print_json(doc: Any, *, default: Any = None) -> None:
    """Exactly one JSON document on stdout, keys sorted and indented."""
    print(json.dumps(doc, indent=2, sort_keys=True, default=default))

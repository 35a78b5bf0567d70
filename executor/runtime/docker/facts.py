"""Engine facts kept per daemon: what the record says of the engine, asked once.

The facts (version, API, storage and cgroup drivers, Podman's mappings) describe the
daemon process and change only when it restarts, which recreates its socket; so they
are kept under the socket's path, inode and ctime, and asked afresh when those change
or where there is no local socket (an engine over TCP or SSH).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from executor import safeio
from executor.paths import cache_dir

__all__ = ["kept"]


def kept(name: str, socket: Path | None, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Engine ``name``'s facts for the daemon behind ``socket``: kept, else computed."""
    try:
        st = os.stat(socket) if socket is not None else None
    except OSError:
        st = None
    if socket is None or st is None:
        return compute()
    key = [str(socket), st.st_ino, st.st_ctime_ns]
    cache = Path(cache_dir()) / f"{name}-engine.json"
    with contextlib.suppress(OSError, ValueError, safeio.UnsafeFile):
        found = json.loads(safeio.read_capped(cache, cap=1 << 20))
        if isinstance(found, dict) and found.get("socket") == key:
            return dict(found["facts"])
    facts = compute()
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        doc = {"socket": key, "facts": facts}
        safeio.write_atomic(cache, json.dumps(doc).encode(), durable=False)
    return facts

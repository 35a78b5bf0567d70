"""What to tell a user whose job failed, from the end of its stderr.

"read stderr.log" is true but not helpful when the cause is one rexec itself
imposed. The commonest: a trainer that saves its checkpoint next to itself, in
a working directory rexec mounts read-only. Recognised here and turned into a
hint that says what to change. The log is the job's text: only its last bytes
are read (no link followed), and what is quoted from it is cut short and shown
as printable ASCII.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from executor import safeio
from executor.record import writer

__all__ = ["failure_hint"]

TAIL_BYTES = 64 << 10
# Python's OSError text, then the C library's (shell tools, other languages).
_EROFS = re.compile(
    rb"\[Errno 30\] Read-only file system: '([^'\n]{1,4096})'|Read-only file system"
)


def failure_hint(run_dir: Path, *, outputs_mount: str) -> str:
    """The hint for a failed run: the likely cause when rexec recognises it, then the log."""
    log = run_dir / writer.LOGS / "stderr.log"
    read = f"read {log}"
    match = _EROFS.search(_tail(log))
    if match is None:
        return read
    where = f" ({_printable(match.group(1))})" if match.group(1) else ""
    return (
        f"the job wrote to a read-only path{where}: only {outputs_mount} (and /tmp) is "
        f"writable. Point the program's output there: $REXEC_OUTPUTS in its environment, or "
        f'"{{outputs}}" in run.command (e.g. "--save-dir", "{{outputs}}"); or, where it '
        "insists on writing next to itself, set `[run] scratch_workdir = true` for a writable "
        f"copy of its working directory that is discarded after the run (recorded). Then {read}"
    )


def _tail(path: Path) -> bytes:
    try:
        fd = safeio.open_regular(path)
    except (OSError, safeio.UnsafeFile):
        return b""
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - TAIL_BYTES), os.SEEK_SET)
        return os.read(fd, TAIL_BYTES)
    finally:
        os.close(fd)


def _printable(raw: bytes, limit: int = 160) -> str:
    text = raw.decode("ascii", "backslashreplace")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"

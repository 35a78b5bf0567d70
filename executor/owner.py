"""Which rexec process owns a job container or a partial record, and whether it still runs.

A rexec killed by SIGKILL (or a crash, or an OOM kill) cannot clean up: its
container keeps running in the engine and its ``.partial`` directory stays.
Both carry the owner's host, pid and process start time, so ``rexec gc`` can
tell an orphan from a run in progress, even after the pid was reused.
"""

from __future__ import annotations

import os
import socket
from typing import NamedTuple


class Owner(NamedTuple):
    """A process for all time: its host, pid and start time (pids are reused)."""

    host: str
    pid: int
    start: str  # the process's start time in clock ticks since boot, as /proc says

    def to_json(self) -> dict[str, object]:
        """The JSON form kept in a staging directory's ``.owner`` file."""
        return {"host": self.host, "pid": self.pid, "start": self.start}


def process_start(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the pid, it names one process for all time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def me() -> Owner:
    """This rexec process, as a job container's labels and a staging directory name it."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, process_start(pid) or "")


def invoker() -> dict[str, object]:
    """Who ran rexec (user, uid, host), recorded beside who signed: they may differ."""
    import pwd

    uid = os.getuid()
    try:
        user: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (a container, a cluster without NSS)
        user = None
    return {"user": user, "uid": uid, "host": socket.gethostname()}


def is_orphan(host: str, pid: str | int, start: str) -> bool:
    """True only when the owner ran on this host and that very process is gone."""
    if host != socket.gethostname():
        return False  # another machine's run: it may be alive, we cannot tell
    try:
        number = int(pid)
    except (TypeError, ValueError):
        return False
    return process_start(number) != start

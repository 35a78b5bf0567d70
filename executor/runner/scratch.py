"""``[run] scratch_workdir``: a writable workdir for programs that write next to themselves.

Opt-in and recorded. When the working directory is the code's mount (or
inside it) the job gets a copy of the pinned code, writable; otherwise an empty
directory at the working directory. Either lives in the record's staging
area, belongs to the job's user, and is deleted after the run: what the job
wants kept belongs in the outputs. rexec says how many files the job wrote
there, so a checkpoint that would be lost is not lost silently.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from executor import safeio, spec
from executor.code import ResolvedCode
from executor.record import writer
from executor.runtime import Mount

__all__ = ["Scratch", "make_scratch"]

SCRATCH = ".scratch-workdir"


@dataclass(frozen=True)
class Scratch:
    """The job's scratch working directory and what was in it when the job started."""

    path: Path
    kind: str  # "copy-of-code" or "empty"
    mount: Mount
    before: frozenset[bytes]
    started_ns: int

    def written(self) -> list[str]:
        """Files the job created or changed there (names are the job's: shown escaped)."""
        found = []
        for entry in safeio.walk(self.path):
            if stat.S_ISDIR(entry.st.st_mode):
                continue
            if entry.rel not in self.before or entry.st.st_mtime_ns >= self.started_ns:
                found.append(entry.rel.decode("utf-8", "backslashreplace"))
        return found

    def describe(self, written: list[str]) -> dict[str, object]:
        """The record's account: what it was, where, how many files the job left in it."""
        return {"kind": self.kind, "mount": self.mount.target, "filesWritten": len(written)}

    def discard(self) -> None:
        """Delete it: it is not part of the record."""
        safeio.rmtree(self.path)


def make_scratch(
    run_spec: spec.RunSpec, code: ResolvedCode | None, record: writer.RecordWriter, user: str
) -> Scratch | None:
    """The scratch directory the spec asks for, owned by the job's user; else None."""
    if not run_spec.run.scratch_workdir:
        return None
    path = record.path(SCRATCH)
    workdir = run_spec.run.workdir
    if code is not None and (workdir == code.mount or workdir.startswith(code.mount + "/")):
        # The pinned tree without .git: the pin leaves it out, so the job never sees it.
        shutil.copytree(code.path, path, symlinks=True, ignore=_top_git(code.path))
        kind, target = "copy-of-code", code.mount
    else:
        path.mkdir()
        kind, target = "empty", workdir
    _give(path, user)
    before = frozenset(e.rel for e in safeio.walk(path))
    return Scratch(path, kind, Mount(path, target, read_only=False), before, time.time_ns())


def _top_git(root: Path) -> Callable[[str, list[str]], list[str]]:
    def ignore(directory: str, names: list[str]) -> list[str]:
        return [".git"] if Path(directory) == root and ".git" in names else []

    return ignore


def _give(path: Path, user: str) -> None:
    """The whole tree to the job's user (when rexec is root; else it is already the user's)."""
    if os.geteuid() != 0:
        return
    uid, _, gid = user.partition(":")
    os.chown(path, int(uid), int(gid or uid))
    for entry in safeio.walk(path):
        os.lchown(entry.path, int(uid), int(gid or uid))

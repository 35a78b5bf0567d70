"""The job's directories in the record's staging directory: made for the job, owned by
its user while it runs, taken back after.

Only the outputs and the reports directories are writable, and only by the job's user;
the code's ``.git`` is covered (the pin leaves it out, so the job must not see it, nor
read the repository's history and remotes). ``[run] scratch_workdir`` (opt-in, recorded)
adds a writable workdir for programs that write next to themselves: a copy of the pinned
code when the working directory is the code's mount (or inside it), else an empty
directory. It is deleted after the run, since what the job wants kept belongs in the
outputs; rexec says how many files the job wrote there, so a checkpoint that would be
lost is not lost silently.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from executor import safeio, snapshot, spec
from executor.code import ResolvedCode
from executor.errors import InputError, RexecError
from executor.progress import Say
from executor.record import writer

REPORTS_STAGING = ".job-reports"  # beside the outputs, never inside
SCRATCH = ".scratch-workdir"
GIT_COVER = ".git-cover"
CHECKPOINT = ".checkpoint"  # a checkpoint directory no scheduler keeps


@dataclass(frozen=True)
class Scratch:
    """The job's scratch working directory and what was in it when the job started."""

    path: Path
    kind: str  # "copy-of-code" or "empty"
    target: str  # where the job sees it: its working directory, or the code's mount
    before: frozenset[bytes]
    started_ns: int

    def finish(self, say: Say) -> dict[str, object]:
        """Delete it (it is not part of the record), saying what the job left in it; the
        record's account of it."""
        written = [
            entry.rel.decode("utf-8", "backslashreplace")  # the job's names: shown escaped
            for entry in safeio.walk(self.path)
            if not stat.S_ISDIR(entry.st.st_mode)
            and (entry.rel not in self.before or entry.st.st_mtime_ns >= self.started_ns)
        ]
        if written:
            shown = ", ".join(ascii(name) for name in written[:5])
            more = f" and {len(written) - 5} more" if len(written) > 5 else ""
            say(
                f"warning: the job wrote {len(written)} file(s) into its scratch workdir "
                f"{self.target}, which is discarded: {shown}{more}; "
                "write what should be kept to $REXEC_OUTPUTS"
            )
        safeio.rmtree(self.path)
        return {"kind": self.kind, "mount": self.target, "filesWritten": len(written)}


@dataclass(frozen=True)
class Staging:
    """Where the job's files live while it runs."""

    root: Path
    outputs: Path  # the job's outputs, each file a subject
    reports: Path  # the job's reports directory
    logs: Path
    params: Path
    git_cover: Path | None  # mounted over the code's .git, when the code has one
    scratch: Scratch | None
    checkpoint: Checkpointed | None = None


@dataclass(frozen=True)
class Checkpointed:
    """``[checkpoint]``'s directory for this attempt, and what was in it when it began."""

    path: Path
    mount: str
    kept: bool  # a scheduler keeps it for the next attempt (else removed after the run)
    start: str | None  # its tree digest before the job (None: it could not be hashed)

    def finish(self) -> dict[str, object]:
        """The record's account: what the attempt started from and what it left."""
        end = _digest(self.path)
        if not self.kept:
            safeio.rmtree(self.path)
        return {"mount": self.mount, "kept": self.kept, "start": self.start, "end": end}


def stage(
    root: Path,
    run_spec: spec.RunSpec,
    code: ResolvedCode | None,
    user: str,
    *,
    params: bytes,
    checkpoint_dir: Path | None = None,
) -> Staging:
    """Make the job's directories and its params file under ``root``, and give the
    writable ones to its user."""
    outputs, reports = root / writer.OUTPUTS, root / REPORTS_STAGING
    owner = _ids(user) if os.geteuid() == 0 else None  # else they are the user's already
    for path in (outputs, reports):
        path.mkdir()
        if owner is not None:
            os.chown(path, *owner)
    cover = _cover_git(code, root / GIT_COVER) if code is not None else None
    checkpoint = _checkpoint(run_spec, checkpoint_dir or root / CHECKPOINT, checkpoint_dir, user)
    scratch = _scratch(run_spec, code, root / SCRATCH, user)
    safeio.write_atomic(root / writer.PARAMS, params)
    return Staging(
        root,
        outputs,
        reports,
        logs=root / writer.LOGS,
        params=root / writer.PARAMS,
        git_cover=cover,
        scratch=scratch,
        checkpoint=checkpoint,
    )


def _cover_git(code: ResolvedCode, cover: Path) -> Path | None:
    git = code.path / ".git"
    if git.is_dir() and not git.is_symlink():
        cover.mkdir()
        return cover
    if git.is_file() and not git.is_symlink():  # a worktree's or a submodule's .git file
        cover.touch(exist_ok=False)
        return cover
    return None


def _scratch(
    run_spec: spec.RunSpec, code: ResolvedCode | None, path: Path, user: str
) -> Scratch | None:
    if not run_spec.run.scratch_workdir:
        return None
    workdir = run_spec.run.workdir
    if code is not None and (workdir == code.mount or workdir.startswith(code.mount + "/")):
        # The pinned tree without .git: the pin leaves it out, so the job never sees it.
        shutil.copytree(code.path, path, symlinks=True, ignore=_top_git(code.path))
        kind, target = "copy-of-code", code.mount
    else:
        path.mkdir()
        kind, target = "empty", workdir
    if os.geteuid() == 0:
        safeio.chown_tree(path, *_ids(user))
    before = frozenset(e.rel for e in safeio.walk(path))
    return Scratch(path, kind, target, before, time.time_ns())


def _checkpoint(
    run_spec: spec.RunSpec, path: Path, kept: Path | None, user: str
) -> Checkpointed | None:
    if run_spec.checkpoint is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    if not stat.S_ISDIR(os.lstat(path).st_mode):  # a link there would send the job elsewhere
        raise InputError(
            f"{path}: the checkpoint directory is not a directory (a link?)",
            hint="remove it; rexec makes it on the first attempt and keeps it for the next",
        )
    if os.geteuid() == 0:
        safeio.chown_tree(path, *_ids(user))
    return Checkpointed(path, run_spec.checkpoint.mount, kept is not None, _digest(path))


def _digest(path: Path) -> str | None:
    """The tree digest of what the job wrote there (links hashed as links, never followed),
    or None when it holds what no tree digest names (a FIFO, a device)."""
    try:
        return snapshot.hash_tree(path, use_cache=False, allow_external_links=True).digest
    except RexecError:
        return None


def _top_git(root: Path) -> Callable[[str, list[str]], list[str]]:
    def ignore(directory: str, names: list[str]) -> list[str]:
        return [".git"] if Path(directory) == root and ".git" in names else []

    return ignore


def _ids(user: str) -> tuple[int, int]:
    """``uid[:gid]`` as numbers (the gid defaults to the uid)."""
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)

"""Pin the job's code: the git commit it comes from and the digest of what is mounted.

The commit says where the code lives in history; the tree digest says what
bytes the job actually saw. A tree with uncommitted changes under the code
path has no commit that describes it, so it is refused unless the user opts
in with ``--allow-dirty``, which the manifest records.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import snapshot
from executor.errors import InputError, MismatchError
from executor.progress import Say

GIT_EXCLUDE = frozenset({b".git"})


@dataclass(frozen=True)
class ResolvedCode:
    """The code pin as resolved: the commit it comes from and the digest of what is mounted."""

    path: Path
    mount: str
    commit: str | None
    repo_path: str  # the code path relative to the repository root
    tree_digest: str
    dirty: bool

    def dependency(self) -> dict[str, Any]:
        """The SLSA ``resolvedDependencies`` entry for the code."""
        entry: dict[str, Any] = {
            "name": "code",
            "digest": {self.tree_digest.split(":")[0]: self.tree_digest.split(":")[1]},
            "annotations": {
                "mount": self.mount,
                "path": self.repo_path,
                "dirty": self.dirty,
                "hostPath": str(self.path),
            },
        }
        if self.commit:
            entry["digest"]["gitCommit"] = self.commit
        return entry


def _git(path: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise InputError(
            f"code.path {path}: git {' '.join(args)} failed: {result.stderr.strip()}",
            hint="the code path must be inside a git repository with at least one commit",
        )
    return result.stdout.strip()


def resolve_code(path: Path, *, mount: str, allow_dirty: bool) -> ResolvedCode:
    """A code path to its commit and tree digest; uncommitted changes need ``allow_dirty``."""
    if not path.is_dir():
        raise InputError(f"code.path: {path} is not a directory")
    root = Path(_git(path, "rev-parse", "--show-toplevel"))
    commit = _git(path, "rev-parse", "HEAD")
    rel = path.resolve().relative_to(root.resolve()).as_posix() or "."
    status = _git(root, "status", "--porcelain", "--untracked-files=all", "--", rel)
    dirty = bool(status)
    if dirty and not allow_dirty:
        changed = status.splitlines()
        raise InputError(
            f"code.path {path}: the working tree has uncommitted changes, so no commit "
            "describes the code that would run",
            details=changed[:20]
            + ([f"… and {len(changed) - 20} more"] if len(changed) > 20 else []),
            hint="commit them, or pass --allow-dirty (the manifest then records dirty=true)",
        )
    # The pin is the tree the job sees: .git is hidden from the mount, and leaving it
    # out means an empty commit or a fetch does not break a lock (docs/spec.md).
    tree = snapshot.hash_tree(path, exclude=GIT_EXCLUDE)
    return ResolvedCode(
        path=path,
        mount=mount,
        commit=commit,
        repo_path=rel,
        tree_digest=tree.digest,
        dirty=dirty,
    )


def check_code_pins(
    *,
    commit: str | None,
    tree: str | None,
    actual_commit: str | None,
    actual_tree: str,
    say: Say,
) -> None:
    """The code must be the bytes the lock saw; a different commit with the
    same tree (say, an unrelated commit elsewhere in the repository) is fine."""
    if tree is not None and tree != actual_tree:
        raise MismatchError(
            f"code.tree: the code is now {actual_tree}, the spec pins {tree}",
            hint="the code changed since `rexec lock`; lock again to run the new code",
        )
    if commit is not None and actual_commit is not None and commit != actual_commit:
        say(f"code: HEAD is {actual_commit}, locked at {commit}; the code tree is unchanged")

"""What the job's container is given: its user, its environment and its mounts.

Never root unless the spec opts in; only the outputs and reports directories
writable, and only by the job's user; the code with its ``.git`` covered.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from executor import determinism, safeio, spec
from executor.code import ResolvedCode
from executor.errors import InputError
from executor.record import writer
from executor.runner import attest
from executor.runtime import NOBODY, Mount
from executor.spec import render_command

PARAMS_MOUNT = "/rexec/params.json"
# Where the job's reports directory is staged: beside the outputs, never inside.
REPORTS_STAGING = ".job-reports"


def container_user(run_spec: spec.RunSpec) -> str:
    """Never root unless the spec opts in: the invoking user, or ``nobody`` under root.

    Compared as numbers, so ``"00"`` or ``"0000:0"`` cannot pass for someone else;
    gid 0 and the container engine's group (root-equivalent) need the same opt-in.
    """
    if run_spec.run.user is not None:
        try:
            uid, gid = spec.parse_user(run_spec.run.user)
        except ValueError as exc:
            raise InputError(f"run.user: {exc}") from None
    elif os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
    else:
        uid, gid = (int(x) for x in NOBODY.split(":"))
    privileged = {0, *_engine_groups()}
    if (uid == 0 or gid in privileged) and not run_spec.security.allow_root:
        raise InputError(
            f"run.user: the job would run as {uid}:{gid}, and uid 0, gid 0 and the container "
            "engine's group are root-equivalent; that needs `[security] allow_root = true`",
            hint="prefer a non-root uid:gid (set run.user); the outputs directory is made "
            "writable for it",
        )
    return f"{uid}:{gid}"


def _engine_groups() -> set[int]:
    """Host groups whose members can drive a container engine, and so are root."""
    import grp

    found = set()
    for name in ("docker", "podman"):
        with contextlib.suppress(KeyError):
            found.add(grp.getgrnam(name).gr_gid)
    return found


def job_env(run_spec: spec.RunSpec, *, run_id: str, det_env: Mapping[str, str]) -> dict[str, str]:
    """The job's environment: the spec's, then the determinism variables and rexec's own."""
    env = dict(run_spec.run.env)
    env.update(det_env)
    env.update(
        {
            "REXEC_RUN_ID": run_id,
            "REXEC_PARAMS": PARAMS_MOUNT,
            "REXEC_OUTPUTS": run_spec.outputs_mount,
            "REXEC_REPORTS": attest.REPORTS_MOUNT,
            "REXEC_DETERMINISM_REPORT": f"{attest.REPORTS_MOUNT}/determinism.json",
            "PYTHONPATH": determinism.CONTAINER_HELPER_DIR,
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": "/tmp",
        }
    )
    return env


def job_argv(run_spec: spec.RunSpec) -> list[str]:
    """``run.command`` with its placeholders filled (and params as flags, if asked)."""
    words = {
        "seed": str(run_spec.run.seed),
        "outputs": run_spec.outputs_mount,
        "reports": attest.REPORTS_MOUNT,
        "params_file": PARAMS_MOUNT,
        "code": run_spec.code.mount if run_spec.code else "",
        **{f"inputs.{i.name}": i.mount for i in run_spec.inputs},
    }
    return render_command(
        run_spec.run.command,
        params=run_spec.params,
        params_as=run_spec.run.params_as,
        words=words,
    )


def code_mounts(code: ResolvedCode, record: writer.RecordWriter) -> list[Mount]:
    """The code read-only, with its ``.git`` covered: the pin leaves it out, so the job
    must not see it (nor read the repository's history and remotes)."""
    mounts = [Mount(code.path, code.mount)]
    git = code.path / ".git"
    if git.is_dir() and not git.is_symlink():
        cover = record.path(".git-cover")
        cover.mkdir()
        mounts.append(Mount(cover, f"{code.mount}/.git"))
    elif git.is_file() and not git.is_symlink():  # a worktree's or a submodule's .git file
        mounts.append(Mount(record.write(".git-cover", b""), f"{code.mount}/.git"))
    return mounts


def hand_to(user: str, *directories: Path) -> None:
    """Only the outputs (and reports) directories are writable, and only by the job's user."""
    if os.geteuid() == 0:
        uid, _, gid = user.partition(":")
        for path in directories:
            os.chown(path, int(uid), int(gid or uid))


def reclaim(*directories: Path) -> None:
    """Give the job's files back to the invoking user, so the record is theirs."""
    if os.geteuid() == 0:
        for top in directories:
            for entry in safeio.walk(top):
                os.lchown(entry.path, 0, 0)
            os.chown(top, 0, 0)

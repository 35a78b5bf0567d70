"""What the job's container is given, decided: its user, command, environment, mounts,
labels and limits. Nothing is created here (``staging`` makes the directories).

Never root unless the spec opts in; the inputs and the code read-only, the code's
``.git`` covered; only the outputs and reports directories writable.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from executor import determinism, owner, spec
from executor.code import ResolvedCode
from executor.errors import InputError
from executor.runner.options import RunOptions
from executor.runner.preflight import Preflight
from executor.runner.staging import Staging
from executor.runtime import (
    NOBODY,
    OWNER_HOST_LABEL,
    OWNER_PID_LABEL,
    OWNER_START_LABEL,
    RUN_LABEL,
    SPEC_LABEL,
    ContainerRequest,
    Hardening,
    Mount,
)
from executor.spec import render_command

PARAMS_MOUNT = "/rexec/params.json"
# The job's reports (the determinism report) go to a directory of their own,
# mounted here, never inside the outputs: rexec reads them on the host, so the
# job must not be able to point them at a host file (see ``collect.collect``).
REPORTS_MOUNT = "/rexec/reports"


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


def job_container(
    run_spec: spec.RunSpec,
    *,
    run_id: str,
    image: str,
    user: str,
    checked: Preflight,
    staging: Staging,
    options: RunOptions,
) -> ContainerRequest:
    """The job's container, every choice made: what the engine is asked to run."""
    mounts = _mounts(run_spec, checked.code, staging)
    labels = _labels(run_spec, run_id, options)
    cpus = _bounded(run_spec.resources.cpus, options.allocated_cpus)
    memory = _bounded(run_spec.resources.memory_bytes, options.allocated_memory)
    return ContainerRequest(
        image=image,
        command=job_argv(run_spec),
        workdir=run_spec.run.workdir,
        env=job_env(run_spec, run_id=run_id, gpus=bool(checked.gpu_uuids)),
        mounts=mounts,
        user=user,
        labels=labels,
        hardening=Hardening(
            network=run_spec.security.network,
            read_only_root=not run_spec.security.allow_writable_root,
            devices=options.devices,
        ),
        cpus=cpus,
        memory_bytes=memory,
        pids_limit=run_spec.resources.pids,
        gpu_uuids=checked.gpu_uuids,
        timeout_s=run_spec.run.timeout_s,
        stop_grace_s=run_spec.checkpoint.grace_s if run_spec.checkpoint else 0.0,
    )


def job_env(run_spec: spec.RunSpec, *, run_id: str, gpus: bool) -> dict[str, str]:
    """The job's environment: the spec's, the determinism variables, rexec's own, and the
    secrets' values (which no record holds)."""
    # Python writes its stdout a line at a time, so the log streams (`rexec logs --follow`)
    # and a killed job's log keeps what it printed; `PYTHONUNBUFFERED = ""` in [run] env
    # opts out. Recorded with the rest of the environment.
    words = job_words(run_spec)
    own = {
        k: spec.render_words(v, params=run_spec.params, words=words)
        for k, v in run_spec.run.env.items()
    }
    env = {"PYTHONUNBUFFERED": "1", **own}
    env.update(
        determinism.determinism_env(
            seed=run_spec.run.seed,
            frameworks=run_spec.determinism.frameworks,
            strict=run_spec.determinism.strict,
            cpu_threads=determinism.cpu_threads(run_spec.resources.cpus),
            gpus=gpus,
            automatic=run_spec.determinism.automatic,
        )
    )
    env.update(
        {
            "REXEC_RUN_ID": run_id,
            "REXEC_PARAMS": PARAMS_MOUNT,
            "REXEC_OUTPUTS": run_spec.outputs_mount,
            "REXEC_REPORTS": REPORTS_MOUNT,
            "REXEC_DETERMINISM_REPORT": f"{REPORTS_MOUNT}/determinism.json",
            "PYTHONPATH": determinism.CONTAINER_HELPER_DIR,
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": "/tmp",
        }
    )
    if gpus:
        # Only the driver libraries a training job needs (CUDA, NVML), not graphics or video.
        env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    return {**env, **{name: os.environ[name] for name in run_spec.run.secrets}}


def job_words(run_spec: spec.RunSpec) -> dict[str, str]:
    """What each placeholder of ``run.command`` and ``run.env`` means in the container."""
    return {
        "seed": str(run_spec.run.seed),
        "outputs": run_spec.outputs_mount,
        "reports": REPORTS_MOUNT,
        "params_file": PARAMS_MOUNT,
        "code": run_spec.code.mount if run_spec.code else "",
        **{f"inputs.{i.name}": i.mount for i in run_spec.inputs},
    }


def job_argv(run_spec: spec.RunSpec) -> list[str]:
    """``run.command`` with its placeholders filled (and params as flags, if asked)."""
    words = job_words(run_spec)
    return render_command(
        run_spec.run.command,
        params=run_spec.params,
        params_as=run_spec.run.params_as,
        words=words,
    )


def _mounts(run_spec: spec.RunSpec, code: ResolvedCode | None, staging: Staging) -> list[Mount]:
    scratch = staging.scratch
    code_mounts: list[Mount] = []
    if code is not None and not (scratch is not None and scratch.kind == "copy-of-code"):
        code_mounts = [Mount(code.path, code.mount)]
        if staging.git_cover is not None:
            code_mounts.append(Mount(staging.git_cover, f"{code.mount}/.git"))
    return [
        *(Mount(i.path, i.mount) for i in run_spec.inputs),
        *code_mounts,  # the scratch copy, when there is one, is mounted in the code's place
        *([Mount(scratch.path, scratch.target, read_only=False)] if scratch is not None else []),
        Mount(staging.params, PARAMS_MOUNT),
        Mount(determinism.HELPER_DIR, determinism.CONTAINER_HELPER_DIR),
        Mount(staging.outputs, run_spec.outputs_mount, read_only=False),
        Mount(staging.reports, REPORTS_MOUNT, read_only=False),
        *(
            [Mount(staging.checkpoint.path, staging.checkpoint.mount, read_only=False)]
            if staging.checkpoint is not None
            else []
        ),
    ]


def _labels(run_spec: spec.RunSpec, run_id: str, options: RunOptions) -> dict[str, str]:
    """Which run the container is, and which rexec owns it (``rexec gc`` reads them)."""
    me = owner.me()
    return {
        RUN_LABEL: run_id,
        SPEC_LABEL: str(run_spec.source),
        OWNER_HOST_LABEL: me.host,
        OWNER_PID_LABEL: str(me.pid),
        OWNER_START_LABEL: me.start,
        **options.labels,
    }


def _bounded(wanted: Any, allocated: Any) -> Any:
    """The spec's limit, within the allocation: the engine does not see Slurm's limits."""
    if allocated is None:
        return wanted
    return allocated if wanted is None else min(wanted, allocated)

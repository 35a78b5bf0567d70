"""A run's first phase: everything checked, and the container the job gets, decided.

Preflight checks every input against its pin, then the image is made ready; only then
are the job's directories staged and its container decided. The host is captured on a
thread meanwhile (NVML, /proc: nothing the container depends on), so the job's first
instruction does not wait for it; the record waits for it. Nothing of the job has run
when this returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import determinism, spec
from executor.host import capture_host
from executor.images import RunImage, image_for_run
from executor.record import writer
from executor.runner.container import container_user, job_container
from executor.runner.options import RunOptions
from executor.runner.preflight import Preflight, preflight
from executor.runner.staging import Staging, stage
from executor.runtime import ContainerRequest, ContainerRuntime


@dataclass(frozen=True)
class Job:
    """The first phase's value: what runs, on what, with every input checked."""

    spec: spec.RunSpec
    run_id: str
    checked: Preflight
    image: RunImage
    capture: Future[dict[str, Any]]  # this host (rexec.host/v1), captured on a thread
    staging: Staging
    container: ContainerRequest
    params: bytes  # params.json, exactly as the job reads it (its digest is signed)
    portability: tuple[str, ...]  # what may differ on another host (determinism notes)
    unenforced: tuple[str, ...]  # limits this engine cannot enforce

    @property
    def host(self) -> Mapping[str, Any]:
        """This host as captured, once the capture has finished (its errors raised here)."""
        return self.capture.result()

    @property
    def secret_names(self) -> list[str]:
        """The secrets the job gets: named in the record, their values never."""
        return sorted(self.spec.run.secrets)


def request(
    run_spec: spec.RunSpec,
    *,
    run_id: str,
    staging_dir: Path,
    runtime: ContainerRuntime,
    options: RunOptions,
) -> Job:
    """Check, prepare and stage everything the job needs; start nothing of it."""
    say = options.say
    user = container_user(run_spec)  # who the job runs as: refused at once if root-equivalent
    checked = preflight(
        run_spec,
        runtime=runtime,
        allow_dirty=options.allow_dirty,
        say=say,
        allocated_gpus=options.allocated_gpus,
        vouched=options.vouched_inputs,
    )
    image = image_for_run(
        run_spec.image,
        runtime=runtime,
        spec_name=run_spec.name,
        say=say,
        allow_unpinned=options.allow_unpinned,
        push=options.push,
    )
    capture = in_thread(lambda: capture_host(engine=checked.engine))
    params = (
        options.params_json
        if options.params_json is not None
        else writer.json_file(run_spec.params)
    )
    staging = stage(
        staging_dir,
        run_spec,
        checked.code,
        user,
        params=params,
        checkpoint_dir=options.checkpoint_dir,
    )
    portability = determinism.portability_notes(
        cpu_threads=determinism.cpu_threads(run_spec.resources.cpus)
    )
    for note in portability:
        say(f"note: {note}")
    container = job_container(
        run_spec,
        run_id=run_id,
        image=image.resolved.run_ref,
        user=user,
        checked=checked,
        staging=staging,
        options=options,
    )
    unenforced = runtime.unenforced_limits(container)
    if unenforced:
        say(
            f"warning: this engine cannot enforce the {', '.join(unenforced)} limit(s) of this "
            "run (rootless Podman on cgroup v1); the record says so"
        )
    return Job(
        spec=run_spec,
        run_id=run_id,
        checked=checked,
        image=image,
        capture=capture,
        staging=staging,
        container=container,
        params=params,
        portability=tuple(portability),
        unenforced=tuple(unenforced),
    )


def in_thread(work: Callable[[], dict[str, Any]]) -> Future[dict[str, Any]]:
    """``work`` started on a daemon thread (never holding up an interrupted rexec's exit);
    its value or its exception in the future."""
    future: Future[dict[str, Any]] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to whoever waits for it
            future.set_exception(exc)

    threading.Thread(target=run, name="rexec-host-capture", daemon=True).start()
    return future

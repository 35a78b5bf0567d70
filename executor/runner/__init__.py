"""The only module that knows the order of the stages.

run:  spec -> preflight (signer, engine, snapshots, code, GPUs) -> image -> host capture
          -> execute -> collect -> attest -> sign -> store

Preflight checks everything that can be checked without starting a container,
so a wrong pin or a missing key fails in seconds and leaves nothing behind.
Snapshots are verified before the image is built because a build runs
containers too. Once the job has started, every ending (success, failure,
timeout, interrupt) is recorded and signed with its status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import catalog, determinism, owner, safeio, spec
from executor.canonical import sha256_hex
from executor.errors import EngineLost
from executor.host import capture_host
from executor.images import (
    ResolvedImage,
    check_image_config,
    image_inventory,
    push_image,
    resolve_image,
)
from executor.record import RunStatus, Subject, manifest, writer
from executor.runner import attest
from executor.runner.container import (
    PARAMS_MOUNT,
    REPORTS_STAGING,
    code_mounts,
    container_user,
    hand_to,
    job_argv,
    job_env,
    reclaim,
)
from executor.runner.diagnose import failure_hint
from executor.runner.preflight import (
    Preflight,
    check_pins,
    check_runs_dir,
    inputs_changed,
    preflight,
    resolve_from_inputs,
)
from executor.runner.scratch import Scratch, make_scratch
from executor.runtime import (
    OWNER_HOST_LABEL,
    OWNER_PID_LABEL,
    OWNER_START_LABEL,
    RUN_LABEL,
    SPEC_LABEL,
    ContainerRequest,
    ContainerResult,
    ContainerRuntime,
    Hardening,
    Mount,
    default_runtime,
    log_files,
)
from executor.signing import Signer, SignOptions, TrustPolicy, make_signer

Say = Callable[[str], None]

__all__ = ["RunOptions", "RunResult", "check_pins", "check_runs_dir", "failure_hint", "run"]


@dataclass(frozen=True)
class RunOptions:
    """How a run is recorded and signed, besides the spec: the caller's choices."""

    runs_dir: Path
    sign: SignOptions
    allow_dirty: bool = False
    echo_logs: bool = True
    say: Say = field(default=lambda text: None)
    # Where this run comes from when it is not a fresh run (replay, rerun):
    # recorded under internalParameters.lineage and so signed.
    lineage: Mapping[str, Any] | None = None
    # A signer the caller already made (replay signs its verdict with the same one,
    # so an encrypted key's password is asked once); else made from `sign`.
    signer: Signer | None = None
    # Adds files to the record before it is published (replay writes its verdict here).
    before_commit: Callable[[writer.RecordWriter, RunResult, Mapping[str, Any]], None] | None = None
    # `rexec run --allow-unpinned`: FROM tags use the local image (recorded as
    # pinned=false), and what the CLI pinned in memory is recorded here.
    allow_unpinned: bool = False
    pinned_at_run_time: Mapping[str, Any] | None = None
    # `rexec run --push REGISTRY/REPO[:TAG]`: push the image, record its repo digest.
    push: str | None = None
    # replay/rerun: the original run's params.json exactly (its digest is signed): the
    # spec view in the Statement is canonical JSON, where 20.0 and 20 are one number.
    params_json: bytes | None = None
    # Under a scheduler (`rexec submit`): the run id it was given at submit time, the
    # job's identity (signed under internalParameters.scheduler), the GPUs (UUIDs) and
    # CPU/memory the allocation holds, which bound the container.
    run_id: str | None = None
    scheduler: Mapping[str, Any] | None = None
    allocated_gpus: tuple[str, ...] | None = None
    allocated_cpus: float | None = None
    allocated_memory: int | None = None
    # Multi-node, on rank 0: waits for the other nodes once this node's job has ended and
    # returns {"nodes": [...], "failed": [ranks]}; signed in the Statement with this run.
    peers: Callable[[], Mapping[str, Any]] | None = None
    # More container labels (a scheduler's job id, for its epilog's reaper).
    labels: Mapping[str, str] = field(default_factory=dict)
    # Whose records `from` inputs may be read from (each is verified under it first);
    # None refuses any `from` input. ``upstream_verified``: records already verified.
    upstream: TrustPolicy | None = None
    upstream_verified: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its record, status, Statement digest and subjects."""

    run_id: str
    run_dir: Path
    status: RunStatus
    statement_sha256: str
    subjects: tuple[Subject, ...]
    signer: str | None

    def to_json(self) -> dict[str, Any]:
        """The JSON form printed by ``rexec run --json``."""
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            **self.status.to_json(),
            "statement_sha256": self.statement_sha256,
            "outputs": {s.name: s.sha256 for s in self.subjects},
            "signed": self.signer is not None,
        }


def run(
    run_spec: spec.RunSpec, *, options: RunOptions, runtime: ContainerRuntime | None = None
) -> RunResult:
    """Run a spec through every stage; every ending after the job starts is recorded."""
    runtime = runtime or default_runtime(run_spec.engine)
    say = options.say
    run_spec = resolve_from_inputs(
        run_spec,
        runs_dir=options.runs_dir,
        policy=options.upstream,
        verified=options.upstream_verified,
        say=say,
    )
    # A missing key must fail before anything runs.
    signer = options.signer if options.signer is not None else make_signer(options.sign)
    check_runs_dir(run_spec, options.runs_dir)
    # The staging directory first: a runs dir that cannot take a record fails now,
    # before an image is built or a container started.
    record = writer.RecordWriter(
        options.runs_dir, options.run_id or writer.new_run_id(run_spec.name)
    )
    try:
        checked = preflight(
            run_spec,
            runtime=runtime,
            allow_dirty=options.allow_dirty,
            say=say,
            allocated_gpus=options.allocated_gpus,
        )
        image = resolve_image(
            run_spec.image,
            runtime=runtime,
            spec_name=run_spec.name,
            log=_line_logger(say),
            allow_unpinned=options.allow_unpinned,
        )
        if options.push:
            image = push_image(image, target=options.push, runtime=runtime, log=_line_logger(say))
            say(f"pushed {image.pushed}")
        say(f"image {image.digest}")
        entrypoint = check_image_config(image, runtime=runtime)
        host = capture_host(engine=checked.engine)
        inventory = image_inventory(image.image_id, run_ref=image.run_ref, runtime=runtime, say=say)
        return _execute_and_record(
            run_spec,
            checked=checked,
            image=image,
            host=host,
            inventory=inventory,
            record=record,
            signer=signer,
            runtime=runtime,
            options=options,
            image_entrypoint=entrypoint,
        )
    except OSError as exc:
        record.discard()
        if exc.errno is None:  # not the file system: a socket's error, which is the engine's
            raise
        raise writer.storage_error(options.runs_dir, exc) from exc
    except BaseException:
        record.discard()
        raise


def _line_logger(say: Say) -> Callable[[str], None]:
    def log(text: str) -> None:
        if text.strip():
            say(text.rstrip("\n"))

    return log


def _execute_and_record(
    run_spec: spec.RunSpec,
    *,
    checked: Preflight,
    image: ResolvedImage,
    host: Mapping[str, Any],
    inventory: Mapping[str, Any],
    record: writer.RecordWriter,
    signer: Signer | None,
    runtime: ContainerRuntime,
    options: RunOptions,
    image_entrypoint: tuple[str, ...],
) -> RunResult:
    say = options.say
    outputs = record.path(writer.OUTPUTS)
    reports = record.path(REPORTS_STAGING)
    outputs.mkdir()
    reports.mkdir()
    user = container_user(run_spec)
    hand_to(user, outputs, reports)
    scratch = make_scratch(run_spec, checked.code, record, user)
    params_file = (
        record.write(writer.PARAMS, options.params_json)
        if options.params_json is not None
        else record.write_json(writer.PARAMS, run_spec.params)
    )
    cpu_threads = determinism.cpu_threads(run_spec.resources.cpus)
    det_env = determinism.determinism_env(
        seed=run_spec.run.seed,
        frameworks=run_spec.determinism.frameworks,
        strict=run_spec.determinism.strict,
        cpu_threads=cpu_threads,
        gpus=bool(checked.gpu_uuids),
        automatic=run_spec.determinism.automatic,
    )
    portability = determinism.portability_notes(cpu_threads=cpu_threads)
    for note in portability:
        say(f"note: {note}")
    env = job_env(run_spec, run_id=record.run_id, det_env=det_env)
    if checked.gpu_uuids:
        # Only the driver libraries a training job needs (CUDA, NVML), not graphics or video.
        env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    secret_env = {name: os.environ[name] for name in run_spec.run.secrets}
    code = code_mounts(checked.code, record) if checked.code else []
    if scratch is not None and scratch.kind == "copy-of-code":
        code = []  # the scratch copy is mounted in the code's place
    mounts = [
        *(Mount(i.path, i.mount) for i in run_spec.inputs),
        *code,
        *([scratch.mount] if scratch is not None else []),
        Mount(params_file, PARAMS_MOUNT),
        Mount(determinism.HELPER_DIR, determinism.CONTAINER_HELPER_DIR),
        Mount(outputs, run_spec.outputs_mount, read_only=False),
        Mount(reports, attest.REPORTS_MOUNT, read_only=False),
    ]
    hardening = Hardening(
        network=run_spec.security.allow_network,
        read_only_root=not run_spec.security.allow_writable_root,
    )
    request = ContainerRequest(
        image=image.run_ref,
        command=job_argv(run_spec),
        workdir=run_spec.run.workdir,
        env={**env, **secret_env},
        mounts=mounts,
        user=user,
        labels={
            RUN_LABEL: record.run_id,
            SPEC_LABEL: str(run_spec.source),
            OWNER_HOST_LABEL: owner.me().host,
            OWNER_PID_LABEL: str(owner.me().pid),
            OWNER_START_LABEL: owner.me().start,
            **options.labels,
        },
        hardening=hardening,
        cpus=_bounded(run_spec.resources.cpus, options.allocated_cpus),
        memory_bytes=_bounded(run_spec.resources.memory_bytes, options.allocated_memory),
        pids_limit=run_spec.resources.pids,
        gpu_uuids=checked.gpu_uuids,
        timeout_s=run_spec.run.timeout_s,
    )
    unenforced = runtime.unenforced_limits(request)
    if unenforced:
        say(
            f"warning: this engine cannot enforce the {', '.join(unenforced)} limit(s) of this "
            "run (rootless Podman on cgroup v1); the record says so"
        )
    say(f"running {record.run_id} as uid {user}")
    interrupted: KeyboardInterrupt | None = None
    lost: EngineLost | None = None
    echo = sys.stderr.buffer if options.echo_logs else None
    started = datetime.now(UTC)
    with log_files(record.path(writer.LOGS), echo) as sink:
        try:
            outcome = runtime.run(request, sink)
        except (KeyboardInterrupt, EngineLost) as exc:
            if isinstance(exc, EngineLost):
                lost = exc
            else:
                interrupted = exc
            outcome = ContainerResult(None, started, datetime.now(UTC), False, False, "")
    reclaim(outputs, reports)
    safeio.rmtree(record.path(".git-cover"))
    scratch_note = _discard_scratch(scratch, say)
    status = attest.status_of(outcome, interrupted=interrupted, lost=lost)
    changed = inputs_changed(run_spec, say) if interrupted is None and lost is None else None
    if changed is not None:
        status = manifest.RunStatus("failed", outcome.exit_code, reason=changed.message)
    collected = attest.collect(record, outputs, reports)
    for line in collected.ignored_reports:
        say(f"warning: ignored in the job's reports directory: {line}")
    peers = options.peers() if options.peers is not None else None
    if peers and peers.get("failed") and status.status == "succeeded":
        failed = ", ".join(str(r) for r in peers["failed"])
        status = manifest.RunStatus(
            "failed", outcome.exit_code, reason=f"node rank(s) {failed} did not succeed"
        )
    det_state = attest.determinism_state(collected.job_meta, run_spec.determinism.frameworks)
    if det_state["report"] == "absent" and det_state["requested"] and outcome.exit_code is not None:
        say(
            "warning: the job never reported its determinism settings, so "
            f"[determinism] frameworks = {det_state['requested']} may not have been applied "
            "(no Python process of the job ran rexec's start-up hook: not Python, or "
            "python -I/-S); the record says so. Call rexec_runtime.seed_everything() in the "
            "job, or set frameworks = [] if it uses none"
        )
    statement = attest.statement(
        run_spec,
        run_id=record.run_id,
        request=request,
        outcome=outcome,
        status=status,
        collected=collected,
        code=checked.code,
        snapshots=checked.snapshots,
        image=image,
        host=host,
        inventory=inventory,
        record=record,
        secret_names=sorted(secret_env),
        extra_internal={
            # What ran is the recorded command, exactly: the image's entrypoint was replaced.
            "argv": list(request.command),
            "imageEntrypointOverridden": list(image_entrypoint),
            "optIns": {
                "allowUnpinned": options.allow_unpinned,
                "scratchWorkdir": run_spec.run.scratch_workdir,
            },
            **({"scratchWorkdir": scratch_note} if scratch_note is not None else {}),
            "determinism": det_state,
            "invoker": owner.invoker(),
            **({"unenforcedLimits": unenforced} if unenforced else {}),
            **({"portability": portability} if portability else {}),
            **({"lineage": dict(options.lineage)} if options.lineage else {}),
            **({"scheduler": dict(options.scheduler)} if options.scheduler else {}),
            **({"nodes": list(peers["nodes"])} if peers else {}),
            **(
                {"pinnedAtRunTime": dict(options.pinned_at_run_time)}
                if options.pinned_at_run_time is not None
                else {}
            ),
        },
    )
    payload = manifest.dumps(statement)
    record.write(writer.STATEMENT, payload)
    signer_text = None
    if signer is not None:
        say("signing the statement")
        record.write(writer.BUNDLE, signer.sign_dsse(payload))
        if signer.public_key_pem:
            record.write(writer.PUBLIC_KEY, signer.public_key_pem)
        signer_text = options.sign.method
    result = RunResult(
        run_id=record.run_id,
        run_dir=record.final,
        status=status,
        statement_sha256=sha256_hex(payload),
        subjects=tuple(collected.subjects),
        signer=signer_text,
    )
    record.write_json(
        writer.RECORD, {**result.to_json(), "run_dir": None, "spec": str(run_spec.source)}
    )
    if options.before_commit is not None:
        options.before_commit(record, result, statement)
    record.commit()
    catalog.remember(record.final, say=say)  # best effort: warns, never fails the run
    if interrupted is not None:
        raise interrupted
    if lost is not None:
        raise lost
    if changed is not None:
        changed.message += f"; the run is recorded as failed in {result.run_dir}"
        raise changed
    return result


def _bounded(wanted: Any, allocated: Any) -> Any:
    """The spec's limit, within the allocation: the engine does not see Slurm's limits."""
    if allocated is None:
        return wanted
    return allocated if wanted is None else min(wanted, allocated)


def _discard_scratch(scratch: Scratch | None, say: Say) -> dict[str, object] | None:
    """Delete the scratch workdir; say what the job left there, since it is not kept."""
    if scratch is None:
        return None
    written = scratch.written()
    if written:
        shown = ", ".join(ascii(name) for name in written[:5])
        more = f" and {len(written) - 5} more" if len(written) > 5 else ""
        say(
            f"warning: the job wrote {len(written)} file(s) into its scratch workdir "
            f"{scratch.mount.target}, which is discarded: {shown}{more}; "
            "write what should be kept to $REXEC_OUTPUTS"
        )
    scratch.discard()
    return scratch.describe(written)

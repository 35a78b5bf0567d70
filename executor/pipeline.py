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

import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import __version__, determinism, hardware, manifest, snapshot, spec, store
from executor.canonical import canonical_json, sha256_file, sha256_hex
from executor.code import ResolvedCode, resolve_code
from executor.errors import InputError, RexecError
from executor.images import ResolvedImage, push_image, resolve_image
from executor.lock import check_code_pins
from executor.manifest import Byproduct, RunStatus, Subject
from executor.runtime import (
    RUN_LABEL,
    SPEC_LABEL,
    ContainerRequest,
    ContainerResult,
    ContainerRuntime,
    DockerRuntime,
    Hardening,
    Mount,
    log_files,
)
from executor.signing import Signer, SignOptions, make_signer

PARAMS_MOUNT = "/rexec/params.json"
JOB_META_DIR = ".rexec"  # inside the outputs mount; moved out of outputs after the run
NOBODY = "65534:65534"

Say = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
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
    before_commit: Callable[[store.RecordWriter, RunResult, Mapping[str, Any]], None] | None = None
    # `rexec run --allow-unpinned`: FROM tags use the local image (recorded as
    # pinned=false), and what the CLI pinned in memory is recorded here.
    allow_unpinned: bool = False
    pinned_at_run_time: Mapping[str, Any] | None = None
    # `rexec run --push REGISTRY/REPO[:TAG]`: push the image, record its repo digest.
    push: str | None = None


@dataclass(frozen=True)
class Verified:
    """Preflight's value: every input checked against its pin."""

    snapshots: Mapping[str, snapshot.Snapshot]
    code: ResolvedCode | None
    gpu_uuids: tuple[str, ...]
    engine: Mapping[str, Any]


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    status: RunStatus
    statement_sha256: str
    subjects: tuple[Subject, ...]
    signer: str | None

    def to_json(self) -> dict[str, Any]:
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
    runtime = runtime or DockerRuntime()
    say = options.say
    # A missing key must fail before anything runs.
    signer = options.signer if options.signer is not None else make_signer(options.sign)
    checked = preflight(run_spec, runtime=runtime, allow_dirty=options.allow_dirty, say=say)
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
    host = hardware.capture_host(engine=checked.engine)
    inventory = image_inventory(image, runtime=runtime, say=say)
    record = store.RecordWriter(options.runs_dir, store.new_run_id(run_spec.name))
    try:
        result = _execute_and_record(
            run_spec,
            checked=checked,
            image=image,
            host=host,
            inventory=inventory,
            record=record,
            signer=signer,
            runtime=runtime,
            options=options,
        )
    except BaseException:
        record.discard()
        raise
    return result


def _line_logger(say: Say) -> Callable[[str], None]:
    def log(text: str) -> None:
        if text.strip():
            say(text.rstrip("\n"))

    return log


def preflight(
    run_spec: spec.RunSpec, *, runtime: ContainerRuntime, allow_dirty: bool, say: Say
) -> Verified:
    engine = runtime.engine_info()
    snapshots: dict[str, snapshot.Snapshot] = {}
    for index, item in enumerate(run_spec.inputs):
        if not item.path.is_dir():
            raise InputError(
                f"inputs[{index}].path: {item.path} is not a directory (input {item.name!r})",
                hint="paths in a spec are relative to the spec file's directory",
            )
        say(f"verifying input {item.name} against {item.digest}")
        snapshots[item.name] = snapshot.verify_tree(item.path, item.digest)
    code = None
    if run_spec.code is not None:
        code = resolve_code(run_spec.code.path, mount=run_spec.code.mount, allow_dirty=allow_dirty)
        say(f"code {code.repo_path} at {code.commit} ({code.tree_digest})")
        check_code_pins(
            commit=run_spec.code.commit,
            tree=run_spec.code.tree,
            actual_commit=code.commit,
            actual_tree=code.tree_digest,
            say=say,
        )
    gpus = hardware.resolve_gpus(run_spec.resources.gpus)
    _check_secrets(run_spec)
    return Verified(snapshots=snapshots, code=code, gpu_uuids=gpus, engine=engine)


def _check_secrets(run_spec: spec.RunSpec) -> None:
    missing = [name for name in run_spec.run.secrets if name not in os.environ]
    if missing:
        raise InputError(
            f"run.secrets: {', '.join(missing)} not set in the environment",
            hint="export them before `rexec run`; the job gets their values, never the record",
        )


def container_user(run_spec: spec.RunSpec) -> str:
    """Never root unless the spec opts in: the invoking user, or ``nobody`` under root."""
    if run_spec.run.user is not None:
        if run_spec.run.user.split(":")[0] in ("0", "root") and not run_spec.security.allow_root:
            raise InputError(
                "run.user: running the job as root needs `[security] allow_root = true`",
                hint="prefer a non-root uid; the outputs directory is made writable for it",
            )
        return run_spec.run.user
    if os.geteuid() != 0:
        return f"{os.geteuid()}:{os.getegid()}"
    return NOBODY


def _job_env(run_spec: spec.RunSpec, *, run_id: str, det_env: Mapping[str, str]) -> dict[str, str]:
    env = dict(run_spec.run.env)
    env.update(det_env)
    env.update(
        {
            "REXEC_RUN_ID": run_id,
            "REXEC_PARAMS": PARAMS_MOUNT,
            "REXEC_OUTPUTS": run_spec.outputs_mount,
            "REXEC_DETERMINISM_REPORT": f"{run_spec.outputs_mount}/{JOB_META_DIR}/determinism.json",
            "PYTHONPATH": determinism.CONTAINER_HELPER_DIR,
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": "/tmp",
        }
    )
    return env


def _execute_and_record(
    run_spec: spec.RunSpec,
    *,
    checked: Verified,
    image: ResolvedImage,
    host: Mapping[str, Any],
    inventory: Mapping[str, Any],
    record: store.RecordWriter,
    signer: Signer | None,
    runtime: ContainerRuntime,
    options: RunOptions,
) -> RunResult:
    say = options.say
    outputs = record.path(store.OUTPUTS)
    (outputs / JOB_META_DIR).mkdir(parents=True)
    user = container_user(run_spec)
    _hand_outputs_to(outputs, user)
    params_file = record.write_json(store.PARAMS, run_spec.params)
    det_env = determinism.determinism_env(
        seed=run_spec.run.seed,
        frameworks=run_spec.determinism.frameworks,
        strict=run_spec.determinism.strict,
        cpu_threads=max(1, int(run_spec.resources.cpus or 1)),
        gpus=bool(checked.gpu_uuids),
    )
    env = _job_env(run_spec, run_id=record.run_id, det_env=det_env)
    if checked.gpu_uuids:
        # Only the driver libraries a training job needs (CUDA, NVML), not graphics or video.
        env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    secret_env = {name: os.environ[name] for name in run_spec.run.secrets}
    mounts = [
        *(Mount(i.path, i.mount) for i in run_spec.inputs),
        *([Mount(checked.code.path, checked.code.mount)] if checked.code else []),
        Mount(params_file, PARAMS_MOUNT),
        Mount(determinism.HELPER_DIR, determinism.CONTAINER_HELPER_DIR),
        Mount(outputs, run_spec.outputs_mount, read_only=False),
    ]
    hardening = Hardening(
        network=run_spec.security.allow_network,
        read_only_root=not run_spec.security.allow_writable_root,
    )
    request = ContainerRequest(
        image=image.run_ref,
        command=run_spec.run.command,
        workdir=run_spec.run.workdir,
        env={**env, **secret_env},
        mounts=mounts,
        user=user,
        labels={RUN_LABEL: record.run_id, SPEC_LABEL: str(run_spec.source)},
        hardening=hardening,
        cpus=run_spec.resources.cpus,
        memory_bytes=run_spec.resources.memory_bytes,
        pids_limit=run_spec.resources.pids,
        gpu_uuids=checked.gpu_uuids,
        timeout_s=run_spec.run.timeout_s,
    )
    say(f"running {record.run_id} as uid {user}")
    interrupted = False
    echo = sys.stderr.buffer if options.echo_logs else None
    started = datetime.now(UTC)
    with log_files(record.path(store.LOGS), echo) as sink:
        try:
            outcome = runtime.run(request, sink)
        except KeyboardInterrupt:
            interrupted = True
            now = datetime.now(UTC)
            outcome = ContainerResult(None, started, now, False, False, "")
    _reclaim_outputs(outputs)
    status = _status(outcome, interrupted=interrupted)
    subjects, job_meta = _collect(record, outputs)
    internal = {
        "hardening": hardening.describe(),
        "user": user,
        "pidsLimit": run_spec.resources.pids,
        "environment": dict(sorted(env.items())),
        "secretNames": sorted(secret_env),
        "gpuUuids": sorted(checked.gpu_uuids),
        "optIns": {
            "allowDirty": bool(checked.code and checked.code.dirty),
            "allowUnpinned": options.allow_unpinned,
            **{k: v for k, v in spec.resolved_view(run_spec)["security"].items()},
        },
        **({"lineage": dict(options.lineage)} if options.lineage else {}),
        **(
            {"pinnedAtRunTime": dict(options.pinned_at_run_time)}
            if options.pinned_at_run_time is not None
            else {}
        ),
        "snapshotCache": {
            name: {"used": s.cache_used, "hits": s.cache_hits, "files": s.files}
            for name, s in sorted(checked.snapshots.items())
        },
    }
    byproducts = _byproducts(
        record, host=host, inventory=inventory, listings=checked.snapshots, job_meta=job_meta
    )
    statement = manifest.build_statement(
        subjects=subjects,
        external={"spec": spec.resolved_view(run_spec), "specSha256": run_spec.source_sha256},
        internal=internal,
        dependencies=_dependencies(run_spec, checked=checked, image=image),
        builder_id=f"rexec://{socket.gethostname()}",
        builder_dependencies=_builder_dependencies(host),
        run_id=record.run_id,
        started_on=outcome.started_on,
        finished_on=outcome.finished_on,
        status=status,
        byproducts=byproducts,
        rexec_version=__version__,
    )
    payload = manifest.dumps(statement)
    record.write(store.STATEMENT, payload)
    signer_text = None
    if signer is not None:
        say("signing the statement")
        record.write(store.BUNDLE, signer.sign_dsse(payload))
        if signer.public_key_pem:
            record.write(store.PUBLIC_KEY, signer.public_key_pem)
        signer_text = options.sign.method
    result = RunResult(
        run_id=record.run_id,
        run_dir=record.final,
        status=status,
        statement_sha256=sha256_hex(payload),
        subjects=tuple(subjects),
        signer=signer_text,
    )
    record.write_json(
        store.RECORD, {**result.to_json(), "run_dir": None, "spec": str(run_spec.source)}
    )
    if options.before_commit is not None:
        options.before_commit(record, result, statement)
    record.commit()
    if interrupted:
        raise KeyboardInterrupt
    return result


def image_inventory(image: ResolvedImage, *, runtime: ContainerRuntime, say: Say) -> dict[str, Any]:
    """The job's view of its image (Python, pip, dpkg, torch/CUDA versions).

    Read once per image id, in a hardened helper container, and cached: an
    image id names immutable content, so the cache can never be stale.
    """
    cache = hardware.inventory_cache_path(image.image_id)
    if cache.is_file():
        cached: dict[str, Any] = json.loads(cache.read_bytes())
        return cached
    say("reading the image's package inventory (once per image)")
    stdout = runtime.run_capture(
        image.run_ref, ["sh", "-c", hardware.INVENTORY_SCRIPT], user=NOBODY
    )
    inventory = {"imageId": image.image_id, **hardware.parse_inventory(stdout)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    tmp.write_bytes(canonical_json(inventory))
    os.replace(tmp, cache)
    return inventory


def _status(outcome: ContainerResult, *, interrupted: bool) -> RunStatus:
    if interrupted:
        return RunStatus("interrupted", None)
    if outcome.timed_out:
        return RunStatus("timed-out", None, outcome.oom_killed)
    if outcome.exit_code == 0 and not outcome.oom_killed:
        return RunStatus("succeeded", 0)
    return RunStatus("failed", outcome.exit_code, outcome.oom_killed)


def _hand_outputs_to(outputs: Path, user: str) -> None:
    """Only the outputs directory is writable, and only by the job's user."""
    if os.geteuid() == 0:
        uid, _, gid = user.partition(":")
        for path in (outputs, outputs / JOB_META_DIR):
            os.chown(path, int(uid), int(gid or uid))


def _reclaim_outputs(outputs: Path) -> None:
    """Give the job's files back to the invoking user, so the record is theirs."""
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(outputs):
            for name in [*dirnames, *filenames]:
                os.lchown(os.path.join(dirpath, name), 0, 0)
        os.chown(outputs, 0, 0)


def _collect(record: store.RecordWriter, outputs: Path) -> tuple[list[Subject], dict[str, bytes]]:
    """Hash every output file; move rexec's own job metadata out of the outputs."""
    meta_dir = outputs / JOB_META_DIR
    job_meta: dict[str, bytes] = {}
    if meta_dir.is_dir():
        for path in store.iter_files(meta_dir):
            job_meta[path.relative_to(meta_dir).as_posix()] = path.read_bytes()
        shutil.rmtree(meta_dir)
    for name, data in job_meta.items():
        record.write(f"{store.JOB_META}/{name}", data)
    subjects = []
    for path in store.iter_files(outputs):
        if path.is_symlink() or not path.is_file():
            continue  # only regular files are artefacts; links could point anywhere
        subjects.append(Subject(path.relative_to(outputs).as_posix(), sha256_file(path)))
    return subjects, job_meta


def _byproducts(
    record: store.RecordWriter,
    *,
    host: Mapping[str, Any],
    inventory: Mapping[str, Any],
    listings: Mapping[str, snapshot.Snapshot],
    job_meta: Mapping[str, bytes],
) -> list[Byproduct]:
    products = []
    for name, value in ((store.HOST, host), (store.INVENTORY, inventory)):
        data = canonical_json(value)
        record.write(name, data)
        products.append(Byproduct(name, data, "application/json"))
    for name, snap in sorted(listings.items()):
        data = canonical_json(snap.listing.to_json())
        rel = f"{store.INPUTS}/{name}.listing.json"
        record.write(rel, data)
        products.append(Byproduct(rel, data, "application/json"))
    for rel in (f"{store.LOGS}/stdout.log", f"{store.LOGS}/stderr.log", store.PARAMS):
        products.append(
            Byproduct(
                rel,
                record.path(rel).read_bytes(),
                "text/plain" if rel.endswith(".log") else "application/json",
            )
        )
    for name, data in sorted(job_meta.items()):
        products.append(Byproduct(f"{store.JOB_META}/{name}", data, "application/json"))
    return products


def _dependencies(
    run_spec: spec.RunSpec, *, checked: Verified, image: ResolvedImage
) -> list[dict[str, Any]]:
    deps = [image.dependency()]
    if checked.code:
        deps.append(checked.code.dependency())
    for item in run_spec.inputs:
        algo, hexdigest = item.digest.split(":")
        deps.append(
            {
                "name": f"input:{item.name}",
                "digest": {algo: hexdigest},
                "annotations": {"mount": item.mount, "readOnly": True, "hostPath": str(item.path)},
            }
        )
    return deps


def _builder_dependencies(host: Mapping[str, Any]) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    engine = host.get("engine") or {}
    if engine.get("version"):
        deps.append(
            {
                "name": "container-engine",
                "uri": f"pkg:generic/{engine.get('name', 'docker')}@{engine['version']}",
                "annotations": {k: engine[k] for k in sorted(engine) if k != "available"},
            }
        )
    gpu = host.get("gpu") or {}
    for key in ("driver_version", "cuda_driver_version", "nvml_version"):
        if gpu.get(key):
            deps.append({"name": key.replace("_", "-"), "uri": f"pkg:generic/{key}@{gpu[key]}"})
    return deps


def describe_error(exc: RexecError) -> dict[str, Any]:
    return {
        "code": int(exc.exit_code),
        "message": exc.message,
        "details": list(exc.details),
        "hint": exc.hint,
    }

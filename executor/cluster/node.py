"""``rexec slurm-node DIR``: what the batch script runs on the node.

It reads the submission and refuses it unless its bytes have the sha256 the batch
script names (Slurm's copy of the script, which the job owner cannot rewrite on
shared storage), recording why in ``refused.json``; it runs the spec held in the
submission (never re-reading the spec's path), checks the inputs against the
listings verified at submit time, applies this array task's overrides, resolves the allocated
GPUs to UUIDs and the allocation's CPUs and memory into the container's
limits (Docker does not see Slurm's cgroup), and runs the ordinary pipeline
with the job's identity signed into the record. A requeued job is a new
attempt: its run id gains ``-r<restart>``, so each attempt has its own record.

Multi-node (``--nodes N``): the batch script starts one of these per node with
srun. Every rank runs its own container on the host's network (the spec's
recorded opt-in) with the rendezvous variables (``MASTER_ADDR``, ``MASTER_PORT``,
``WORLD_SIZE``, ``RANK``, ``NODE_RANK``, ``LOCAL_RANK``) and the node's
InfiniBand devices, if it has any; ranks
other than 0 write what they ran (host capture, status, outputs) to
``attempt-<restart>/node-<rank>.json`` in the submission directory, and rank
0 waits for them and signs one record that lists every node. A failure on any
node fails the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import runner, safeio, snapshot, spec
from executor.canonical import sha256_hex
from executor.cluster.identity import (
    allocated_cpus,
    allocated_memory,
    gpu_indices,
    job_identity,
    resolve_allocated,
)
from executor.cluster.rerun import prune, rerun_on_node
from executor.cluster.slurm import Slurm
from executor.cluster.submission import LISTINGS, REFUSED, Submission, load_submission
from executor.errors import InputError, Interrupted, JobFailed, MismatchError, RexecError
from executor.progress import Say
from executor.runner import PREEMPT_SIGNAL
from executor.runtime import default_runtime
from executor.signing import AnyOf, KeyPolicy, SignOptions, TrustPolicy

__all__ = ["run_on_node"]

MASTER_PORT = 29500  # and the next 999: one per job, from its id, so jobs sharing a node differ
INFINIBAND = Path("/dev/infiniband")
# The container's label naming its Slurm job: scripts/slurm-epilog removes what a job left.
JOB_LABEL = "dev.rexec.slurm-job"
PEER_WAIT_S = 600.0
REQUEUE_WAIT_S = 120.0


def _task(sub: Submission, env: Mapping[str, str]) -> int | None:
    if not sub.is_array:
        return None
    raw = env.get("SLURM_ARRAY_TASK_ID", "")
    if not raw.isdigit() or int(raw) >= len(sub.tasks):
        raise InputError(f"SLURM_ARRAY_TASK_ID={raw!r} is not a task of this submission")
    return int(raw)


def _load_spec(sub: Submission, task: int | None) -> spec.RunSpec:
    """The spec as submitted, from the submission itself: its path may have changed since
    (its relative paths are still read from its directory, and verified by their pins)."""
    chosen = sub.tasks[task or 0]
    loaded = spec.loads(
        sub.spec_text.encode(),
        source=Path(sub.spec_path),
        overrides=chosen.params,
        seed=chosen.seed,
    )
    inputs = []
    for item in loaded.inputs:  # `from` inputs as the submit host resolved or bound them
        said = sub.from_inputs.get(item.name, {})
        if "from" in said:
            item = replace(item, from_ref=said["from"])
        elif "fromRun" in said:
            item = replace(
                item,
                path=Path(said["path"]),
                digest=said["digest"],
                from_run=said["fromRun"],
                from_statement=said["fromStatement"] or None,
                from_signer=said["fromSigner"] or None,
            )
        inputs.append(item)
    return replace(loaded, inputs=tuple(inputs))


def _upstream(sub: Submission) -> TrustPolicy | None:
    """Whose records an input bound to an upstream job is read from: the keys the
    submission names (a pipeline's own, and the one it trusts)."""
    keys = tuple(
        KeyPolicy(pem.encode(), source="a key the submission names") for pem in sub.upstream_keys
    )
    if not keys:
        return None
    return keys[0] if len(keys) == 1 else AnyOf(keys, source="the keys the submission names")


def _vouched(sub: Submission) -> dict[str, snapshot.Vouched]:
    """The inputs as verified on the submit host: their listings (kept, so a changed input
    is named file by file; each the file the submission names by its sha256) and stamps
    (each node's check)."""
    found = {}
    for name, digest in sorted(sub.listings.items()):
        where, data = _bound(sub, f"{name}.listing.json", digest)
        listing = snapshot.Listing.from_json(data, where=where)
        snapshot.keep_listing(listing)
        if name in sub.stamps:
            found[name] = snapshot.Vouched(listing, sub.stamps[name])
    return found


def _bound(sub: Submission, name: str, sha256: str) -> tuple[str, bytes]:
    path = sub.directory / LISTINGS / name
    data = safeio.read_capped(path, cap=1 << 30)
    if sha256_hex(data) != sha256:
        raise MismatchError(f"{path}: not the file the submission names (sha256 {sha256})")
    return str(path), data


def _refuse(directory: Path, exc: RexecError, env: Mapping[str, str]) -> None:
    """Record on shared storage why this node refused the submission (``rexec status``)."""
    doc = {
        "reason": exc.message,
        "node": env.get("SLURMD_NODENAME"),
        "jobId": env.get("SLURM_JOB_ID"),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):
        safeio.write_atomic(directory / REFUSED, json.dumps(doc, sort_keys=True).encode())


def _gpus(run_spec: spec.RunSpec, env: Mapping[str, str]) -> tuple[str, ...] | None:
    """The allocated GPUs as UUIDs, or None when the spec asks for none."""
    indices = gpu_indices(env)
    if run_spec.resources.gpus is None:
        return () if indices else None
    uuids = resolve_allocated(indices)
    wanted = run_spec.resources.gpus
    if isinstance(wanted, int) and wanted != len(uuids):
        raise InputError(
            f"[resources] gpus = {wanted} but Slurm allocated {len(uuids)} GPU(s) on this node"
        )
    return uuids


def run_on_node(
    directory: Path, *, sha256: str | None, say: Say, env: Mapping[str, str] | None = None
) -> int:
    """Run this node's part of a submission (``sha256``: what the batch script names; a
    submission that does not have it is refused); the process's exit status."""
    env = dict(os.environ if env is None else env)
    try:
        if sha256 is None:
            raise MismatchError(
                f"{directory}: the batch script names no submission digest (a job queued by "
                "an older rexec)",
                hint="submit it again",
            )
        sub = load_submission(directory, sha256=sha256)
        vouched = _vouched(sub)
    except RexecError as exc:
        _refuse(directory, exc, env)
        raise
    task = _task(sub, env)
    restart = int(env.get("SLURM_RESTART_COUNT") or 0)
    rerun = rerun_on_node(sub, upstream=_upstream(sub), say=say) if sub.rerun else None
    if sub.rerun and rerun is None:
        prune(sub.directory, "every input it replaces came out of its upstream unchanged")
        say("pruned: every input this step replaces came out of its upstream unchanged")
        return 0
    run_spec = rerun.run_spec if rerun is not None else _load_spec(sub, task)
    slurm = Slurm(env)
    nodelist = env.get("SLURM_JOB_NODELIST", "")
    nodes = slurm.hostnames(nodelist) if nodelist else []
    rank = int(env.get("SLURM_NODEID") or 0)
    gpus = _gpus(run_spec, env)
    identity = job_identity(
        env,
        nodes=nodes,
        gpu_uuids=gpus or (),
        submit_host=sub.submit_host,
        site={k: v for k, v in sub.site.__dict__.items()},
    )
    identity["submission"] = {"runId": sub.run_id, "task": task, "attempt": restart}
    if sub.is_array:
        identity["sweep"] = {
            "runId": sub.run_id,
            "task": task,
            "tasks": len(sub.tasks),
            "overrides": {k: v for k, v in sub.tasks[task or 0].params}
            | (
                {"seed": sub.tasks[task or 0].seed} if sub.tasks[task or 0].seed is not None else {}
            ),
        }
    devices: tuple[str, ...] = ()
    if len(nodes) > 1:
        run_spec, identity = _rendezvous(
            run_spec, identity, slurm=slurm, nodes=nodes, rank=rank, job_id=env["SLURM_JOB_ID"]
        )
        devices = infiniband_devices(INFINIBAND)
    run_id = sub.task_run_id(task, restart)
    sign = dict(sub.sign)
    options = runner.RunOptions(
        runs_dir=Path(sub.runs_dir),
        sign=SignOptions(
            method=sign.get("method", "key"),
            key_path=Path(str(sign["key_path"])) if sign.get("key_path") else None,
            trust_config=Path(str(sign["trust_config"])) if sign.get("trust_config") else None,
            allow_prompt=False,
        ),
        allow_dirty=sub.allow_dirty,
        say=say,
        run_id=run_id if rank == 0 else f"{run_id}-node{rank}",
        scheduler=identity,
        labels={JOB_LABEL: str(env.get("SLURM_JOB_ID", ""))},
        devices=devices,
        vouched_inputs=None if sub.rehash_inputs else vouched,
        upstream=_upstream(sub),
        allocated_gpus=gpus,
        allocated_cpus=allocated_cpus(env),
        allocated_memory=allocated_memory(env),
        peers=_wait_for_peers(sub, restart, len(nodes)) if rank == 0 and len(nodes) > 1 else None,
        # kept on shared storage from one attempt to the next, one per task and node
        checkpoint_dir=sub.directory / f"checkpoint-{task or 0}{f'-node{rank}' if rank else ''}",
    )
    if rerun is not None:  # a regeneration step: the record says what it derives from
        options = replace(options, lineage=rerun.lineage, params_json=rerun.params_json)
    if rank != 0:
        options = replace(options, runs_dir=_attempt_dir(sub, restart))
        _attempt_dir(sub, restart).mkdir(exist_ok=True)
    # A service of the job's own (Podman's), on its own socket: it ends with the job, and
    # another job of the same user on this node never loses its engine when this one ends.
    runtime = default_runtime(
        sub.extra.get("runtime") or run_spec.engine, service=f"slurm-{_job_ref(env)}-{rank}"
    )
    try:
        with _preemption_told(slurm, _job_ref(env)):
            result = runner.run(run_spec, options=options, runtime=runtime)
    except (RexecError, KeyboardInterrupt) as exc:
        if rank != 0:  # rank 0 must not wait for a report that never comes
            _report_failure(sub, restart, rank, exc)
        elif getattr(exc, "signal_name", None) == PREEMPT_SIGNAL and sub.site.requeue:
            # The warning before pre-emption or the time limit: this attempt is recorded as
            # `preempted`; the job goes back to the queue to resume from its checkpoint.
            slurm.requeue(_job_ref(env))
            say(f"requeued Slurm job {_job_ref(env)}: the next attempt resumes the work")
            # Slurm ends this attempt itself once the requeue is under way (SIGTERM, then
            # Interrupted here): the attempt's end is the requeue's, never a race with it.
            time.sleep(REQUEUE_WAIT_S)
            say(f"Slurm did not end this attempt within {REQUEUE_WAIT_S:g} s of its requeue")
        raise
    finally:
        runtime.close()
    if rank != 0:
        _report_to_rank0(sub, restart, rank, result)
    if result.status.status != "succeeded":
        raise JobFailed(
            f"the job {result.status.status} (exit code {result.status.exit_code}); recorded "
            f"in {result.run_dir}",
            hint=runner.failure_hint(result.run_dir, outputs_mount=run_spec.outputs_mount),
        )
    return 0


@contextlib.contextmanager
def _preemption_told(slurm: Slurm, job_ref: str) -> Iterator[None]:
    """Slurm pre-empts a job with SIGTERM (then SIGKILL after the partition's GraceTime),
    as it cancels one: ask it which this is, so the record says ``preempted``."""

    def stop(signum: int, frame: object) -> None:
        try:
            preempting = slurm.preempting(job_ref)
        except RexecError:
            preempting = False
        said = "Slurm is pre-empting the job" if preempting else None
        raise Interrupted("SIGTERM", preempted_by=said)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _job_ref(env: Mapping[str, str]) -> str:
    """This job as scontrol names it: an array task is ``<array job>_<task>``."""
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else str(env.get("SLURM_JOB_ID", ""))


def _rendezvous(
    run_spec: spec.RunSpec,
    identity: dict[str, Any],
    *,
    slurm: Slurm,
    nodes: list[str],
    rank: int,
    job_id: str,
) -> tuple[spec.RunSpec, dict[str, Any]]:
    """The rendezvous variables of a multi-node job (one process per node: its rank is the
    node's), in the job's environment and the record."""
    master = slurm.node_address(nodes[0])
    rendezvous = {
        "MASTER_ADDR": master,
        "MASTER_PORT": str(MASTER_PORT + int(job_id) % 1000 if job_id.isdigit() else MASTER_PORT),
        "WORLD_SIZE": str(len(nodes)),
        "RANK": str(rank),
        "NODE_RANK": str(rank),
        "LOCAL_RANK": "0",
    }
    env = {**run_spec.run.env, **rendezvous}
    per_node = {"RANK": None, "NODE_RANK": None}  # each node's record names its own rank
    identity = {**identity, "rendezvous": {**rendezvous, **per_node}, "nodeRank": rank}
    return replace(run_spec, run=replace(run_spec.run, env=env)), identity


def infiniband_devices(directory: Path) -> tuple[str, ...]:
    """The node's InfiniBand character devices (verbs, RDMA CM), for the ranks' container;
    none where the node has no InfiniBand."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return ()
    return tuple(e.path for e in entries if stat.S_ISCHR(e.stat(follow_symlinks=False).st_mode))


def _attempt_dir(sub: Submission, restart: int) -> Path:
    return sub.directory / f"attempt-{restart}"


def _report_to_rank0(sub: Submission, restart: int, rank: int, result: runner.RunResult) -> None:
    """What this node ran, where rank 0 looks for it."""
    host = safeio.read_capped(result.run_dir / "host.json", cap=4 << 20)
    doc = {
        "rank": rank,
        "node": os.environ.get("SLURMD_NODENAME"),
        "runId": result.run_id,
        "statementSha256": result.statement_sha256,
        **result.status.to_json(),
        "outputs": {s.name: s.sha256 for s in result.subjects},
        "host": json.loads(host),
    }
    target = _attempt_dir(sub, restart) / f"node-{rank}.json"
    safeio.write_atomic(target, json.dumps(doc, sort_keys=True).encode())


def _report_failure(sub: Submission, restart: int, rank: int, exc: BaseException) -> None:
    doc = {
        "rank": rank,
        "node": os.environ.get("SLURMD_NODENAME"),
        "status": "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed-before-run",
        "reason": getattr(exc, "message", None) or repr(exc),
    }
    target = _attempt_dir(sub, restart) / f"node-{rank}.json"
    safeio.write_atomic(target, json.dumps(doc, sort_keys=True).encode())


def _wait_for_peers(sub: Submission, restart: int, world: int) -> Callable[[], dict[str, Any]]:
    """Rank 0's hook: every other node's report, once its job has ended (or a deadline)."""

    def wait() -> dict[str, Any]:
        deadline = time.monotonic() + PEER_WAIT_S
        reports: dict[int, Any] = {}
        while len(reports) < world - 1 and time.monotonic() < deadline:
            for rank in range(1, world):
                path = _attempt_dir(sub, restart) / f"node-{rank}.json"
                if rank not in reports and path.exists():
                    reports[rank] = json.loads(safeio.read_capped(path, cap=8 << 20))
            if len(reports) < world - 1:
                time.sleep(0.2)
        nodes = [
            reports.get(r) or {"rank": r, "status": "missing", "reason": "no report from the node"}
            for r in range(1, world)
        ]
        failed = [n["rank"] for n in nodes if n.get("status") != "succeeded"]
        return {"nodes": nodes, "failed": failed}

    return wait

"""``rexec submit`` on the submit host: check everything, render the batch script, queue it.

Everything that can fail without a node fails here, before anything is queued:
the spec (exit 2), every sweep task's overrides (2), each input snapshot and
the code against their pins (4), a request Slurm cannot express (GPU UUIDs,
2). sbatch's own refusal (an unknown partition) is exit 2 with its reason,
and the submission directory is removed again: nothing is left queued or
half-written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import runner, safeio, snapshot, spec
from executor.canonical import sha256_hex
from executor.cluster.engines import engine_check
from executor.cluster.slurm import Slurm
from executor.cluster.submission import (
    JOBS_DIR,
    LISTINGS,
    SCRIPT,
    SUBMISSION,
    FromLinks,
    SiteOptions,
    Submission,
    SweepTask,
)
from executor.errors import InputError, MismatchError
from executor.progress import Say
from executor.record import writer
from executor.signing import SignOptions, key_file, make_signer

__all__ = [
    "checked_site",
    "export_names",
    "new_submission",
    "node_signing",
    "queue",
    "render_script",
    "submit",
    "time_limit",
    "with_resources",
]

# What the node's rexec needs from the submit shell, when set there. Names only: the values
# travel in Slurm's job environment, never into the script, the submission or the record.
PASSED_THROUGH = (
    "REXEC_CACHE_DIR",
    "REXEC_CATALOG",
    "REXEC_CONFIG_DIR",
    "REXEC_SIGNING_KEY",
    "REXEC_SIGNING_KEY_FILE",
    "REXEC_SIGNING_KEY_PASSWORD",
    "DOCKER_HOST",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
)


def export_names(run_spec: spec.RunSpec, env: dict[str, str]) -> list[str]:
    """``--export=NONE,<these>``: what rexec needs and the spec's declared secrets, by name.

    Slurm's default (``ALL``) would copy the whole submit shell, tokens and
    all, into the job; only names are listed, values travel in Slurm's own
    job environment and never into the script or the record.
    """
    names = [n for n in PASSED_THROUGH if n in env]
    return names + [n for n in run_spec.run.secrets if n not in names]


def node_command() -> list[str]:
    """How the node starts rexec: this interpreter, which a cluster shares with its nodes."""
    return [sys.executable, "-m", "executor"]


def log_name(sub: Submission) -> str:
    """A later attempt's log name before its ``-r<n>.out``, as the batch shell sees it."""
    if sub.is_array:
        return "slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    return "slurm-${SLURM_JOB_ID}"


def render_script(sub: Submission, *, name: str, export: Sequence[str], sha256: str) -> str:
    """A plain sbatch script: every choice an ``#SBATCH`` line, then rexec on the node with
    the sha256 of the submission it must find (Slurm keeps this script; the job owner
    cannot rewrite Slurm's copy on shared storage)."""
    site = sub.site
    directory = sub.directory
    log = ("slurm-%A_%a" if sub.is_array else "slurm-%j") + ".out"
    flags = [
        f"--job-name=rexec-{name}",
        f"--output={directory / log}",
        f"--export={','.join(['NONE', *export])}",
        f"--nodes={site.nodes}",
        "--ntasks-per-node=1",
        "--requeue" if site.requeue else "--no-requeue",
        "--open-mode=append",  # Slurm's own lines of every attempt are kept
    ]
    for flag, value in (
        ("partition", site.partition),
        ("account", site.account),
        ("qos", site.qos),
        ("constraint", site.constraint),
        ("time", site.time),
        ("gpus-per-node", site.gpus_per_node),
        ("cpus-per-task", site.cpus_per_task),
        ("mem", site.mem),
    ):
        if value is not None:
            flags.append(f"--{flag}={value}")
    if site.signal:
        flags.append(f"--signal=B:{site.signal}")
    if sub.is_array:
        flags.append(f"--array=0-{len(sub.tasks) - 1}")
    flags.extend(site.extra)
    command = [*node_command(), "slurm-node", str(directory), "--submission-sha256", sha256]
    if site.nodes > 1:
        # One rexec agent per node; srun forwards the job's signals to each. --export=ALL:
        # sbatch --export=NONE sets SLURM_EXPORT_ENV=NONE for the job, so srun would give
        # the other ranks no environment at all; ALL passes exactly what the batch got.
        command = ["srun", "--export=ALL", "--ntasks-per-node=1", "--kill-on-bad-exit=0", *command]
    lines = [
        "#!/bin/bash",
        f"# Written by `rexec submit` for run {sub.run_id}; kept beside the job's logs.",
        f"# spec: {sub.spec_path} (sha256 {sub.spec_sha256}), copied into submission.json;",
        "# the node runs that copy only if submission.json still has the sha256 named below.",
        *(f"#SBATCH {shlex.quote(f)}" for f in flags),
        "set -u",
        # Each attempt of a requeued job writes its own log beside the first one's.
        'restart="${SLURM_RESTART_COUNT:-0}"',
        'if [ "$restart" != 0 ]; then',
        f'    exec >>{shlex.quote(str(directory))}/"{log_name(sub)}-r$restart.out" 2>&1',
        "fi",
        # exec: rexec is the batch shell, so Slurm's TERM and --signal=B: reach it directly.
        "exec " + " ".join(shlex.quote(c) for c in command),
        "",
    ]
    return "\n".join(lines)


def submit(
    spec_path: Path,
    *,
    site: SiteOptions,
    tasks: Sequence[SweepTask],
    runs_dir: Path,
    sign: Mapping[str, object],
    allow_dirty: bool,
    dry_run: bool,
    say: Say,
    slurm: Slurm | None = None,
    engine: str | None = None,
    rehash_inputs: bool = False,
    links: FromLinks | None = None,
) -> tuple[Submission, str]:
    """Check, render and (unless ``dry_run``) queue; the submission and its script."""
    data, _ = spec.read_document(spec_path)
    source = spec_path.resolve()
    declared = spec.loads(data, source=source)
    for task in tasks:  # every task's overrides are type-checked now, not on the node
        spec.loads(data, source=source, overrides=task.params, seed=task.seed)
    site = checked_site(declared, site, engine=engine, say=say)
    links = links or FromLinks()
    run_spec, from_inputs = _resolve_from(declared, links, runs_dir=runs_dir, say=say)
    try:
        spec_text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # spec.loads read it as UTF-8 already
        raise InputError(f"{spec_path}: not UTF-8 ({exc})") from exc
    sub = new_submission(
        run_spec,
        spec_path=str(source),
        spec_text=spec_text,
        runs_dir=runs_dir,
        site=site,
        sign=sign,
        tasks=tuple(tasks),
        allow_dirty=allow_dirty,
        extra={"runtime": engine} if engine else {},
        rehash_inputs=rehash_inputs,
        from_inputs=from_inputs,
        upstream_keys=links.keys,
    )
    return queue(sub, run_spec, dry_run=dry_run, say=say, slurm=slurm)


def checked_site(
    run_spec: spec.RunSpec, site: SiteOptions, *, engine: str | None, say: Say
) -> SiteOptions:
    """The site options with the spec's resources filled in, checked with the engine the
    nodes will use, before anything is written."""
    site = with_resources(run_spec, site)
    _check_resources(run_spec, site)
    engine_check(engine or run_spec.engine or "docker", say=say)
    return site


def new_submission(run_spec: spec.RunSpec, *, runs_dir: Path, **fields: Any) -> Submission:
    """A submission of ``run_spec`` from this host, now, under a new run id."""
    text = fields.pop("spec_text")
    return Submission(
        run_id=writer.new_run_id(run_spec.name),
        spec_sha256=sha256_hex(text.encode()),
        spec_text=text,
        runs_dir=str(runs_dir.resolve()),
        secret_names=tuple(run_spec.run.secrets),
        submit_host=socket.gethostname(),
        submitted_at=datetime.now(UTC).isoformat(timespec="seconds"),
        **fields,
    )


def queue(
    sub: Submission, run_spec: spec.RunSpec, *, dry_run: bool, say: Say, slurm: Slurm | None
) -> tuple[Submission, str]:
    """Verify ``run_spec``'s inputs and code (their listings and stamps travel with the
    submission), render the script and, unless ``dry_run``, write it all and sbatch it."""
    runner.check_runs_dir(run_spec, Path(sub.runs_dir))
    before = _stamps(run_spec)
    snapshots, _ = runner.check_pins(run_spec, allow_dirty=sub.allow_dirty, say=say)
    sub.stamps = _unchanged(before, _stamps(run_spec), snapshots)
    listings = {
        name: json.dumps(snap.listing.to_json(), sort_keys=True).encode()
        for name, snap in snapshots.items()
    }
    sub.listings = {name: sha256_hex(data) for name, data in listings.items()}
    encoded = sub.encoded()
    script = render_script(
        sub,
        name=run_spec.name,
        export=export_names(run_spec, dict(os.environ)),
        sha256=sha256_hex(encoded),
    )
    if dry_run:
        return sub, script
    directory = sub.directory
    directory.mkdir(parents=True)
    try:
        (directory / LISTINGS).mkdir()
        for name, listing in listings.items():
            safeio.write_atomic(directory / LISTINGS / f"{name}.listing.json", listing)
        safeio.write_atomic(directory / SUBMISSION, encoded)
        safeio.write_atomic(directory / SCRIPT, script.encode())
        job_id = (slurm or Slurm()).submit(directory / SCRIPT)
    except BaseException:
        safeio.rmtree(directory)  # nothing half-written, nothing queued
        raise
    sub.save_job_id(job_id)
    index = Path(sub.runs_dir) / JOBS_DIR / "by-job"
    index.mkdir(exist_ok=True)
    safeio.write_atomic(index / job_id, sub.run_id.encode() + b"\n")
    return sub, script


def node_signing(chosen: SignOptions) -> dict[str, str | None]:
    """The signing the node will do, checked here: no prompt can reach a batch job."""
    if chosen.method == "sigstore" and chosen.identity_token:
        raise InputError(
            "--identity-token cannot travel to a node (it is a secret and expires)",
            hint="use --sign key on a cluster, or ambient credentials on the nodes",
        )
    if chosen.method == "key":
        make_signer(replace(chosen, allow_prompt=False))  # a missing or locked key fails now
    path = key_file(chosen, os.environ) if chosen.method == "key" else None
    return {
        "method": chosen.method,
        "key_path": str(path.resolve()) if path else None,
        "trust_config": str(chosen.trust_config.resolve()) if chosen.trust_config else None,
    }


def _resolve_from(
    declared: spec.RunSpec, links: FromLinks, *, runs_dir: Path, say: Say
) -> tuple[spec.RunSpec, dict[str, dict[str, str]]]:
    """The spec whose inputs the submit host checks (a ``from`` input resolved and its
    record verified now, so the node reads what was verified here; one bound to a job not
    run yet left out), and what the submission says of each ``from`` input."""
    unknown = sorted(set(links.refs) - {i.name for i in declared.inputs if i.from_ref})
    if unknown:
        raise InputError(f"inputs {unknown[0]!r}: not a `from` input of {declared.name}")
    if links.deferred and not links.keys:
        raise InputError(
            "an input from a job that has not run needs the public keys its record is "
            "verified with on the node",
            hint="sign the pipeline with a key (--signing-key) or trust one (--key)",
        )
    chosen = tuple(
        dataclasses.replace(i, from_ref=links.refs[i.name]) if i.name in links.refs else i
        for i in declared.inputs
    )
    now = dataclasses.replace(
        declared, inputs=tuple(i for i in chosen if i.name not in links.deferred)
    )
    resolved = runner.resolve_from_inputs(
        now, runs_dir=runs_dir, policy=links.policy, verified=None, say=say
    )
    found: dict[str, dict[str, str]] = {
        name: {"from": links.refs[name]} for name in sorted(links.deferred)
    }
    for item in resolved.inputs:
        if item.from_run is not None:
            found[item.name] = {
                "path": str(item.path),
                "digest": item.digest,
                "fromRun": item.from_run,
                "fromStatement": item.from_statement or "",
                "fromSigner": item.from_signer or "",
            }
    return resolved, found


def _stamps(run_spec: spec.RunSpec) -> dict[str, snapshot.stamps.Taken]:
    """Every input's stamps (check_pins names an input that is not a directory)."""
    return {
        item.name: snapshot.stamps.take(item.path) for item in run_spec.inputs if item.path.is_dir()
    }


def _unchanged(
    before: Mapping[str, snapshot.stamps.Taken],
    after: Mapping[str, snapshot.stamps.Taken],
    snapshots: Mapping[str, snapshot.Snapshot],
) -> dict[str, str]:
    """The stamps the nodes check against, if nothing was written while the inputs were
    hashed (else the hash may be of bytes no longer there); an input whose stamps do not
    cover its whole listing (a file system mounted inside it) is hashed on each node."""
    for name, taken in before.items():
        if taken != after[name]:
            raise MismatchError(
                f"input {name!r} changed while it was being verified",
                hint="submit again once nothing writes to it; nothing was queued",
            )
    return {
        name: taken.stamps
        for name, taken in after.items()
        if taken.entries == len(snapshots[name].listing.entries) + 1
    }


def with_resources(run_spec: spec.RunSpec, site: SiteOptions) -> SiteOptions:
    """``[resources]`` and the timeout as sbatch asks for them, where the command line did
    not say: ``cpus`` → ``--cpus-per-task``, ``memory`` → ``--mem``, a GPU count →
    ``--gpus-per-node``, ``run.timeout`` → ``--time`` with :func:`time_limit`'s margin."""
    res = run_spec.resources
    changes: dict[str, object] = {}
    if site.time is None:
        changes["time"] = time_limit(run_spec.run.timeout_s)
    if site.cpus_per_task is None and res.cpus is not None:
        changes["cpus_per_task"] = max(1, math.ceil(res.cpus))
    if site.mem is None and res.memory_bytes is not None:
        changes["mem"] = f"{math.ceil(res.memory_bytes / (1 << 20))}M"
    if site.gpus_per_node is None and isinstance(res.gpus, int):
        changes["gpus_per_node"] = res.gpus
    return replace(site, **changes) if changes else site  # type: ignore[arg-type]


# Beyond the job's own timeout, what the node's rexec needs: verify the inputs, ready the
# image, collect, sign and write the record. A tenth more, and never less than 5 minutes.
TIME_MARGIN = (0.1, 300.0)


def time_limit(timeout_s: float) -> str:
    """Slurm's ``--time`` for a job whose container may run ``timeout_s``: whole minutes,
    with the margin, so Slurm does not kill a job rexec is still recording."""
    share, floor = TIME_MARGIN
    return str(math.ceil((timeout_s + max(floor, share * timeout_s)) / 60))


def _check_resources(run_spec: spec.RunSpec, site: SiteOptions) -> None:
    """What Slurm cannot express, or what contradicts the allocation, is refused now."""
    gpus = run_spec.resources.gpus
    if isinstance(gpus, tuple):
        raise InputError(
            "[resources] gpus names GPU UUIDs, which Slurm cannot allocate",
            hint="use a count (gpus = 2) with --gpus-per-node 2; the record names the UUIDs "
            "the node was given",
        )
    if isinstance(gpus, int) and site.gpus_per_node is not None and gpus != site.gpus_per_node:
        raise InputError(
            f"[resources] gpus = {gpus} but --gpus-per-node {site.gpus_per_node}",
            hint="ask Slurm for the GPUs the spec uses",
        )
    if site.nodes < 1:
        raise InputError(f"--nodes {site.nodes}: expected 1 or more")
    if site.nodes > 1 and not run_spec.security.allow_host_network:
        raise InputError(
            f"--nodes {site.nodes}: the ranks could not reach each other: the job's container "
            f"has network {run_spec.security.network!r}, its own namespace on each node",
            hint="add `[security] allow_host_network = true` to the spec (the host's network, "
            "as HPC containers use it; recorded as an opt-in); nothing was queued",
        )

"""Collect and attest: from a finished container to the run's in-toto Statement.

``collect`` hashes what the job left in its outputs (and moves rexec's own
job metadata out of them); ``statement`` maps everything the run used and
produced onto SLSA Provenance v1 as docs/design.md lays out: outputs are
subjects; image, code and snapshots are resolved dependencies; the resolved
spec is the external parameters; rexec's hardening and environment are the
internal parameters; host capture, inventory, listings, logs, params and the
exit status are byproducts, each written to the record and named by digest.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor import outputs as outputs_policy
from executor import safeio, snapshot, spec
from executor._version import __version__
from executor.canonical import StrictJSONError, canonical_json, strict_loads
from executor.code import ResolvedCode
from executor.errors import RexecError
from executor.images import ResolvedImage
from executor.record import Byproduct, RunStatus, Subject, manifest, writer
from executor.runtime import ContainerRequest, ContainerResult

# The job's reports (the determinism report) go to a directory of their own,
# mounted here, never inside the outputs: rexec reads them on the host, so the
# job must not be able to point them at a host file (see ``read_reports``).
REPORTS_MOUNT = "/rexec/reports"
REPORT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.json$")
REPORT_CAP = 1 << 20  # bytes per report
MAX_REPORTS = 16


@dataclass(frozen=True)
class Collected:
    """What the job left: the subjects, its reports, and what the outputs policy excluded."""

    subjects: tuple[Subject, ...]
    job_meta: Mapping[str, bytes]  # report name → bytes, from the reports directory
    ignored_reports: tuple[str, ...] = ()  # what the job left there that is not a report
    excluded: tuple[outputs_policy.Excluded, ...] = ()  # left in outputs/, not a subject
    # sha256-tree-v1 of outputs/ and of each top-level directory ("outputs/model/"), from
    # the subjects' digests: what a later run pins when it takes them as an input.
    trees: Mapping[str, str] = field(default_factory=dict)


def status_of(
    outcome: ContainerResult,
    *,
    interrupted: KeyboardInterrupt | None = None,
    lost: RexecError | None = None,
) -> RunStatus:
    """``succeeded`` only for exit code 0 without an OOM kill; nothing else passes for it."""
    if lost is not None:
        return RunStatus("infrastructure-failed", None, reason=lost.message)
    if interrupted is not None:
        signal_name = getattr(interrupted, "signal_name", "SIGINT")
        if signal_name == PREEMPT_SIGNAL:
            return RunStatus(
                "preempted", None, reason=f"rexec received {signal_name}, the scheduler's warning"
            )
        return RunStatus("interrupted", None, reason=f"rexec received {signal_name}")
    if outcome.timed_out:
        return RunStatus("timed-out", None, outcome.oom_killed)
    if outcome.exit_code == 0 and not outcome.oom_killed:
        return RunStatus("succeeded", 0)
    return RunStatus("failed", outcome.exit_code, outcome.oom_killed)


def collect(record: writer.RecordWriter, outputs: Path, reports: Path) -> Collected:
    """Hash every output file; take the job's reports into ``job-meta/``."""
    job_meta, ignored = read_reports(reports)
    safeio.rmtree(reports)
    for name, data in job_meta.items():
        record.write(f"{writer.JOB_META}/{name}", data)
    files, excluded = outputs_policy.settle(outputs)
    subjects = [Subject(name, safeio.sha256_file(path)) for name, path in files]
    trees = output_trees(outputs, subjects)
    return Collected(tuple(subjects), job_meta, tuple(ignored), tuple(excluded), trees)


def output_trees(outputs: Path, subjects: Iterable[Subject]) -> dict[str, str]:
    """The tree digests of ``outputs/`` and its top-level directories, keyed as the
    Statement names them (``outputs/``, ``outputs/model/``); verify checks them."""
    trees = snapshot.trees_of(outputs, {s.name: s.sha256 for s in subjects})
    return {f"{writer.OUTPUTS}/{name}": digest for name, digest in trees.items()}


DETERMINISM_REPORT = "determinism.json"
# The signal a scheduler sends before it pre-empts a job (`sbatch --signal=B:USR2@60`):
# the run stops and is recorded as `preempted` rather than `interrupted`.
PREEMPT_SIGNAL = "SIGUSR2"


def determinism_state(job_meta: Mapping[str, bytes], frameworks: Iterable[str]) -> dict[str, Any]:
    """Whether the job's determinism report came back, and who wrote it.

    ``mode`` is ``helper`` (the job called seed_everything()), ``automatic``
    (rexec's start-up hook applied what it could) or ``absent`` (no Python of
    the job reported: a non-Python job, ``python -I``/``-S``, or a job that died
    first). Read from the job's own file, so anything else is ``unrecognised``.
    """
    wanted = sorted(frameworks)
    data = job_meta.get(DETERMINISM_REPORT)
    if data is None:
        return {"report": "absent", "requested": wanted}
    try:
        mode = strict_loads(data).get("mode")
    except (StrictJSONError, AttributeError):
        mode = None
    if mode not in ("helper", "automatic"):
        mode = "unrecognised"
    return {"report": mode, "requested": wanted}


def read_reports(reports: Path) -> tuple[dict[str, bytes], list[str]]:
    """The job's reports: small regular ``*.json`` files at the top of ``reports``.

    The job wrote this directory, so anything else in it (a link to a host
    file, a FIFO, a huge file, a subdirectory, a strange name) is ignored and
    named, never opened by following it or read without a cap.
    """
    found: dict[str, bytes] = {}
    ignored: list[str] = []
    try:
        names = sorted(os.listdir(os.fsencode(reports)))
    except FileNotFoundError:
        return found, ignored
    for raw in names:
        name = raw.decode("utf-8", "backslashreplace")
        if len(found) >= MAX_REPORTS or not REPORT_NAME_RE.match(name):
            ignored.append(f"{name!r}: not a report name (at most {MAX_REPORTS} *.json)")
            continue
        try:
            found[name] = safeio.read_capped(reports / name, cap=REPORT_CAP)
        except (safeio.UnsafeFile, OSError) as exc:
            ignored.append(f"{name}: {getattr(exc, 'message', None) or exc}")
    return found, ignored


def statement(
    run_spec: spec.RunSpec,
    *,
    run_id: str,
    request: ContainerRequest,
    outcome: ContainerResult,
    status: RunStatus,
    collected: Collected,
    code: ResolvedCode | None,
    snapshots: Mapping[str, snapshot.Snapshot],
    image: ResolvedImage,
    host: Mapping[str, Any],
    inventory: Mapping[str, Any],
    record: writer.RecordWriter,
    secret_names: Iterable[str],
    extra_internal: Mapping[str, Any],
) -> dict[str, Any]:
    """The Statement for this run; also writes the byproducts it names into the record."""
    secrets = sorted(secret_names)
    view = spec.resolved_view(run_spec)
    internal = {
        "hardening": request.hardening.describe(),
        "user": request.user,
        "pidsLimit": request.pids_limit,
        # Secret values are in the job's environment, never in the record.
        "environment": {k: v for k, v in sorted(request.env.items()) if k not in secrets},
        "secretNames": secrets,
        "gpuUuids": sorted(request.gpu_uuids),
        "outputTrees": dict(collected.trees),
        **extra_internal,
        "optIns": {
            "allowDirty": bool(code and code.dirty),
            **view["security"],
            **extra_internal.get("optIns", {}),
        },
        "snapshotCache": {
            name: {"used": s.cache_used, "hits": s.cache_hits, "files": s.files}
            for name, s in sorted(snapshots.items())
        },
    }
    return manifest.build_statement(
        subjects=collected.subjects,
        external={"spec": view, "specSha256": run_spec.source_sha256},
        internal=internal,
        dependencies=_dependencies(run_spec, code=code, image=image),
        builder_id=f"rexec://{socket.gethostname()}",
        builder_dependencies=_builder_dependencies(host),
        run_id=run_id,
        started_on=outcome.started_on,
        finished_on=outcome.finished_on,
        status=status,
        byproducts=_byproducts(
            record, host=host, inventory=inventory, listings=snapshots, collected=collected
        ),
        rexec_version=__version__,
    )


def _byproducts(
    record: writer.RecordWriter,
    *,
    host: Mapping[str, Any],
    inventory: Mapping[str, Any],
    listings: Mapping[str, snapshot.Snapshot],
    collected: Collected,
) -> list[Byproduct]:
    products = []
    for name, value in ((writer.HOST, host), (writer.INVENTORY, inventory)):
        data = canonical_json(value)
        record.write(name, data)
        products.append(Byproduct(name, data, "application/json"))
    for name, snap in sorted(listings.items()):
        data = canonical_json(snap.listing.to_json())
        rel = f"{writer.INPUTS}/{name}.listing.json"
        record.write(rel, data)
        products.append(Byproduct(rel, data, "application/json"))
    for rel in (f"{writer.LOGS}/stdout.log", f"{writer.LOGS}/stderr.log"):
        # Logs can be any size: hashed as a stream, never read whole.
        digest = safeio.sha256_file(record.path(rel))
        products.append(Byproduct(rel, b"", "text/plain", sha256=digest))
    products.append(
        Byproduct(writer.PARAMS, record.path(writer.PARAMS).read_bytes(), "application/json")
    )
    for name, data in sorted(collected.job_meta.items()):
        products.append(Byproduct(f"{writer.JOB_META}/{name}", data, "application/json"))
    if collected.excluded:
        data = canonical_json([e.to_json() for e in collected.excluded])
        record.write(outputs_policy.EXCLUDED, data)
        products.append(Byproduct(outputs_policy.EXCLUDED, data, "application/json"))
    return products


def _dependencies(
    run_spec: spec.RunSpec, *, code: ResolvedCode | None, image: ResolvedImage
) -> list[dict[str, Any]]:
    deps = [image.dependency()]
    if code:
        deps.append(code.dependency())
    for item in run_spec.inputs:
        algo, hexdigest = item.digest.split(":")
        deps.append(
            {
                "name": f"input:{item.name}",
                "digest": {algo: hexdigest},
                "annotations": {
                    "mount": item.mount,
                    "readOnly": True,
                    "hostPath": str(item.path),
                    # Another run's outputs: the Statement it comes from and who it was
                    # verified to be signed by, so the chain of Statements can be walked
                    # offline from a model back to raw data (`rexec verify --chain`).
                    **(
                        {
                            "from": item.from_ref,
                            "fromRun": item.from_run,
                            "fromStatementSha256": item.from_statement,
                            **({"fromSigner": item.from_signer} if item.from_signer else {}),
                        }
                        if item.from_run
                        else {}
                    ),
                },
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

"""A run's third phase, on paper: the in-toto Statement, and the files it names.

``attest`` maps everything the run used and produced onto SLSA Provenance v1 as
docs/design.md lays out: outputs are subjects; image, code and snapshots are
resolved dependencies; the resolved spec is the external parameters; rexec's
hardening and environment are the internal parameters; host capture, inventory,
listings, logs, params, the job's reports and the exit status are byproducts, each
named by digest. It writes nothing: it returns the Statement and the files to write
beside it, and the runner writes them.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from executor import outputs as outputs_policy
from executor import owner, spec
from executor._version import __version__
from executor.canonical import canonical_json
from executor.code import ResolvedCode
from executor.images import ResolvedImage
from executor.record import Byproduct, manifest, writer
from executor.runner.execute import Execution
from executor.runner.options import RunOptions
from executor.runner.request import Job


@dataclass(frozen=True)
class Attestation:
    """The Statement (canonical JSON, what is signed) and the record files it names that
    rexec writes (the job's outputs and logs are already in place)."""

    statement: Mapping[str, Any]
    payload: bytes
    files: Mapping[str, bytes]


def attest(job: Job, ran: Execution, options: RunOptions) -> Attestation:
    """The run's Statement and the byproduct files it names by digest."""
    view = spec.resolved_view(job.spec)
    internal = _internal(job, ran, options, security=view["security"])
    builder = _builder_dependencies(job.host)
    files = _files(job, ran)
    byproducts = _byproducts(job, ran, files)
    dependencies = _dependencies(job.spec, code=job.checked.code, image=job.image.resolved)
    statement = manifest.build_statement(
        subjects=ran.collected.subjects,
        external={"spec": view, "specSha256": job.spec.source_sha256},
        internal=internal,
        dependencies=dependencies,
        builder_id=f"rexec://{socket.gethostname()}",
        builder_dependencies=builder,
        run_id=job.run_id,
        started_on=ran.outcome.started_on,
        finished_on=ran.outcome.finished_on,
        status=ran.status,
        byproducts=byproducts,
        rexec_version=__version__,
    )
    return Attestation(statement, manifest.dumps(statement), files)


def _internal(
    job: Job, ran: Execution, options: RunOptions, *, security: Mapping[str, Any]
) -> dict[str, Any]:
    """rexec's own choices: hardening, environment, the argv that ran, opt-ins, lineage."""
    request, secrets = job.container, list(job.secret_names)
    code = job.checked.code
    return {
        "hardening": request.hardening.describe(),
        "user": request.user,
        "pidsLimit": request.pids_limit,
        # Secret values are in the job's environment, never in the record.
        "environment": {k: v for k, v in sorted(request.env.items()) if k not in secrets},
        "secretNames": secrets,
        "gpuUuids": sorted(request.gpu_uuids),
        "outputTrees": dict(ran.collected.trees),
        # What ran is the recorded command, exactly: the image's entrypoint was replaced.
        "argv": list(request.command),
        "imageEntrypointOverridden": list(job.image.entrypoint),
        **(
            {"scratchWorkdir": dict(ran.collected.scratch)}
            if ran.collected.scratch is not None
            else {}
        ),
        **(
            {"checkpoint": dict(ran.collected.checkpoint)}
            if ran.collected.checkpoint is not None
            else {}
        ),
        "determinism": dict(ran.determinism),
        "invoker": owner.invoker(),
        **({"unenforcedLimits": list(job.unenforced)} if job.unenforced else {}),
        **({"portability": list(job.portability)} if job.portability else {}),
        **({"lineage": dict(options.lineage)} if options.lineage else {}),
        **({"scheduler": dict(options.scheduler)} if options.scheduler else {}),
        **({"nodes": list(ran.peers["nodes"])} if ran.peers else {}),
        **(
            {"pinnedAtRunTime": dict(options.pinned_at_run_time)}
            if options.pinned_at_run_time is not None
            else {}
        ),
        "optIns": {
            "allowDirty": bool(code and code.dirty),
            **security,
            "allowUnpinned": options.allow_unpinned,
            "scratchWorkdir": job.spec.run.scratch_workdir,
        },
        "snapshotCache": {
            name: {"used": s.cache_used, "hits": s.cache_hits, "files": s.files}
            for name, s in sorted(job.checked.snapshots.items())
        },
        # How each input was found to match its pin: "hash" (read, or the stat cache),
        # or "stat" (the submit host's hash, every entry's lstat unchanged since).
        "inputChecks": {name: s.check for name, s in sorted(job.checked.snapshots.items())},
    }


def _files(job: Job, ran: Execution) -> dict[str, bytes]:
    """The record files rexec writes: the host capture, the image inventory, each input's
    listing, the job's reports and what the outputs policy left out."""
    files = {
        writer.HOST: canonical_json(job.host),
        writer.INVENTORY: canonical_json(job.image.inventory),
    }
    for name, snap in sorted(job.checked.snapshots.items()):
        files[f"{writer.INPUTS}/{name}.listing.json"] = canonical_json(snap.listing.to_json())
    for name, data in sorted(ran.collected.job_meta.items()):
        files[f"{writer.JOB_META}/{name}"] = data
    if ran.collected.excluded:
        files[outputs_policy.EXCLUDED] = canonical_json(
            [e.to_json() for e in ran.collected.excluded]
        )
    return files


def _byproducts(job: Job, ran: Execution, files: Mapping[str, bytes]) -> list[Byproduct]:
    products = [
        Byproduct(name, files[name], "application/json") for name in (writer.HOST, writer.INVENTORY)
    ]
    products += [
        Byproduct(name, data, "application/json")
        for name, data in files.items()
        if name.startswith(f"{writer.INPUTS}/")
    ]
    products += [
        Byproduct(rel, b"", "text/plain", sha256=digest)  # hashed as a stream, by collect
        for rel, digest in ran.collected.logs.items()
    ]
    products.append(Byproduct(writer.PARAMS, job.params, "application/json"))
    products += [
        Byproduct(name, data, "application/json")
        for name, data in files.items()
        if name.startswith(f"{writer.JOB_META}/") or name == outputs_policy.EXCLUDED
    ]
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

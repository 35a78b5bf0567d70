"""Planning a replay or a rerun: the original run rebuilt from its signed manifest, with
every pin checked here before a container starts.

The spec file is never read: it may have changed since the run, and the signed
manifest is what an auditor was handed. Host paths come from the dependencies'
``annotations.hostPath``; a missing image, snapshot or code tree is reported with
what the record says it was and where it used to be.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import snapshot, spec
from executor.code import resolve_code
from executor.compare import BREAKS, MAY_BREAK, EnvDiff, classify
from executor.contracts import Contract
from executor.errors import InputError, MismatchError
from executor.host import capture_host
from executor.progress import Say
from executor.record import RunRecord, load_record, verify_record, writer
from executor.runtime import ContainerRuntime
from executor.signing import TrustPolicy


@dataclass(frozen=True)
class Original:
    """A record that passed verification (or whose verification was waived)."""

    record: RunRecord
    verification: str  # "verified by <signer>" | "skipped (--no-verify)"


@dataclass(frozen=True)
class Plan:
    """Everything checked and decided before a container starts."""

    original: Original
    run_spec: spec.RunSpec
    environment: EnvDiff
    lineage: Mapping[str, Any]
    changed_inputs: tuple[Mapping[str, str], ...] = ()


def open_original(target: Path, policy: TrustPolicy | None) -> Original:
    """Verify the record under ``policy``; ``None`` means ``--no-verify`` (recorded)."""
    if policy is None:
        return Original(load_record(target), "skipped (--no-verify)")
    verdict = verify_record(target, policy)
    if verdict.error is not None:
        error = verdict.error
        error.hint = (error.hint + "; " if error.hint else "") + (
            "a record that does not verify is not replayed (--no-verify overrides, and is recorded)"
        )
        raise error
    return Original(load_record(target, payload=verdict.payload), f"verified by {verdict.signer}")


def plan_replay(
    original: Original,
    *,
    inputs: Mapping[str, Path],
    runtime: ContainerRuntime,
    say: Say,
    image: spec.ImageSpec | None = None,
    code_path: Path | None = None,
) -> Plan:
    """The original run, rebuilt from the manifest, with every pin checked here; ``image``
    and ``code_path`` stand in for the recorded ones (an audit bundle's copies)."""
    record = original.record
    run_spec = spec_from_record(record, paths=inputs, digests={}, image=image, code_path=code_path)
    check_record_pins(run_spec, record, runtime=runtime, say=say)
    lineage = {
        "replayOf": record.run_id,
        "originalStatementSha256": record.statement_sha256,
        "verification": original.verification,
    }
    return Plan(original, run_spec, _environment(record, runtime), lineage)


def plan_rerun(
    original: Original,
    *,
    changes: Mapping[str, Path],
    runtime: ContainerRuntime,
    say: Say,
) -> Plan:
    """The original run with snapshots replaced; each replacement must actually differ."""
    record = original.record
    if not changes:
        raise InputError(
            "rerun needs at least one --input NAME=NEW_PATH",
            hint="to run the same inputs again use `rexec replay`",
        )
    recorded = {i["name"]: i["digest"] for i in record.spec.get("inputs", [])}
    _check_names(changes, recorded)
    digests: dict[str, str] = {}
    changed = []
    for name, path in sorted(changes.items()):
        _require_dir(name, path, recorded_at=None)
        algo = recorded[name].split("-tree-v1:")[0]
        say(f"hashing the corrected input {name} at {path}")
        digests[name] = snapshot.hash_tree(path, algo=algo).digest
        if digests[name] == recorded[name]:
            raise InputError(
                f"--input {name}={path}: the snapshot is unchanged ({recorded[name]})",
                hint="a rerun replaces an input with a corrected one; "
                "to repeat the run with the same data use `rexec replay`",
            )
        changed.append({"name": name, "from": recorded[name], "to": digests[name]})
    run_spec = spec_from_record(record, paths=changes, digests=digests)
    check_record_pins(run_spec, record, runtime=runtime, say=say, skip=set(changes))
    lineage = {
        "derivedFrom": record.run_id,
        "originalStatementSha256": record.statement_sha256,
        "verification": original.verification,
        "changedInputs": changed,
    }
    return Plan(original, run_spec, _environment(record, runtime), lineage, tuple(changed))


def strict_env_check(plan: Plan) -> None:
    """``--strict-env``: refuse a host that may change the numerics."""
    risky = [d for d in plan.environment.differences if d.impact in (BREAKS, MAY_BREAK)]
    if risky:
        raise MismatchError(
            f"this host differs from the recorded one in {len(risky)} way(s) that can "
            "change results; not replaying under --strict-env",
            details=[f"{d.impact}: {d.path}: {d.recorded!r} → {d.current!r}" for d in risky],
            hint="replay on a host like the recorded one, or drop --strict-env to see the verdict",
        )


def spec_from_record(
    record: RunRecord,
    *,
    paths: Mapping[str, Path],
    digests: Mapping[str, str],
    image: spec.ImageSpec | None = None,
    code_path: Path | None = None,
) -> spec.RunSpec:
    """A RunSpec from the manifest; ``paths``/``digests`` replace inputs by name. A signed
    Statement that lacks what a run needs (made by another tool, or by hand) is a clear
    refusal naming what is missing, never a KeyError."""
    try:
        return _spec_from_record(record, paths, digests, image, code_path)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"{record.path}: the signed spec cannot be run again: {type(exc).__name__} {exc}",
            hint="replay, rerun and regenerate rebuild the run from a record `rexec run` wrote; "
            "this one lacks or mangles a field it needs",
        ) from exc


def _spec_from_record(
    record: RunRecord,
    paths: Mapping[str, Path],
    digests: Mapping[str, str],
    image: spec.ImageSpec | None,
    code_path: Path | None,
) -> spec.RunSpec:
    view = record.spec
    recorded = {i["name"]: i for i in view.get("inputs", [])}
    _check_names(paths, recorded)
    inputs = []
    for name, item in sorted(recorded.items()):
        dep = record.dependency(f"input:{name}") or {}
        host_path = (dep.get("annotations") or {}).get("hostPath")
        path = paths.get(name) or (Path(host_path) if host_path else None)
        if path is None:
            raise InputError(
                f"{record.path}: input {name!r} has no recorded host path",
                hint=f"point at a copy with --input {name}=PATH",
            )
        notes = dep.get("annotations") or {}
        inputs.append(
            spec.InputSpec(
                name=name,
                path=path,
                digest=digests.get(name, item["digest"]),
                mount=item["mount"],
                # As the original resolved it: the replay reads the same upstream directory.
                from_ref=item.get("from"),
                from_run=notes.get("fromRun"),
                from_statement=notes.get("fromStatementSha256"),
                from_signer=notes.get("fromSigner"),
                contract=Contract.from_json(item["contract"]) if item.get("contract") else None,
            )
        )
    res = view["resources"]
    gpus = res.get("gpus")
    det = view["determinism"]
    sec = view["security"]
    return spec.RunSpec(
        source=record.path / writer.STATEMENT,
        source_sha256=record.statement_sha256,
        version=int(view["version"]),
        name=str(view["name"]),
        image=image or _image_spec(record),
        run=spec.RunSection(
            command=tuple(view["command"]),
            workdir=str(view["workdir"]),
            env=dict(view.get("env", {})),
            secrets=tuple(view.get("secrets", [])),
            seed=int(view["seed"]),
            timeout_s=float(view["timeoutSeconds"]),
            user=view.get("user"),  # absent in records made before it was recorded
            params_as=str(view.get("paramsAs", "json")),
            scratch_workdir=bool(view.get("scratchWorkdir", False)),
            purpose=view.get("purpose"),
        ),
        inputs=tuple(inputs),
        code=_code_spec(record, code_path),
        outputs_mount=str(view["outputs"]["mount"]),
        # params.json as the job read it: the view is canonical JSON, where 20.0 is 20,
        # and a float param must reach argv as it did ("20.0").
        params=json.loads(record.params_json) if record.params_json else view.get("params", {}),
        overrides=tuple(
            spec.ParamOverride(key=o["key"], default=o["default"], value=o["value"])
            for o in view.get("paramOverrides", [])
        ),
        resources=spec.Resources(
            cpus=res.get("cpus"),
            memory_bytes=res.get("memoryBytes"),
            gpus=tuple(gpus) if isinstance(gpus, list) else gpus,
            pids=int(res.get("pids", 512)),
        ),
        determinism=spec.Determinism(
            tuple(det["frameworks"]), bool(det["strict"]), bool(det.get("automatic", True))
        ),
        signing=spec.Signing(method=view.get("signing", {}).get("method", "key"), key=None),
        security=spec.Security(
            allow_network=bool(sec.get("allowNetwork")),
            allow_host_network=bool(sec.get("allowHostNetwork")),
            allow_root=bool(sec.get("allowRoot")),
            allow_writable_root=bool(sec.get("allowWritableRoot")),
        ),
        tolerances=record.tolerances,
        seed_override=_seed_override(view),
        engine=record.engine,
        checkpoint=_checkpoint(view.get("checkpoint")),
        metrics=record.metrics,
        volatile=record.volatile,
    )


def _checkpoint(view: Any) -> spec.Checkpoint | None:
    if not view:
        return None
    return spec.Checkpoint(str(view["mount"]), float(view["graceSeconds"]))


def _seed_override(view: Mapping[str, Any]) -> spec.ParamOverride | None:
    """The original run's ``--seed``, so the replay's record says the same."""
    given = view.get("seedOverride")
    if not isinstance(given, Mapping):
        return None
    return spec.ParamOverride(key="seed", default=given.get("default"), value=given.get("value"))


def _image_spec(record: RunRecord) -> spec.ImageSpec:
    dep = record.dependency("image")
    if dep is None:
        raise InputError(f"{record.path}: the manifest names no image dependency")
    uri, hexdigest = str(dep.get("uri", "")), str(dep["digest"]["sha256"])
    if uri.startswith("docker-image-id:"):
        return spec.ImageSpec(image_id=f"sha256:{hexdigest}")
    if uri.startswith("oci://"):
        return spec.ImageSpec(ref=f"{uri.removeprefix('oci://')}@sha256:{hexdigest}")
    raise InputError(f"{record.path}: image dependency uri {uri!r} is not one rexec can run")


def _code_spec(record: RunRecord, path: Path | None) -> spec.CodeSpec | None:
    dep = record.dependency("code")
    if dep is None:
        return None
    notes = dep.get("annotations") or {}
    return spec.CodeSpec(path=path or Path(str(notes.get("hostPath"))), mount=str(notes["mount"]))


def _check_names(given: Mapping[str, Any], recorded: Mapping[str, Any]) -> None:
    unknown = sorted(set(given) - set(recorded))
    if unknown:
        raise InputError(
            f"--input {', '.join(unknown)}: no such input in the record",
            hint=f"the record's inputs are: {', '.join(sorted(recorded)) or 'none'}",
        )


def _require_dir(name: str, path: Path, *, recorded_at: Path | None) -> None:
    if path.is_dir():
        return
    where = f" (recorded at {recorded_at})" if recorded_at and recorded_at != path else ""
    raise InputError(
        f"input {name!r}: {path} is not a directory here{where}",
        hint=f"point at a copy with --input {name}=PATH; its digest must still match",
    )


def check_record_pins(
    run_spec: spec.RunSpec,
    record: RunRecord,
    *,
    runtime: ContainerRuntime,
    say: Say,
    skip: set[str] | None = None,
) -> None:
    """Fail before anything runs, naming what is missing and where it was."""
    for item in run_spec.inputs:
        if skip and item.name in skip:
            continue
        dep = record.dependency(f"input:{item.name}") or {}
        recorded_at = (dep.get("annotations") or {}).get("hostPath")
        _require_dir(item.name, item.path, recorded_at=Path(recorded_at) if recorded_at else None)
        say(f"verifying input {item.name} at {item.path} against {item.digest}")
        snapshot.verify_tree(item.path, item.digest, reference=record.listings.get(item.name))
    _check_code(run_spec, record)
    _check_image(run_spec, record, runtime=runtime)


def _check_code(run_spec: spec.RunSpec, record: RunRecord) -> None:
    if run_spec.code is None:
        return
    dep = record.dependency("code") or {}
    digest = dict(dep.get("digest") or {})
    commit = digest.pop("gitCommit", None)
    if len(digest) != 1:
        raise InputError(f"{record.path}: the record's code pin names no single tree digest")
    algo, hexdigest = next(iter(digest.items()))
    expected = f"{algo}:{hexdigest}"
    path = run_spec.code.path
    if not path.is_dir():
        raise InputError(
            f"code: {path} (recorded host path) does not exist here",
            hint=f"check out commit {commit} there; its tree must hash to {expected}",
        )
    found = resolve_code(path, mount=run_spec.code.mount, allow_dirty=True)
    if found.tree_digest != expected:
        raise MismatchError(
            f"code at {path} is {found.tree_digest}, the record pins {expected}",
            details=[f"recorded commit {commit}, checked out {found.commit}"],
            hint=f"`git -C {path} checkout {commit}` and remove uncommitted changes",
        )


def _check_image(run_spec: spec.RunSpec, record: RunRecord, *, runtime: ContainerRuntime) -> None:
    wanted = run_spec.image.image_id
    if wanted is None:
        return  # a registry reference is pulled by digest and checked by the pipeline
    info = runtime.inspect_image(wanted)
    if info is None or info.id != wanted:
        build = ((record.dependency("image") or {}).get("annotations") or {}).get("build") or {}
        details = [f"{k}: {v}" for k, v in sorted(build.items()) if v]
        raise InputError(
            f"image {wanted} (a local build named by the record) is not in this Docker engine",
            details=details,
            hint="load it (`docker load`) or rebuild it from the recorded Dockerfile and "
            "context; a rebuild only matches if the build is reproducible",
        )


def _environment(record: RunRecord, runtime: ContainerRuntime) -> EnvDiff:
    current = capture_host(engine=runtime.engine_info())
    if record.host is None:
        return EnvDiff(())
    return classify(record.host, current, uses_gpu=record.uses_gpu)

"""Re-create a run from its manifest alone, run it again, and give a signed verdict.

replay: verify the record -> spec from the manifest -> check every pin here
        -> classify host differences -> run (the normal pipeline) -> compare
        outputs -> verdict Statement, signed, inside the new record
rerun:  the same, with one or more snapshots replaced by corrected copies;
        the new record names the run it derives from and what changed.

The spec file is never read: it may have changed since the run, and the
signed manifest is what an auditor was handed. Everything the pipeline needs
comes from ``externalParameters.spec`` and ``resolvedDependencies`` (host
paths are in their ``annotations.hostPath``). Pins are checked here, before
the pipeline, so a missing image, snapshot or code tree is reported with
what the record says it was and where it used to be.

The verdict is an in-toto Statement with the test-result predicate (see
docs/replay.md for why), written into the replay record through the
pipeline's ``before_commit`` hook so record and verdict appear together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor import pipeline, snapshot, spec
from executor.canonical import canonical_json, sha256_hex
from executor.code import resolve_code
from executor.compare import IDENTICAL, WITHIN_TOLERANCE, OutputComparison, compare_outputs
from executor.compare.env import BREAKS, MAY_BREAK, EnvDiff, classify
from executor.errors import InputError, MismatchError
from executor.host import capture_host
from executor.record import store
from executor.record.manifest import STATEMENT_TYPE, Subject
from executor.record.reader import RunRecord, load_record
from executor.runtime import ContainerRuntime
from executor.signing import SignOptions, TrustPolicy, make_signer
from executor.verification import TEST_RESULT_TYPE, VERDICT_BUNDLE, VERDICT_FILE, verify_record

VERDICT_SCHEMA = "rexec.replay-verdict/v1"
VERDICT = VERDICT_FILE
BITWISE = "reproduced-bitwise"
WITHIN = "reproduced-within-tolerance"
NOT_REPRODUCED = "not-reproduced"
_RESULTS = {BITWISE: "PASSED", WITHIN: "WARNED", NOT_REPRODUCED: "FAILED"}

Say = Callable[[str], None]


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


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    result: pipeline.RunResult
    verdict: str
    comparison: OutputComparison
    verdict_sha256: str
    signed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "original": self.plan.original.record.summary(),
            "verification": self.plan.original.verification,
            "replay": self.result.to_json(),
            "verdictStatementSha256": self.verdict_sha256,
            "verdictSigned": self.signed,
            "environment": self.plan.environment.to_json(),
            "outputs": self.comparison.to_json(),
        }


@dataclass(frozen=True)
class ExecOptions:
    runs_dir: Path
    sign: SignOptions
    echo_logs: bool = True
    say: Say = field(default=lambda text: None)


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
) -> Plan:
    """The original run, rebuilt from the manifest, with every pin checked here."""
    record = original.record
    run_spec = spec_from_record(record, paths=inputs, digests={})
    _check_pins(run_spec, record, runtime=runtime, say=say)
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
    _check_pins(run_spec, record, runtime=runtime, say=say, skip=set(changes))
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


def execute(
    plan: Plan, *, options: ExecOptions, runtime: ContainerRuntime | None = None
) -> Outcome:
    """Run the plan through the normal pipeline; a replay also gets its verdict."""
    is_replay = not plan.changed_inputs
    holder: dict[str, Any] = {}
    signer = make_signer(options.sign)  # one signer for the run and its verdict

    def before_commit(
        writer: store.RecordWriter, result: pipeline.RunResult, statement: Mapping[str, Any]
    ) -> None:
        comparison = compare_outputs(
            original=plan.original.record.outputs,
            original_dir=plan.original.record.outputs_dir,
            replay=_subjects(result.subjects),
            replay_dir=writer.path(store.OUTPUTS),
            tolerances=plan.run_spec.tolerances,
        )
        holder["comparison"] = comparison
        if not is_replay:
            return
        verdict = decide(comparison, original_status=plan.original.record.status, result=result)
        doc = verdict_statement(plan, result=result, verdict=verdict, comparison=comparison)
        payload = canonical_json(doc)
        writer.write(VERDICT, payload)
        if signer is not None:
            writer.write(VERDICT_BUNDLE, signer.sign_dsse(payload))
        holder.update(verdict=verdict, sha256=sha256_hex(payload), signed=signer is not None)

    run_options = pipeline.RunOptions(
        runs_dir=options.runs_dir,
        sign=options.sign,
        signer=signer,
        allow_dirty=True,  # the code tree was matched against its recorded digest in planning
        echo_logs=options.echo_logs,
        say=options.say,
        lineage=plan.lineage,
        before_commit=before_commit,
        params_json=plan.original.record.params_json,
    )
    result = pipeline.run(plan.run_spec, options=run_options, runtime=runtime)
    return Outcome(
        plan=plan,
        result=result,
        verdict=holder.get("verdict", ""),
        comparison=holder["comparison"],
        verdict_sha256=holder.get("sha256", ""),
        signed=bool(holder.get("signed")),
    )


def decide(
    comparison: OutputComparison, *, original_status: str | None, result: pipeline.RunResult
) -> str:
    if result.status.status != original_status:
        return NOT_REPRODUCED
    if comparison.bitwise:
        return BITWISE
    if comparison.within_tolerance:
        return WITHIN
    return NOT_REPRODUCED


def verdict_statement(
    plan: Plan, *, result: pipeline.RunResult, verdict: str, comparison: OutputComparison
) -> dict[str, Any]:
    """The verdict as an in-toto test-result Statement about the original run's Statement."""
    record = plan.original.record
    status_ok = result.status.status == record.status
    passed = [f"output:{f.name}" for f in comparison.files if f.status == IDENTICAL]
    warned = [f"output:{f.name}" for f in comparison.files if f.status == WITHIN_TOLERANCE]
    failed = [
        f"output:{f.name}"
        for f in comparison.files
        if f.status not in (IDENTICAL, WITHIN_TOLERANCE)
    ]
    (passed if status_ok else failed).append("exit-status")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": f"{record.run_id}/{store.STATEMENT}",
                "digest": {"sha256": record.statement_sha256},
            }
        ],
        "predicateType": TEST_RESULT_TYPE,
        "predicate": {
            "result": _RESULTS[verdict],
            "configuration": [
                {
                    "name": f"{result.run_id}/{store.STATEMENT}",
                    "uri": f"rexec-run:{result.run_id}",
                    "digest": {"sha256": result.statement_sha256},
                }
            ],
            "passedTests": sorted(passed),
            "warnedTests": sorted(warned),
            "failedTests": sorted(failed),
            "rexecReplay": {
                "schema": VERDICT_SCHEMA,
                "verdict": verdict,
                "original": {
                    "runId": record.run_id,
                    "statementSha256": record.statement_sha256,
                    "status": record.status,
                    "verification": plan.original.verification,
                },
                "replay": {
                    "runId": result.run_id,
                    "statementSha256": result.statement_sha256,
                    "status": result.status.status,
                },
                "outputs": comparison.to_json(),
                "environment": plan.environment.to_json(),
            },
        },
    }


def spec_from_record(
    record: RunRecord, *, paths: Mapping[str, Path], digests: Mapping[str, str]
) -> spec.RunSpec:
    """A RunSpec from the manifest; ``paths``/``digests`` replace inputs by name."""
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
        inputs.append(
            spec.InputSpec(
                name=name, path=path, digest=digests.get(name, item["digest"]), mount=item["mount"]
            )
        )
    res = view["resources"]
    gpus = res.get("gpus")
    det = view["determinism"]
    sec = view["security"]
    return spec.RunSpec(
        source=record.path / store.STATEMENT,
        source_sha256=record.statement_sha256,
        version=int(view["version"]),
        name=str(view["name"]),
        image=_image_spec(record),
        run=spec.RunSection(
            command=tuple(view["command"]),
            workdir=str(view["workdir"]),
            env=dict(view.get("env", {})),
            secrets=tuple(view.get("secrets", [])),
            seed=int(view["seed"]),
            timeout_s=float(view["timeoutSeconds"]),
            user=view.get("user"),  # absent in records made before it was recorded
        ),
        inputs=tuple(inputs),
        code=_code_spec(record),
        outputs_mount=str(view["outputs"]["mount"]),
        params=view.get("params", {}),
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
        determinism=spec.Determinism(tuple(det["frameworks"]), bool(det["strict"])),
        signing=spec.Signing(method=view.get("signing", {}).get("method", "key"), key=None),
        security=spec.Security(
            allow_network=bool(sec.get("allowNetwork")),
            allow_root=bool(sec.get("allowRoot")),
            allow_writable_root=bool(sec.get("allowWritableRoot")),
        ),
        tolerances=record.tolerances,
    )


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


def _code_spec(record: RunRecord) -> spec.CodeSpec | None:
    dep = record.dependency("code")
    if dep is None:
        return None
    notes = dep.get("annotations") or {}
    return spec.CodeSpec(path=Path(str(notes.get("hostPath"))), mount=str(notes["mount"]))


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


def _check_pins(
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


def _subjects(subjects: tuple[Subject, ...]) -> dict[str, str]:
    return {s.name: s.sha256 for s in subjects}

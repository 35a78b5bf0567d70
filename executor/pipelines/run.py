"""``rexec pipeline run``: each stage in order, reused when an earlier verified run is the
same computation, run otherwise; a broken contract or a failed job stops what is below it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import catalog, cluster, runner, spec
from executor.contracts import ContractViolation
from executor.errors import RexecError
from executor.pipelines.ledger import write_ledger
from executor.pipelines.options import StageOptions, node_keys
from executor.pipelines.pipefile import Pipeline, Stage
from executor.pipelines.reuse import find_reusable, key_of
from executor.record import RunRecord, load_record, verify_record, writer
from executor.runtime import default_runtime
from executor.signing import KeyPolicy, Signer, TrustPolicy, make_signer

__all__ = ["PipelineOptions", "StageOutcome", "bind_stage_inputs", "run_pipeline"]

SCHEMA = "rexec.pipeline-run/v1"


@dataclass(frozen=True)
class PipelineOptions(StageOptions):
    """How stages are run, signed and trusted for reuse, and which are run regardless."""

    force: frozenset[str] = frozenset()
    # reuse a run a verified regeneration superseded (by default it is not reused: the
    # stage runs again, and the ledger says why)
    reuse_superseded: bool = False


@dataclass
class StageOutcome:
    """What happened to one stage, and why."""

    stage: str
    # ran | reused | submitted | failed | contract-violated | skipped | would-run | would-reuse
    decision: str
    reason: str
    run_id: str | None = None
    run_dir: Path | None = None
    statement_sha256: str | None = None
    key: str | None = None
    details: tuple[str, ...] = ()
    job_id: str | None = None  # the Slurm job a submitted stage runs as

    def to_json(self) -> dict[str, Any]:
        """The stage's entry in the JSON summary and the signed ledger."""
        return {
            "stage": self.stage,
            "decision": self.decision,
            "reason": self.reason,
            "runId": self.run_id,
            "runDir": str(self.run_dir) if self.run_dir else None,
            "statementSha256": self.statement_sha256,
            "stageKey": self.key,
            "details": list(self.details),
            "jobId": self.job_id,
        }


def bind_stage_inputs(run_spec: spec.RunSpec, used: Mapping[str, RunRecord]) -> spec.RunSpec:
    """``from = "latest:<stage>:<path>"`` of a stage this pipeline ran or reused becomes
    ``run:<that run>:<path>``: the run the pipeline chose, not whichever is newest."""
    bound = []
    for item in run_spec.inputs:
        match = spec.FROM_RE.match(item.from_ref or "")
        if match and match.group(1) == "latest" and match.group(2) in used:
            ref = f"run:{used[match.group(2)].run_id}:{match.group(3)}"
            item = dataclasses.replace(item, from_ref=ref)
        bound.append(item)
    return dataclasses.replace(run_spec, inputs=tuple(bound))


def _own_records(options: PipelineOptions, signer: Signer | None) -> TrustPolicy | None:
    """How the records this pipeline makes are verified before a later stage reads them:
    the caller's policy, else this pipeline's own signing key."""
    if options.policy is not None:
        return options.policy
    if signer is not None and signer.public_key_pem:
        return KeyPolicy(signer.public_key_pem, source="this pipeline's signing key")
    return None


def _finished(outcome: StageOutcome, record: RunRecord, decision: str, reason: str) -> None:
    outcome.decision, outcome.reason = decision, reason
    outcome.run_id, outcome.run_dir = record.run_id, record.path
    outcome.statement_sha256 = record.statement_sha256


def run_pipeline(
    pipe: Pipeline, options: PipelineOptions
) -> tuple[list[StageOutcome], Path | None]:
    """Every stage in order; returns the outcomes and the signed ledger's directory
    (None for a dry run). A pipeline stopped by a signal signs its ledger too, with the
    stage it stopped in marked ``interrupted``."""
    started = datetime.now(UTC)
    signer = None if options.dry_run else make_signer(options.sign)
    outcomes: list[StageOutcome] = []
    interrupted: KeyboardInterrupt | None = None
    try:
        _run_stages(pipe, options, signer, outcomes)
    except KeyboardInterrupt as exc:
        interrupted = exc
        if outcomes and outcomes[-1].decision == "failed" and not outcomes[-1].reason:
            outcomes[-1].decision, outcomes[-1].reason = "interrupted", f"rexec was stopped ({exc})"
        done = {o.stage for o in outcomes}
        outcomes += [
            StageOutcome(s.name, "skipped", "the pipeline was interrupted")
            for s in pipe.stages
            if s.name not in done
        ]
    if options.dry_run:
        if interrupted is not None:
            raise interrupted
        return outcomes, None
    ledger = write_ledger(
        options.runs_dir,
        writer.new_run_id(pipe.name),
        kind="pipeline",
        stages=[o.to_json() for o in outcomes],
        about={
            "pipeline": {"name": pipe.name, "file": str(pipe.path), "sha256": pipe.sha256},
            **({"interrupted": str(interrupted)} if interrupted is not None else {}),
        },
        started=started,
        signer=signer,
    )
    catalog.remember_ledger(ledger, say=options.say)
    if interrupted is not None:
        raise interrupted
    return outcomes, ledger


def _run_stages(
    pipe: Pipeline, options: PipelineOptions, signer: Signer | None, outcomes: list[StageOutcome]
) -> None:
    say = options.say
    used: dict[str, RunRecord] = {}
    trusted: dict[str, catalog.Upstream] = {}  # run id -> its record, verified
    stopped: dict[str, str] = {}  # stage -> why its downstream cannot run
    queued: dict[str, StageOutcome] = {}  # stage -> its Slurm job, not run yet
    cat = catalog.open_catalog()
    try:
        for stage in pipe.stages:
            blocked = [n for n in stage.needs if n in stopped]
            pending = [n for n in stage.needs if n not in (*used, *stopped, *queued)]
            if blocked or (stopped and not options.keep_going):
                why = (
                    f"upstream {blocked[0]} {stopped[blocked[0]]}"
                    if blocked
                    else "the pipeline stopped"
                )
                outcomes.append(StageOutcome(stage.name, "skipped", why))
                stopped[stage.name] = "was skipped"
                continue
            if pending:  # a dry run: an upstream stage would run, so these inputs are unknown
                outcomes.append(
                    StageOutcome(
                        stage.name, "would-run", f"its upstream {pending[0]} would run first"
                    )
                )
                continue
            outcome = StageOutcome(stage.name, "failed", "")
            outcomes.append(outcome)
            try:
                after = [queued[n] for n in stage.needs if n in queued]
                if after:  # its inputs exist once those jobs have run: decided on the node
                    _submit(stage, outcome, after, options, signer, bound=used)
                else:
                    _one_stage(stage, outcome, (used, trusted), cat, options, signer)
                if outcome.decision == "submitted":
                    queued[stage.name] = outcome
            except ContractViolation as exc:
                outcome.decision, outcome.reason = "contract-violated", exc.message
                outcome.details = tuple(exc.details)
                stopped[stage.name] = "broke its data contract"
                say(f"stage {stage.name}: {exc.message}")
            except RexecError as exc:
                outcome.reason = exc.message
                outcome.details = tuple(exc.details)
                stopped[stage.name] = "failed"
                say(f"stage {stage.name} failed: {exc.message}")
            if outcome.decision == "failed" and stage.name not in stopped:
                stopped[stage.name] = "failed"
    finally:
        cat.close()


def _one_stage(
    stage: Stage,
    outcome: StageOutcome,
    chosen: tuple[dict[str, RunRecord], dict[str, catalog.Upstream]],
    cat: catalog.Catalog,
    options: PipelineOptions,
    signer: Signer | None,
) -> None:
    say = options.say
    name = stage.name
    used, trusted = chosen
    # a variant reads the variant of each upstream it was made for
    view = {**used, **{base: used[name] for base, name in stage.binds.items() if name in used}}
    run_spec = catalog.resolve_inputs(
        bind_stage_inputs(stage.run_spec, view),
        runs_dir=options.runs_dir,
        catalog=cat,
        policy=options.policy,
        verified=trusted,
        say=say,
    )
    runtime = default_runtime(options.engine or run_spec.engine)
    outcome.key, _ = key_of(run_spec, runtime=runtime, say=say)
    refused: tuple[str, ...] = ()
    if name in options.force or stage.base in options.force:
        why = "forced (--force)"
    else:
        reuse = find_reusable(
            cat,
            outcome.key,
            policy=options.policy,
            say=say,
            superseded_too=options.reuse_superseded,
        )
        refused = reuse.refused
        if reuse.found is not None:
            record = reuse.found.record
            decision = "would-reuse" if options.dry_run else "reused"
            _finished(outcome, record, decision, f"the same inputs as {record.run_id}, verified")
            used[name], trusted[record.run_id] = record, reuse.found
            say(f"stage {name}: reused {record.run_id}")
            return
        why = (
            "no trust policy (--key or --identity) to verify an earlier run with"
            if options.policy is None
            else "no earlier verified run with these inputs"
            + (f" ({len(refused)} matching run(s) did not verify)" if refused else "")
        )
    outcome.details = refused
    if options.dry_run:
        outcome.decision, outcome.reason = "would-run", why
        return
    if options.site is not None:
        _submit(stage, outcome, [], options, signer, bound=used)
        return
    say(f"stage {name}: running ({why})")
    result = runner.run(
        run_spec,
        options=runner.RunOptions(
            runs_dir=options.runs_dir,
            sign=options.sign,
            signer=signer,
            echo_logs=options.echo_logs,
            say=say,
            allow_unpinned=stage.pins is not None,
            pinned_at_run_time=stage.pins,
        ),
        runtime=runtime,
    )
    record = load_record(result.run_dir)
    if result.status.status != "succeeded":
        _finished(
            outcome,
            record,
            "failed",
            f"the job {result.status.status} (exit {result.status.exit_code})",
        )
        return
    _finished(outcome, record, "ran", why)
    used[name] = record
    own = _verified_own(result, _own_records(options, signer))
    if own is not None:
        trusted[own.record.run_id] = own


def _submit(
    stage: Stage,
    outcome: StageOutcome,
    after: list[StageOutcome],
    options: PipelineOptions,
    signer: Signer | None,
    *,
    bound: Mapping[str, RunRecord] | None = None,
) -> None:
    """Queue the stage as a Slurm job after its upstream stages' jobs (afterok): an input
    from a stage already run is resolved and pinned now; one from a queued stage is bound
    to that run and read on the node, its record verified there under the pipeline's keys."""
    assert options.site is not None
    refs, deferred = {}, set()
    for item in stage.run_spec.inputs:
        match = spec.FROM_RE.match(item.from_ref or "")
        if not match or match.group(1) != "latest":
            continue
        wanted = stage.binds.get(match.group(2), match.group(2))  # a variant's own upstream
        upstream = next((o for o in after if o.stage == wanted), None)
        if upstream is not None:
            refs[item.name] = f"run:{upstream.run_id}:{match.group(3)}"
            deferred.add(item.name)
        elif bound and wanted in bound:
            refs[item.name] = f"run:{bound[wanted].run_id}:{match.group(3)}"
    site = options.site
    if after:
        jobs = ":".join(str(o.job_id) for o in after)
        site = dataclasses.replace(site, extra=(*site.extra, f"--dependency=afterok:{jobs}"))
    sub, _ = cluster.submit(
        stage.spec_path,
        site=site,
        tasks=[cluster.SweepTask()],
        runs_dir=options.runs_dir,
        sign=cluster.node_signing(options.sign),
        allow_dirty=False,
        dry_run=False,
        say=options.say,
        engine=options.engine,
        links=cluster.FromLinks(
            policy=_own_records(options, signer),
            refs=refs,
            deferred=frozenset(deferred),
            keys=node_keys(options, signer),
        ),
    )
    waits = f" after job(s) {', '.join(str(o.job_id) for o in after)}" if after else ""
    outcome.decision, outcome.reason = "submitted", f"Slurm job {sub.job_id}{waits}"
    outcome.run_id, outcome.job_id = sub.run_id, sub.job_id
    options.say(f"stage {stage.name}: submitted as Slurm job {sub.job_id}{waits}")


def _verified_own(result: runner.RunResult, policy: TrustPolicy | None) -> catalog.Upstream | None:
    """The record a stage just made, verified for the stages that read it: what is on disk
    must be what this process signed (the runs dir may be shared). None when it cannot be
    verified (unsigned, or keyless with no policy): a stage that reads it then refuses."""
    if policy is None:
        return None
    verdict = verify_record(result.run_dir, policy)
    if verdict.error is not None or verdict.statement_digest != result.statement_sha256:
        return None
    return catalog.Upstream(
        load_record(result.run_dir, payload=verdict.payload), verdict.signer or ""
    )

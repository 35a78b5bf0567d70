"""``rexec regenerate``: everything downstream of a corrected input, re-run in order, what
did not change left alone, old records kept and superseded.

The plan (:mod:`.campaign`) names the affected runs in order, verified and with every
kept pin checked. Each is re-run here (``rerun`` semantics, a new signed record
derived from the old) with each input that was replaced upstream substituted; a run
whose outputs come out identical maps nothing, so the cascade below it stops
(**pruned**). New records sign ``lineage.regeneration`` = {id, trigger, upstreamRuns}
and, verified under the caller's policy, supersede the records they derive from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from executor import catalog, cluster, replay
from executor.compare import metric_changes, series_of
from executor.contracts import ContractViolation
from executor.errors import RexecError
from executor.pipelines.campaign import Campaign, RegenOptions, Step, Sub
from executor.pipelines.ledger import write_ledger
from executor.pipelines.options import node_keys
from executor.record import RunRecord, load_record, verify_record
from executor.runtime import default_runtime
from executor.signing import make_signer

__all__ = ["regenerate"]


def regenerate(campaign: Campaign, options: RegenOptions) -> Campaign:
    """Run the plan: substitute, re-run, prune, sign the ledger (an interrupted
    regeneration signs one too, saying where it stopped)."""
    if options.dry_run:
        return campaign
    started = datetime.now(UTC)
    signer = make_signer(options.sign)
    interrupted: KeyboardInterrupt | None = None
    try:
        if options.site is not None:
            _submit_steps(campaign, options, node_keys(options, signer))
        else:
            _run_steps(campaign, options)
    except KeyboardInterrupt as exc:
        interrupted = exc
        for step in campaign.steps:
            if step.decision in ("planned", "running"):
                step.decision, step.reason = "interrupted", f"rexec was stopped ({exc})"
    campaign.ledger = write_ledger(
        options.runs_dir,
        campaign.id,
        kind="regeneration",
        stages=[s.to_json() for s in campaign.steps],
        about={
            "trigger": {"from": campaign.old_digest, "to": campaign.new_digest},
            "ignored": list(campaign.ignored),
            **({"interrupted": str(interrupted)} if interrupted is not None else {}),
        },
        started=started,
        signer=signer,
    )
    catalog.remember_ledger(campaign.ledger, say=options.say)
    if interrupted is not None:
        raise interrupted
    return campaign


def _run_steps(campaign: Campaign, options: RegenOptions) -> None:
    say = options.say
    trigger = Sub(campaign.new_path, campaign.new_digest)
    # (upstream old record, its old output tree) -> that tree's replacement
    replaced: dict[tuple[str, str], Sub] = {}
    by_old = {s.old_statement: s for s in campaign.steps}
    stopped = False
    for step in campaign.steps:
        bad = [
            by_old[u]
            for u in step.needs
            if by_old[u].decision in ("failed", "contract-violated", "skipped")
        ]
        if bad or (stopped and not options.keep_going):
            step.decision = "skipped"
            step.reason = (
                f"upstream {bad[0].old_run} {bad[0].decision}"
                if bad
                else "the regeneration stopped"
            )
            continue
        assert step.original is not None
        record = step.original.record
        changes = _changes(record, campaign.old_digest, trigger, replaced, step.needs)
        if not changes:
            step.decision, step.reason = (
                "pruned",
                "every input it reads came out unchanged upstream",
            )
            continue
        step.decision = "running"
        try:
            _rerun(step, campaign, changes, options)
        except ContractViolation as exc:
            step.decision, step.reason, step.details = (
                "contract-violated",
                exc.message,
                tuple(exc.details),
            )
            stopped = True
            say(f"{step.name}: {exc.message}")
            continue
        except RexecError as exc:
            step.decision, step.reason, step.details = "failed", exc.message, tuple(exc.details)
            stopped = True
            continue
        if step.decision != "regenerated":
            stopped = True
            continue
        new = load_record(step.new_dir)  # type: ignore[arg-type]
        old_trees, new_trees = record.output_trees, new.output_trees
        for name, old_tree in old_trees.items():
            if new_trees.get(name) not in (None, old_tree):
                key = (record.statement_sha256, old_tree)
                replaced[key] = Sub(new.path / name, new_trees[name], new, name, step.new_signer)
        step.outputs = [
            {
                "name": n,
                "before": record.outputs.get(n),
                "after": new.outputs.get(n),
                "same": record.outputs.get(n) == new.outputs.get(n),
            }
            for n in sorted(set(record.outputs) | set(new.outputs))
        ]
        step.metrics = [m.to_json() for m in metric_changes(series_of(record), series_of(new))]
        if all(o["same"] for o in step.outputs):
            step.reason = "re-ran; its outputs are identical, so nothing below it changes"


def _submit_steps(campaign: Campaign, options: RegenOptions, keys: tuple[str, ...]) -> None:
    """Each step a Slurm job after the jobs of the steps it reads (afterok; independent
    branches in parallel): the corrected input and every kept pin checked here, an
    upstream step's output read on the node, where a step whose replaced inputs all came
    out unchanged is pruned (its job runs nothing)."""
    assert options.site is not None
    trigger = cluster.Change(campaign.new_path, campaign.new_digest)
    # (upstream old record, its old output tree) -> the job that remakes it, and the ref
    queued: dict[tuple[str, str], tuple[str, str]] = {}
    failed: dict[str, Step] = {}
    for step in campaign.steps:
        assert step.original is not None
        record = step.original.record
        bad = [failed[u] for u in step.needs if u in failed]
        if bad or (failed and not options.keep_going):
            step.decision = "skipped"
            step.reason = f"upstream {bad[0].old_run} {bad[0].decision}" if bad else "stopped"
            failed[step.old_statement] = step
            continue
        changes: dict[str, cluster.Change] = {}
        after: list[str] = []
        for item in record.spec.get("inputs", []):
            name, digest = str(item.get("name")), str(item.get("digest"))
            if digest == campaign.old_digest:
                changes[name] = trigger
            for (upstream, tree), (job, ref) in queued.items():
                if tree == digest and upstream in step.needs:
                    changes[name] = cluster.Change(from_ref=ref, was=digest)
                    after.append(job)
        try:
            if not changes:  # it reads an upstream's whole outputs: no `from` names those
                raise RexecError(
                    "none of its inputs can be named for its job (an upstream run's whole "
                    "outputs directory, not a directory in it)",
                    hint="regenerate without --submit",
                )
            sub = cluster.submit_rerun(
                step.original,
                changes=changes,
                regeneration={
                    "id": campaign.id,
                    "trigger": {"from": campaign.old_digest, "to": campaign.new_digest},
                },
                site=options.site,
                after=sorted(set(after)),
                runs_dir=options.runs_dir,
                sign=cluster.node_signing(options.sign),
                keys=keys,
                say=options.say,
                engine=options.engine,
            )
        except RexecError as exc:
            if not queued:  # nothing queued yet: its own error and exit code, no ledger
                raise
            step.decision, step.reason = "failed", f"not queued: {exc.message}"
            step.details = tuple(exc.details)
            failed[step.old_statement] = step
            continue
        waits = f" after job(s) {', '.join(sorted(set(after)))}" if after else ""
        step.decision, step.reason = "submitted", f"Slurm job {sub.job_id}{waits}"
        step.new_run, step.job_id = sub.run_id, sub.job_id
        options.say(f"{step.name}: submitted as Slurm job {sub.job_id}{waits}")
        for tree_name, tree in record.output_trees.items():
            rel = tree_name.removeprefix("outputs/").rstrip("/")
            if rel:
                queued[(record.statement_sha256, tree)] = (
                    str(sub.job_id),
                    f"run:{sub.run_id}:{rel}",
                )


def _changes(
    record: RunRecord,
    old_digest: str,
    trigger: Sub,
    replaced: Mapping[tuple[str, str], Sub],
    upstream: Sequence[str],
) -> dict[str, Sub]:
    """This run's inputs to substitute: the corrected one itself, and each output of an
    upstream step of this regeneration (``upstream``: the records it reads, as planned
    from the digests) that came out different. Matching by the planned upstream, not by
    the run the record names, keeps working after an earlier, pruned regeneration left
    the record naming a run that has been replaced since."""
    found: dict[str, Sub] = {}
    for item in record.spec.get("inputs", []):
        name, digest = item.get("name"), item.get("digest")
        if digest == old_digest:
            found[name] = trigger
            continue
        match = [v for (run, d), v in replaced.items() if d == digest and run in upstream]
        if match:
            found[name] = match[0]
    return found


def _rerun(
    step: Step,
    campaign: Campaign,
    changes: Mapping[str, Sub],
    options: RegenOptions,
) -> None:
    assert step.original is not None
    record = step.original.record
    runtime = default_runtime(options.engine or record.engine)
    plan = replay.plan_rerun(
        step.original,
        changes={n: c.path for n, c in changes.items()},
        runtime=runtime,
        say=options.say,
    )
    inputs = []
    upstream_runs = []
    for item in plan.run_spec.inputs:
        change = changes.get(item.name)
        if change is not None and change.record is not None:  # an upstream run's new outputs
            new_up = change.record
            rel = change.tree.removeprefix("outputs/").rstrip("/")
            item = dataclasses.replace(
                item,
                from_ref=f"run:{new_up.run_id}:{rel}" if rel else None,
                from_run=new_up.run_id,
                from_statement=new_up.statement_sha256,
                from_signer=change.signer,
            )
            upstream_runs.append(new_up.run_id)
        inputs.append(item)
    lineage = {
        **plan.lineage,
        "regeneration": {
            "id": campaign.id,
            "trigger": {"from": campaign.old_digest, "to": campaign.new_digest},
            "upstreamRuns": sorted(set(upstream_runs)),
        },
    }
    plan = dataclasses.replace(
        plan, run_spec=dataclasses.replace(plan.run_spec, inputs=tuple(inputs)), lineage=lineage
    )
    step.changed_inputs = [dict(c) for c in plan.changed_inputs]
    outcome = replay.execute(
        plan,
        options=replay.ExecOptions(
            runs_dir=options.runs_dir,
            sign=options.sign,
            echo_logs=options.echo_logs,
            say=options.say,
        ),
        runtime=runtime,
    )
    result = outcome.result
    step.new_run, step.new_dir, step.statement_sha256 = (
        result.run_id,
        result.run_dir,
        result.statement_sha256,
    )
    if options.policy is not None:  # what it supersedes counts once its record verifies
        verdict = verify_record(result.run_dir, options.policy)
        if verdict.error is None and verdict.statement_digest == result.statement_sha256:
            step.new_signer = verdict.signer
        catalog.remember_at(
            result.run_dir, say=options.say, verification=catalog.verification_text(verdict)
        )
    if result.status.status == "succeeded":
        step.decision, step.reason = "regenerated", "re-ran on the corrected inputs"
    else:
        step.decision, step.reason = (
            "failed",
            f"the job {result.status.status} (exit {result.status.exit_code})",
        )

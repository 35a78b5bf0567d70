"""``rexec regenerate``: everything downstream of a corrected input, re-run in order, what
did not change left alone, old records kept and superseded.

1. The affected set is the downstream closure of the old digest over current runs
   (not superseded, not replays), ordered by the digest edges between them.
2. Before any container starts, every affected record is verified and every pin
   that is not being replaced is checked; all misses abort together, listed.
3. Each run is re-run (``rerun`` semantics, a new signed record derived from the
   old) with each input that was replaced upstream substituted; a run whose
   outputs come out identical maps nothing, so the cascade below it stops
   (**pruned**). New records sign ``lineage.regeneration`` = {id, trigger, upstreamRuns}.
"""

from __future__ import annotations

import dataclasses
import graphlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import catalog, replay, snapshot
from executor.compare import metric_changes
from executor.contracts import ContractViolation
from executor.errors import InputError, RexecError
from executor.record import store
from executor.record.reader import RunRecord, load_record
from executor.runtime import default_runtime
from executor.signing import make_signer
from executor.stages.ledger import write_ledger
from executor.stages.options import StageOptions

__all__ = ["SCHEMA", "Campaign", "RegenOptions", "plan_regeneration", "regenerate"]

Say = Callable[[str], None]
SCHEMA = "rexec.regeneration/v1"
# A substitution: the new directory, its digest, the new upstream record (None for the
# corrected input itself) and the output tree's name in that record ("outputs/model/").
Sub = tuple[Path, str, RunRecord | None, str]


# Regeneration takes exactly the shared options; its own name reads better at call sites.
RegenOptions = StageOptions


@dataclass
class Step:
    """One affected run and what became of it."""

    old_run: str
    name: str
    upstream: tuple[str, ...]  # affected runs whose outputs it reads
    original: replay.Original | None = None
    decision: str = "planned"  # regenerated | pruned | failed | contract-violated | skipped
    reason: str = ""
    new_run: str | None = None
    new_dir: Path | None = None
    statement_sha256: str | None = None
    changed_inputs: list[dict[str, str]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    details: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The step in the campaign summary and the signed ledger."""
        return {
            "stage": self.name,
            "oldRun": self.old_run,
            "decision": self.decision,
            "reason": self.reason,
            "runId": self.new_run,
            "runDir": str(self.new_dir) if self.new_dir else None,
            "statementSha256": self.statement_sha256,
            "upstream": list(self.upstream),
            "changedInputs": self.changed_inputs,
            "outputs": self.outputs,
            "metrics": self.metrics,
            "details": list(self.details),
        }


@dataclass
class Campaign:
    """A regeneration: its trigger, the affected runs in order, and the ledger."""

    id: str
    old_digest: str
    new_path: Path
    new_digest: str
    steps: list[Step]
    ledger: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """``rexec regenerate --json``."""
        counts: dict[str, int] = {}
        for s in self.steps:
            counts[s.decision] = counts.get(s.decision, 0) + 1
        return {
            "schema": SCHEMA,
            "id": self.id,
            "trigger": {"from": self.old_digest, "to": self.new_digest, "path": str(self.new_path)},
            "ledger": str(self.ledger) if self.ledger else None,
            "summary": counts,
            "stages": [s.to_json() for s in self.steps],
        }


def _marks(values: list[str]) -> str:
    return ", ".join("?" for _ in values) or "NULL"


CURRENT = "r.kind != 'replay' AND r.run_id NOT IN (SELECT old_run FROM supersedes)"


def plan_regeneration(
    cat: catalog.Catalog,
    old_ref: str,
    new_path: Path,
    *,
    of_run: str | None,
    input_name: str | None,
    options: RegenOptions,
) -> Campaign:
    """The affected runs in order, every record verified and every kept pin checked."""
    say = options.say
    if of_run is not None:
        kind, run_id = catalog.resolve(cat, of_run)
        found = cat.rows(
            "SELECT digest FROM inputs WHERE run_id = ? AND name = ? AND role = 'input'",
            [run_id, input_name],
        )
        if kind != "run" or not found:
            raise InputError(f"--of {of_run}: no run with an input named {input_name!r}")
        old_digest, first = found[0]["digest"], [run_id]
    else:
        kind, old_digest = catalog.resolve(cat, old_ref)
        if kind != "digest":
            raise InputError(
                f"{old_ref}: a run, not a digest",
                hint="name the corrected input's digest, or use --input NAME=PATH --of RUN",
            )
        first = [
            r["run_id"]
            for r in cat.rows(
                f"SELECT DISTINCT r.run_id FROM runs r JOIN inputs i ON i.run_id = r.run_id"
                f" WHERE i.digest = ? AND i.role = 'input' AND {CURRENT} ORDER BY r.run_id",
                [old_digest],
            )
        ]
    if not first:
        raise InputError(
            f"{old_digest}: no current run read it", hint="`rexec log --input DIGEST` lists who did"
        )
    if not new_path.is_dir():
        raise InputError(
            f"--with {new_path}: not a directory", hint="the corrected snapshot's directory"
        )
    say(f"hashing the corrected input at {new_path}")
    new_digest = snapshot.hash_tree(new_path, algo=old_digest.split("-tree-v1:")[0]).digest
    if new_digest == old_digest:
        raise InputError(
            f"--with {new_path}: the same snapshot as {old_digest}", hint="nothing to regenerate"
        )
    outs = [
        o["digest"]
        for o in cat.rows(
            f"SELECT o.digest FROM outputs o WHERE o.run_id IN ({_marks(first)})",
            first,
        )
    ]
    below = set(cat.walk(outs, direction="downstream"))
    current = {
        r["run_id"]: r
        for r in cat.rows(f"SELECT r.run_id, r.name, r.path FROM runs r WHERE {CURRENT}")
    }
    affected = sorted((set(first) | below) & set(current))
    producers: dict[str, set[str]] = {}
    for o in cat.rows(
        f"SELECT run_id, digest FROM outputs WHERE run_id IN ({_marks(affected)})",
        affected,
    ):
        producers.setdefault(o["digest"], set()).add(o["run_id"])
    needs: dict[str, set[str]] = {run: set() for run in affected}
    for i in cat.rows(
        f"SELECT run_id, digest, from_run FROM inputs WHERE role = 'input'"
        f" AND run_id IN ({_marks(affected)})",
        affected,
    ):
        # The run it was taken from, when it says (two stages may make the same bytes).
        sources = {i["from_run"]} if i["from_run"] in needs else producers.get(i["digest"], set())
        needs[i["run_id"]] |= sources - {i["run_id"]}
    order = list(graphlib.TopologicalSorter(needs).static_order())
    campaign = Campaign(
        id=store.new_run_id("regenerate"),
        old_digest=old_digest,
        new_path=new_path,
        new_digest=new_digest,
        steps=[Step(r, str(current[r]["name"]), tuple(sorted(needs[r]))) for r in order],
    )
    _preflight(campaign, current, options=options)
    return campaign


def _preflight(campaign: Campaign, current: Mapping[str, Any], *, options: RegenOptions) -> None:
    """Verify every affected record and check every pin not being replaced; all misses at once."""
    problems: list[str] = []
    replaced_digests = {campaign.old_digest}
    for step in campaign.steps:
        path = Path(current[step.old_run]["path"])
        try:
            step.original = replay.open_original(path, options.policy)
            record = step.original.record
            runtime = default_runtime(
                options.engine or (record.spec.get("runtime") or {}).get("engine")
            )
            keep = {
                i["name"]
                for i in record.spec.get("inputs", [])
                if i.get("digest") not in replaced_digests
            }
            run_spec = replay.spec_from_record(record, paths={}, digests={})
            skip = {i.name for i in run_spec.inputs if i.name not in keep}
            replay.check_record_pins(run_spec, record, runtime=runtime, say=options.say, skip=skip)
            replaced_digests |= set(record.internal.get("outputTrees", {}).values())
        except RexecError as exc:
            problems.append(f"{step.old_run} ({step.name}): {exc.message}")
            problems.extend(f"    {d}" for d in exc.details)
    if problems:
        bad = len([p for p in problems if not p.startswith("    ")])
        raise InputError(
            f"{bad} of {len(campaign.steps)} affected run(s) cannot be regenerated; nothing ran",
            details=problems,
            hint="restore what is listed (or point rexec at it), then run the regeneration again",
        )


def regenerate(campaign: Campaign, options: RegenOptions) -> Campaign:
    """Run the plan: substitute, re-run, prune, sign the ledger."""
    if options.dry_run:
        return campaign
    say, started = options.say, datetime.now(UTC)
    signer_options = options.sign
    trigger: Sub = (campaign.new_path, campaign.new_digest, None, "")
    # (upstream old run, its old output tree) -> that tree's replacement
    replaced: dict[tuple[str, str], Sub] = {}
    by_old = {s.old_run: s for s in campaign.steps}
    stopped = False
    for step in campaign.steps:
        bad = [
            u
            for u in step.upstream
            if by_old[u].decision in ("failed", "contract-violated", "skipped")
        ]
        if bad or (stopped and not options.keep_going):
            step.decision = "skipped"
            step.reason = (
                f"upstream {bad[0]} {by_old[bad[0]].decision}"
                if bad
                else "the regeneration stopped"
            )
            continue
        assert step.original is not None
        record = step.original.record
        changes = _changes(record, campaign.old_digest, trigger, replaced)
        if not changes:
            step.decision, step.reason = (
                "pruned",
                "every input it reads came out unchanged upstream",
            )
            continue
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
        old_trees = record.internal.get("outputTrees", {})
        new_trees = new.internal.get("outputTrees", {})
        for name, old_tree in old_trees.items():
            if new_trees.get(name) not in (None, old_tree):
                replaced[(record.run_id, old_tree)] = (new.path / name, new_trees[name], new, name)
        step.outputs = [
            {
                "name": n,
                "before": record.outputs.get(n),
                "after": new.outputs.get(n),
                "same": record.outputs.get(n) == new.outputs.get(n),
            }
            for n in sorted(set(record.outputs) | set(new.outputs))
        ]
        common = [n for n in record.outputs if n in new.outputs]
        step.metrics = [
            m.to_json() for m in metric_changes(record.outputs_dir, new.outputs_dir, common)
        ]
        if all(o["same"] for o in step.outputs):
            step.reason = "re-ran; its outputs are identical, so nothing below it changes"
    campaign.ledger = write_ledger(
        options.runs_dir,
        campaign.id,
        kind="regeneration",
        stages=[s.to_json() for s in campaign.steps],
        about={"trigger": {"from": campaign.old_digest, "to": campaign.new_digest}},
        started=started,
        signer=make_signer(signer_options),
    )
    return campaign


def _changes(
    record: RunRecord, old_digest: str, trigger: Sub, replaced: Mapping[tuple[str, str], Sub]
) -> dict[str, Sub]:
    """This run's inputs to substitute: the corrected one itself, and each upstream output
    that came out different (matched by the run it was taken from, else by digest)."""
    found: dict[str, Sub] = {}
    for item in record.spec.get("inputs", []):
        name, digest = item.get("name"), item.get("digest")
        notes = (record.dependency(f"input:{name}") or {}).get("annotations") or {}
        upstream = notes.get("fromRun")
        if digest == old_digest:
            found[name] = trigger
        elif upstream is not None:
            if (upstream, digest) in replaced:
                found[name] = replaced[(upstream, digest)]
        else:
            match = [v for (_, d), v in replaced.items() if d == digest]
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
    runtime = default_runtime(options.engine or (record.spec.get("runtime") or {}).get("engine"))
    plan = replay.plan_rerun(
        step.original,
        changes={n: c[0] for n, c in changes.items()},
        runtime=runtime,
        say=options.say,
    )
    inputs = []
    upstream_runs = []
    for item in plan.run_spec.inputs:
        change = changes.get(item.name)
        if change is not None and change[2] is not None:  # an upstream run's new outputs
            new_up, tree = change[2], change[3]
            rel = tree.removeprefix("outputs/").rstrip("/")
            item = dataclasses.replace(
                item,
                from_ref=f"run:{new_up.run_id}:{rel}" if rel else None,
                from_run=new_up.run_id,
                from_statement=new_up.statement_sha256,
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
    if result.status.status == "succeeded":
        step.decision, step.reason = "regenerated", "re-ran on the corrected inputs"
    else:
        step.decision, step.reason = (
            "failed",
            f"the job {result.status.status} (exit {result.status.exit_code})",
        )

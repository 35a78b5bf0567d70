"""A regeneration's plan: which current runs a corrected input reaches, in order, each
record verified and every pin that stays checked before any container starts.

1. The affected set is the downstream closure of the old digest over the current
   lineage: not replays, not failed attempts, not runs a regeneration replaced (as
   far as the successor's record verifies), not records that do not verify (each
   left out is listed, with what reads it).
2. They are ordered by the digest edges between them (the upstream a record names,
   else every producer of the digest it read).
3. Every pin that is not being replaced is checked; all misses abort together.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor import catalog, replay, snapshot
from executor.errors import InputError, RexecError, VerificationError
from executor.pipelines.options import StageOptions
from executor.record import RunRecord, verify_record, writer
from executor.runtime import default_runtime

__all__ = ["SCHEMA", "Campaign", "RegenOptions", "Step", "Sub", "plan_regeneration"]

SCHEMA = "rexec.regeneration/v1"
# Regeneration takes exactly the shared options; its own name reads better at call sites.
RegenOptions = StageOptions


@dataclass(frozen=True)
class Sub:
    """A substitution: the new directory and its digest, and where it came from."""

    path: Path
    digest: str
    record: RunRecord | None = None  # the new upstream record (None: the corrected input)
    tree: str = ""  # the output tree's name in that record ("outputs/model/")
    signer: str | None = None  # who that record was verified to be signed by


@dataclass
class Step:
    """One affected run and what became of it."""

    old_run: str
    name: str
    upstream: tuple[str, ...]  # affected runs whose outputs it reads
    old_statement: str = ""
    needs: tuple[str, ...] = ()  # the same, as the records' Statement digests
    original: replay.Original | None = None
    # regenerated | pruned | submitted | failed | contract-violated | skipped
    decision: str = "planned"
    reason: str = ""
    new_run: str | None = None
    job_id: str | None = None  # the Slurm job a submitted step runs as
    new_dir: Path | None = None
    statement_sha256: str | None = None
    new_signer: str | None = None  # who the new record verified as (with a trust policy)
    changed_inputs: list[dict[str, str]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    details: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The step in the campaign summary and the signed ledger."""
        return {
            "stage": self.name,
            "oldRun": self.old_run,
            "oldStatementSha256": self.old_statement,
            "decision": self.decision,
            "reason": self.reason,
            "runId": self.new_run,
            "jobId": self.job_id,
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
    # Records that read the data but are not part of the current lineage (a failed attempt,
    # a record that does not verify, one a verified regeneration replaced), and why.
    ignored: list[dict[str, str]] = field(default_factory=list)

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
            "ignored": list(self.ignored),
        }


def _first(
    cat: catalog.Catalog, old_ref: str, *, of_run: str | None, input_name: str | None
) -> tuple[str, list[str]]:
    """The corrected digest and the records that read it directly."""
    if of_run is not None:
        statement = catalog.resolve_record(cat, of_run)
        found = [i for i in cat.inputs_of([statement]) if i["name"] == input_name]
        if not found:
            raise InputError(f"--of {of_run}: no run with an input named {input_name!r}")
        return found[0]["digest"], [statement]
    kind, old_digest = catalog.resolve(cat, old_ref)
    if kind != "digest":
        raise InputError(
            f"{old_ref}: a run, not a digest",
            hint="name the corrected input's digest, or use --input NAME=PATH --of RUN",
        )
    return old_digest, [r["statement_sha256"] for r in cat.readers(old_digest)]


def _replaced(cat: catalog.Catalog, statements: list[str], options: RegenOptions) -> dict[str, str]:
    """Records a regeneration replaced, as far as the successor's own record proves it:
    verified under the caller's policy (the catalog's word alone never retires a run)."""
    found: dict[str, str] = {}
    for row in cat.successors(statements):
        if row["old_statement"] in found:
            continue
        if options.policy is None:  # --no-verify: the catalog's own verification is all there is
            if str(row["verification"] or "").startswith("verified"):
                found[row["old_statement"]] = f"superseded by {row['run_id']}"
            continue
        verdict = verify_record(Path(row["path"]), options.policy)
        if verdict.error is None and verdict.statement_digest == row["statement_sha256"]:
            found[row["old_statement"]] = f"superseded by {row['run_id']} (verified)"
    return found


def plan_regeneration(
    cat: catalog.Catalog,
    old_ref: str,
    new_path: Path,
    *,
    of_run: str | None,
    input_name: str | None,
    options: RegenOptions,
) -> Campaign:
    """The affected runs in order, every record verified and every kept pin checked; runs
    that are not part of the current lineage are listed and left alone."""
    say = options.say
    old_digest, first = _first(cat, old_ref, of_run=of_run, input_name=input_name)
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
    outs = [o["digest"] for o in cat.outputs_of(first)]
    rows = {
        r["statement_sha256"]: r
        for r in cat.records(sorted(set(first) | set(cat.walk(outs, direction="downstream"))))
    }
    campaign = Campaign(writer.new_run_id("regenerate"), old_digest, new_path, new_digest, [])
    replaced = _replaced(cat, sorted(rows), options)
    current: dict[str, dict[str, Any]] = {}
    for sha, row in sorted(rows.items(), key=lambda kv: (kv[1]["run_id"], kv[0])):
        why = (
            None
            if row["kind"] == "replay"
            else replaced.get(sha)
            or (
                f"its job {row['status']}: not part of the current lineage"
                if row["status"] != "succeeded"
                else None
            )
        )
        if row["kind"] == "replay":
            continue
        if why is not None:
            campaign.ignored.append({"runId": row["run_id"], "statementSha256": sha, "reason": why})
            continue
        current[sha] = row
    if not any(sha in current for sha in first):
        raise InputError(
            f"{old_digest}: no current run read it",
            details=[f"{i['runId']}: {i['reason']}" for i in campaign.ignored],
            hint="`rexec runs --input DIGEST` lists who did",
        )
    needs = _needs(cat, current)
    for sha in graphlib.TopologicalSorter(needs).static_order():
        row = current[sha]
        campaign.steps.append(
            Step(
                old_run=row["run_id"],
                name=str(row["name"]),
                upstream=tuple(sorted(current[n]["run_id"] for n in needs[sha])),
                old_statement=sha,
                needs=tuple(sorted(needs[sha])),
            )
        )
    _preflight(campaign, current, options=options)
    return campaign


def _needs(cat: catalog.Catalog, current: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """Which current records each reads the outputs of: the record it says it took an input
    from, else every current record that produced that digest."""
    producers: dict[str, set[str]] = {}
    for o in cat.outputs_of(sorted(current)):
        producers.setdefault(o["digest"], set()).add(o["statement_sha256"])
    needs: dict[str, set[str]] = {sha: set() for sha in current}
    for i in cat.inputs_of(sorted(current)):
        sha = i["statement_sha256"]
        named = i["from_statement"]
        sources = {named} if named in needs else producers.get(i["digest"], set())
        needs[sha] |= sources - {sha}
    return needs


def _preflight(
    campaign: Campaign, current: Mapping[str, Mapping[str, Any]], *, options: RegenOptions
) -> None:
    """Verify every affected record (one that does not verify is left out, listed, with what
    reads it) and check every pin not being replaced: all misses at once, before anything."""
    problems: list[str] = []
    replaced_digests = {campaign.old_digest}
    left_out: set[str] = set()
    kept = []
    for step in campaign.steps:
        blocked = [n for n in step.needs if n in left_out]
        if blocked:
            left_out.add(step.old_statement)
            why = f"it reads the outputs of {current[blocked[0]]['run_id']}, which is left out"
            campaign.ignored.append(_ignored(step, why))
            continue
        path = Path(current[step.old_statement]["path"])
        try:
            step.original = replay.open_original(path, options.policy)
        except RexecError as exc:
            left_out.add(step.old_statement)
            campaign.ignored.append(_ignored(step, f"its record does not verify: {exc.message}"))
            options.say(f"leaving out {step.old_run}: its record does not verify ({exc.message})")
            continue
        kept.append(step)
        try:
            record = step.original.record
            if record.statement_sha256 != step.old_statement:
                raise InputError(f"the record at {path} is no longer the one indexed")
            runtime = default_runtime(options.engine or record.engine)
            keep = {
                i["name"]
                for i in record.spec.get("inputs", [])
                if i.get("digest") not in replaced_digests
            }
            run_spec = replay.spec_from_record(record, paths={}, digests={})
            skip = {i.name for i in run_spec.inputs if i.name not in keep}
            replay.check_record_pins(run_spec, record, runtime=runtime, say=options.say, skip=skip)
            replaced_digests |= set(record.output_trees.values())
        except RexecError as exc:
            problems.append(f"{step.old_run} ({step.name}): {exc.message}")
            problems.extend(f"    {d}" for d in exc.details)
    campaign.steps = kept
    if problems:
        bad = len([p for p in problems if not p.startswith("    ")])
        raise InputError(
            f"{bad} of {len(campaign.steps)} affected run(s) cannot be regenerated; nothing ran",
            details=problems,
            hint="restore what is listed (or point rexec at it), then run the regeneration again",
        )
    if not campaign.steps:
        raise VerificationError(
            f"none of the runs that read {campaign.old_digest} verifies; nothing to regenerate",
            details=[f"{i['runId']}: {i['reason']}" for i in campaign.ignored],
            hint="name the signer you trust with --key or --identity --issuer",
        )


def _ignored(step: Step, reason: str) -> dict[str, str]:
    return {"runId": step.old_run, "statementSha256": step.old_statement, "reason": reason}

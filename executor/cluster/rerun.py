"""A regeneration step as a Slurm job: the original record run again with its corrected
inputs (``rexec regenerate --submit``).

The submission holds the original record's Statement as its "spec" (verified on the
submit host under the caller's policy; the node uses exactly those bytes, which the
batch script binds) and, per replaced input, either the corrected snapshot (verified
and listed here, stamp-checked on the node) or the output of an upstream step's job,
named ``run:<its run id>:<path>`` and read on the node once Slurm has run that job
(afterok), its record verified under the submission's keys. An input that comes out
of its upstream unchanged (the upstream job re-ran to the same bytes, or was pruned
itself) is no change: a step left with none is **pruned** on the node, runs nothing
and says so in ``pruned.json``, as a local regeneration stops its cascade.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executor import runner, safeio, spec
from executor.canonical import sha256_hex
from executor.cluster.slurm import Slurm
from executor.cluster.submission import JOBS_DIR, PRUNED, SiteOptions, Submission
from executor.cluster.submit import checked_site, new_submission, queue
from executor.errors import InputError, MismatchError
from executor.progress import Say
from executor.record import RunRecord, load_record, writer
from executor.signing import TrustPolicy

if TYPE_CHECKING:
    from executor.replay import Original

__all__ = ["Change", "Rerun", "prune", "pruned", "rerun_on_node", "submit_rerun"]


@dataclass(frozen=True)
class Change:
    """One replaced input: the corrected snapshot (``path``, ``digest``), or an upstream
    job's output (``from_ref`` = ``run:<run id>:<path>``) that replaces ``was``."""

    path: Path | None = None
    digest: str | None = None
    from_ref: str | None = None
    was: str = ""

    def to_json(self) -> dict[str, str]:
        """Its entry in the submission."""
        if self.from_ref is not None:
            return {"from": self.from_ref, "was": self.was}
        return {"path": str(self.path), "digest": str(self.digest)}


@dataclass(frozen=True)
class Rerun:
    """What the node runs: the original rebuilt with its changes, and what it signs."""

    run_spec: spec.RunSpec
    lineage: Mapping[str, Any]
    params_json: bytes | None


def submit_rerun(
    original: Original,
    *,
    changes: Mapping[str, Change],
    regeneration: Mapping[str, Any],
    site: SiteOptions,
    after: Sequence[str],
    runs_dir: Path,
    sign: Mapping[str, object],
    keys: tuple[str, ...],
    say: Say,
    engine: str | None = None,
    slurm: Slurm | None = None,
) -> Submission:
    """Queue ``original`` to run again with ``changes``, after the jobs ``after``: every
    pin it keeps and each corrected snapshot checked here, nothing queued on a failure."""
    from executor import replay  # here: every job's node imports this module

    record = original.record
    payload = _statement(record)
    direct = {n: c for n, c in changes.items() if c.from_ref is None}
    run_spec = replay.spec_from_record(
        record,
        paths={n: c.path for n, c in direct.items() if c.path is not None},
        digests={n: c.digest for n, c in direct.items() if c.digest is not None},
    )
    deferred = set(changes) - set(direct)
    if deferred and not keys:
        raise InputError(
            "a step that reads an upstream job's output needs the public keys its record is "
            "verified with on the node",
            hint="sign the regeneration with a key (--signing-key) or trust one (--key)",
        )
    if after:
        site = dataclasses.replace(
            site, extra=(*site.extra, f"--dependency=afterok:{':'.join(after)}")
        )
    site = checked_site(run_spec, site, engine=engine, say=say)
    sub = new_submission(
        run_spec,
        spec_path=str(record.path),
        spec_text=payload.decode(),
        runs_dir=runs_dir,
        site=site,
        sign=sign,
        allow_dirty=True,  # the code tree is the recorded one, checked by its digest
        extra={"runtime": engine} if engine else {},
        upstream_keys=keys,
        rerun={
            "verification": original.verification,
            "changes": {n: c.to_json() for n, c in sorted(changes.items())},
            "regeneration": dict(regeneration),
        },
    )
    # The inputs checked here: what the record keeps, and the corrected snapshots.
    now = dataclasses.replace(
        run_spec, inputs=tuple(i for i in run_spec.inputs if i.name not in deferred)
    )
    queued, _ = queue(sub, now, dry_run=False, say=say, slurm=slurm)
    return queued


def _statement(record: RunRecord) -> bytes:
    """The record's Statement as verified (its bytes have the digest the record was
    verified by): the node reads this copy, never the record again."""
    data = safeio.read_capped(record.path / writer.STATEMENT, cap=64 << 20)
    if sha256_hex(data) != record.statement_sha256:
        raise MismatchError(f"{record.path}: its Statement changed since it was verified")
    return data


def rerun_on_node(sub: Submission, *, upstream: TrustPolicy | None, say: Say) -> Rerun | None:
    """The run this node must make, or None when every change came out of its upstream
    unchanged (the step is pruned)."""
    from executor import replay  # only a regeneration step's node needs it

    record = load_record(Path(sub.spec_path), payload=sub.spec_text.encode())
    as_recorded = replay.spec_from_record(record, paths={}, digests={})
    recorded = {i.name: i for i in as_recorded.inputs}
    paths: dict[str, Path] = {}
    digests: dict[str, str] = {}
    read: dict[str, spec.InputSpec] = {}
    for name, said in sorted(sub.rerun.get("changes", {}).items()):
        if name not in recorded:
            raise InputError(f"rerun.changes.{name}: the record has no such input")
        if "from" not in said:
            paths[name], digests[name] = Path(said["path"]), str(said["digest"])
            continue
        ref = str(said["from"])
        if _pruned_upstream(ref, Path(sub.runs_dir)):
            say(f"input {name}: its upstream step was pruned")
            continue
        item = dataclasses.replace(
            recorded[name],
            digest=spec.UNRESOLVED_DIGEST,  # what the upstream job's record signs
            from_ref=ref,
            from_run=None,
            from_statement=None,
            from_signer=None,
        )
        (found,) = runner.resolve_from_inputs(
            dataclasses.replace(as_recorded, inputs=(item,)),
            runs_dir=Path(sub.runs_dir),
            policy=upstream,
            verified=None,
            say=say,
        ).inputs
        if found.digest == recorded[name].digest:
            say(f"input {name}: its upstream came out unchanged")
            continue
        read[name] = found
        paths[name], digests[name] = found.path, str(found.digest)
    if not paths:
        return None
    run_spec = replay.spec_from_record(record, paths=paths, digests=digests)
    run_spec = dataclasses.replace(
        run_spec, inputs=tuple(read.get(i.name, i) for i in run_spec.inputs)
    )
    regeneration = dict(sub.rerun.get("regeneration", {}))
    regeneration["upstreamRuns"] = sorted({str(i.from_run) for i in read.values()})
    lineage = {
        "derivedFrom": record.run_id,
        "originalStatementSha256": record.statement_sha256,
        "verification": f"{sub.rerun.get('verification')} (on {sub.submit_host})",
        "changedInputs": [
            {"name": n, "from": recorded[n].digest, "to": digests[n]} for n in sorted(digests)
        ],
        "regeneration": regeneration,
    }
    return Rerun(run_spec, lineage, record.params_json)


def _pruned_upstream(ref: str, runs_dir: Path) -> bool:
    """Whether the upstream job ``ref`` names ran nothing: afterok ran this one, so it made
    its record or was pruned (a record, where there is one, is read and verified)."""
    match = spec.FROM_RE.match(ref)
    if match is None or match.group(1) != "run":
        raise InputError(f"{ref!r}: not a run:<id>:<path> reference")
    run_id = match.group(2)
    made = (runs_dir / run_id).exists() or (runs_dir / run_id).is_symlink()
    return not made and pruned(runs_dir / JOBS_DIR / run_id) is not None


def prune(directory: Path, reason: str) -> None:
    """Say on shared storage that this step ran nothing, and why (``rexec status``)."""
    doc = {"reason": reason, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    safeio.write_atomic(directory / PRUNED, json.dumps(doc, sort_keys=True).encode())


def pruned(directory: Path) -> str | None:
    """Why a regeneration step's job ran nothing, if it was pruned."""
    try:
        doc = json.loads(safeio.read_capped(directory / PRUNED, cap=1 << 16))
    except (OSError, ValueError, safeio.UnsafeFile):
        return None
    return str(doc.get("reason")) if isinstance(doc, dict) else None

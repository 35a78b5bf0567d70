"""What the caller decides about a run besides its spec, and what a run gives back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor import snapshot
from executor.progress import Say
from executor.record import RunStatus, Subject
from executor.signing import Signer, SignOptions, TrustPolicy


@dataclass(frozen=True)
class RunOptions:
    """How a run is recorded and signed, besides the spec: the caller's choices."""

    runs_dir: Path
    sign: SignOptions
    allow_dirty: bool = False
    echo_logs: bool = True
    say: Say = field(default=lambda text: None)
    # Where this run comes from when it is not a fresh run (replay, rerun):
    # recorded under internalParameters.lineage and so signed.
    lineage: Mapping[str, Any] | None = None
    # A signer the caller already made (replay signs its verdict with the same one,
    # so an encrypted key's password is asked once); else made from `sign`.
    signer: Signer | None = None
    # More files for the record, given its outputs, its result and its Statement before it
    # is published (replay adds its verdict).
    before_commit: Callable[[Path, RunResult, Mapping[str, Any]], Mapping[str, bytes]] | None = None
    # `rexec run --allow-unpinned`: FROM tags use the local image (recorded as
    # pinned=false), and what the CLI pinned in memory is recorded here.
    allow_unpinned: bool = False
    pinned_at_run_time: Mapping[str, Any] | None = None
    # `rexec run --push REGISTRY/REPO[:TAG]`: push the image, record its repo digest.
    push: str | None = None
    # replay/rerun: the original run's params.json exactly (its digest is signed): the
    # spec view in the Statement is canonical JSON, where 20.0 and 20 are one number.
    params_json: bytes | None = None
    # Under a scheduler (`rexec submit`): the run id it was given at submit time, the
    # job's identity (signed under internalParameters.scheduler), the GPUs (UUIDs) and
    # CPU/memory the allocation holds, which bound the container.
    run_id: str | None = None
    scheduler: Mapping[str, Any] | None = None
    allocated_gpus: tuple[str, ...] | None = None
    allocated_cpus: float | None = None
    allocated_memory: int | None = None
    # Multi-node, on rank 0: waits for the other nodes once this node's job has ended and
    # returns {"nodes": [...], "failed": [ranks]}; signed in the Statement with this run.
    peers: Callable[[], Mapping[str, Any]] | None = None
    # More container labels (a scheduler's job id, for its epilog's reaper).
    labels: Mapping[str, str] = field(default_factory=dict)
    # Host devices the job gets (a multi-node job's InfiniBand), recorded in the hardening.
    devices: tuple[str, ...] = ()
    # Inputs the submit host hashed, by name: checked by lstat against its stamps.
    vouched_inputs: Mapping[str, snapshot.Vouched] | None = None
    # `[checkpoint]`: where a scheduler keeps the job's checkpoint from one attempt to the
    # next (the submission's directory); None gives the job a fresh one that is not kept.
    checkpoint_dir: Path | None = None
    # Whose records `from` inputs may be read from (each is verified under it first);
    # None refuses any `from` input. ``upstream_verified``: records already verified.
    upstream: TrustPolicy | None = None
    upstream_verified: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its record, status, Statement digest and subjects."""

    run_id: str
    run_dir: Path
    status: RunStatus
    statement_sha256: str
    subjects: tuple[Subject, ...]
    signer: str | None

    def to_json(self) -> dict[str, Any]:
        """The JSON form printed by ``rexec run --json``."""
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            **self.status.to_json(),
            "statement_sha256": self.statement_sha256,
            "outputs": {s.name: s.sha256 for s in self.subjects},
            "signed": self.signer is not None,
        }

"""What ``pipeline run`` and ``regenerate`` share: where records go, how they are signed,
whom to trust, and what to do on a failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from executor import cluster
from executor.progress import Say
from executor.signing import KeyPolicy, Signer, SignOptions, TrustPolicy

__all__ = ["StageOptions", "node_keys"]


@dataclass(frozen=True)
class StageOptions:
    """Options every multi-run command takes."""

    runs_dir: Path
    sign: SignOptions
    # pipeline: whose earlier runs may be reused (None: none); regenerate: whose records
    # may be regenerated (None: --no-verify, recorded in each new record)
    policy: TrustPolicy | None
    dry_run: bool = False
    keep_going: bool = False
    echo_logs: bool = True
    engine: str | None = None
    say: Say = field(default=lambda text: None)
    # submit each run that must be made to Slurm instead, as a graph of dependent jobs
    site: cluster.SiteOptions | None = None


def node_keys(options: StageOptions, signer: Signer | None) -> tuple[str, ...]:
    """The public keys a node verifies an upstream job's record with: the run's own
    signing key, and the key it trusts."""
    found = []
    if signer is not None and signer.public_key_pem:
        found.append(signer.public_key_pem)
    if isinstance(options.policy, KeyPolicy):
        found.append(options.policy.public_key_pem)
    return tuple(dict.fromkeys(k.decode() if isinstance(k, bytes) else k for k in found))

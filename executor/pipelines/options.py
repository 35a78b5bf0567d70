"""What ``pipeline run`` and ``regenerate`` share: where records go, how they are signed,
whom to trust, and what to do on a failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from executor.progress import Say
from executor.signing import SignOptions, TrustPolicy

__all__ = ["StageOptions"]


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

"""rexec: run ML training so that anyone can later prove what ran and re-run it.

Data flows one way, and only :mod:`executor.runner` knows the order::

    run:     spec -> resolve -> preflight -> execute -> collect -> attest -> sign -> store
    verify:  store.read -> signature + policy -> re-hash artifacts -> compare

Each stage takes the previous stage's frozen value and returns its own. External
systems sit behind one small seam each: Docker (:mod:`executor.runtime`), NVML
(:mod:`executor.host`), Sigstore (:mod:`executor.signing`). Nothing touches
the network, the GPU or the Docker socket at import time or while parsing a spec.

Replay, diff and rerun live in :mod:`executor.replay` and :mod:`executor.compare.records`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor.record import Verdict
    from executor.runner import RunResult
    from executor.signing import SignOptions, TrustPolicy

from executor._version import __version__

__all__ = ["__version__", "run", "verify"]


def run(
    spec_path: str | os.PathLike[str],
    *,
    runs_dir: str | os.PathLike[str] = "runs",
    params: Mapping[str, Any] | None = None,
    sign: SignOptions | None = None,
    allow_dirty: bool = False,
) -> RunResult:
    """Run a spec as ``rexec run`` does and return the signed record's summary.

    Raises :class:`~executor.errors.RexecError` subclasses; a job that fails is
    still recorded, and its status is in the result rather than an exception.
    """
    from pathlib import Path

    from executor import runner, spec
    from executor.signing import SignOptions

    run_spec = spec.load(Path(spec_path), overrides=list((params or {}).items()))
    options = runner.RunOptions(
        runs_dir=Path(runs_dir).resolve(),
        sign=sign or SignOptions(method=run_spec.signing.method, key_path=run_spec.signing.key),
        allow_dirty=allow_dirty,
        echo_logs=False,
    )
    return runner.run(run_spec, options=options)


def verify(
    target: str | os.PathLike[str],
    policy: TrustPolicy,
    *,
    artifacts: str | os.PathLike[str] | None = None,
) -> Verdict:
    """Verify a run record or statement bundle as ``rexec verify`` does.

    Returns the verdict (``verdict.verified``) rather than raising, so a caller sees
    what was proved before a check failed.
    """
    from pathlib import Path

    from executor.record import verify_record

    return verify_record(
        Path(target), policy, artifacts=Path(artifacts) if artifacts is not None else None
    )

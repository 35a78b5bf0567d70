"""A pipeline's or a regeneration's own record: one signed Statement naming every stage's.

Its subjects are the stage records' Statements (by sha256), its predicate says
for each stage what was decided and why (ran, reused and which run, failed,
broke its contract, pruned, skipped), so "this stage was not re-run" is a signed
claim an auditor can check, unlike an unsigned stage cache. Written under
``RUNS_DIR/pipelines/<id>/`` atomically: a directory appears complete or not at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import owner, safeio
from executor.canonical import canonical_json
from executor.record import BUNDLE, STATEMENT, STATEMENT_TYPE, writer
from executor.signing import Signer

__all__ = ["LEDGER_DIR", "PREDICATE_TYPE", "write_ledger"]

LEDGER_DIR = writer.PIPELINES
PREDICATE_TYPE = writer.PIPELINE_PREDICATE


def write_ledger(
    runs_dir: Path,
    ledger_id: str,
    *,
    kind: str,
    stages: Sequence[Mapping[str, Any]],
    about: Mapping[str, Any],
    started: datetime,
    signer: Signer | None,
) -> Path:
    """Sign and store the ledger; returns its directory."""
    subjects = [
        {"name": f"stage/{s['stage']}", "digest": {"sha256": s["statementSha256"]}}
        for s in stages
        if s.get("statementSha256")
    ]
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "kind": kind,
            "id": ledger_id,
            **about,
            "stages": list(stages),
            "invoker": owner.invoker(),
            "startedOn": started.isoformat().replace("+00:00", "Z"),
            "finishedOn": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
    }
    payload = canonical_json(statement)
    parent = runs_dir / LEDGER_DIR
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{ledger_id}.", dir=parent))
    try:
        safeio.write_atomic(staging / STATEMENT, payload)
        if signer is not None:
            safeio.write_atomic(staging / BUNDLE, signer.sign_dsse(payload))
        os.chmod(staging, 0o755)
        target = parent / ledger_id
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target

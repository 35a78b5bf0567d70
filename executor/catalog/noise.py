"""The noise reference of a run's metrics: the runs of its spec with other seeds.

The catalog finds them (same seed key, docs/catalog.md); each is verified under the
caller's trust policy and its metrics read from its own signed bytes before a value
of it counts, since a planted row or record could otherwise widen the spread until
any change looked like noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from executor.catalog.db import Catalog
from executor.catalog.index import dependency_digest
from executor.compare import series_of
from executor.errors import RexecError
from executor.record import RunRecord, load_record, verify_record
from executor.signing import TrustPolicy
from executor.spec import seed_key_of

MAX_SEEDS = 20  # the newest runs of the spec a reference is taken from


@dataclass(frozen=True)
class Reference:
    """Each metric's values over the seeded runs that verified (by ``SOURCE:NAME``)."""

    values: Mapping[str, Sequence[float]] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()  # the seeds of the runs that counted
    refused: int = 0  # runs the catalog named that did not verify (left out)


def seed_key_of_record(record: RunRecord) -> str:
    """The seed key of a record, as the catalog indexes it."""
    return seed_key_of(
        record.spec,
        image=dependency_digest(record.dependency("image")),
        code=dependency_digest(record.dependency("code") or {}),
    )


def seed_reference(cat: Catalog, record: RunRecord, policy: TrustPolicy | None) -> Reference:
    """The metrics of the runs of ``record``'s spec with any seed (``record`` among them
    when indexed), each verified under ``policy`` (None: ``--no-verify``, read as they are)."""
    values: dict[str, list[float]] = {}
    seeds: list[int] = []
    refused = 0
    for row in cat.seeded(seed_key_of_record(record), limit=MAX_SEEDS):
        seeded = _verified(Path(row["path"]), row["statement_sha256"], policy)
        if seeded is None:
            refused += 1
            continue
        seeds.append(int(seeded.spec.get("seed") or 0))
        for series in series_of(seeded):
            values.setdefault(series.key, []).append(series.value)
    return Reference(values, tuple(seeds), refused)


def _verified(path: Path, statement: str, policy: TrustPolicy | None) -> RunRecord | None:
    """The record at ``path`` if it is the one the row names and it verifies."""
    try:
        if policy is None:
            record = load_record(path)
        else:
            verdict = verify_record(path, policy)
            if verdict.error is not None:
                return None
            record = load_record(path, payload=verdict.payload)
    except (RexecError, OSError):
        return None
    return record if record.statement_sha256 == statement else None

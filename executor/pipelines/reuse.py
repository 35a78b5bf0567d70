"""The signed stage cache: an earlier run reused only when it is the same computation
and its record still verifies.

"The same computation" is :func:`executor.spec.stage_key` (the resolved spec, the
image digest, the code tree), which the catalog stores for every run it
indexes. A match is not trusted on the catalog's word: the record is verified
under the caller's trust policy, outputs included, before its outputs feed the
next stage; one that does not verify is refused, said so, and the stage runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from executor import spec
from executor.catalog import Catalog, Upstream, dependency_digest
from executor.code import resolve_code
from executor.images import ResolvedImage, resolve_image
from executor.progress import Say
from executor.record import RunRecord, load_record, verify_record
from executor.runtime import ContainerRuntime
from executor.signing import TrustPolicy

__all__ = ["Reuse", "find_reusable", "key_of"]

CANDIDATES = 5  # the newest matching runs tried before the stage is run instead


@dataclass(frozen=True)
class Reuse:
    """An earlier run whose outputs stand for this stage, and how that was decided."""

    found: Upstream | None  # the record, verified, and who signed it
    refused: tuple[str, ...]  # earlier matching runs that did not verify, and why


def key_of(
    run_spec: spec.RunSpec, *, runtime: ContainerRuntime, say: Say
) -> tuple[str, ResolvedImage]:
    """The stage key of a resolved spec: resolves the image (pull or build, as a run
    would; no job container is started) and hashes the code tree."""
    image = resolve_image(
        run_spec.image, runtime=runtime, spec_name=run_spec.name, log=lambda t: None
    )
    code = None
    if run_spec.code is not None:
        code = resolve_code(
            run_spec.code.path, mount=run_spec.code.mount, allow_dirty=True
        ).tree_digest
    key = spec.stage_key(spec.resolved_view(run_spec), image=image.digest, code=code)
    say(f"stage {run_spec.name}: key {key[:16]}… (image {image.digest[:19]}…)")
    return key, image


def find_reusable(
    catalog: Catalog,
    key: str,
    *,
    policy: TrustPolicy | None,
    say: Say,
    superseded_too: bool = False,
) -> Reuse:
    """The newest succeeded run with ``key`` whose record verifies under ``policy`` and
    that no regeneration verified under ``policy`` superseded (``superseded_too``: it may
    have been)."""
    if policy is None:
        return Reuse(None, ())
    rows = catalog.same_computation(key, limit=CANDIDATES)
    refused: list[str] = []
    for row in rows:
        path = Path(row["path"])
        verdict = verify_record(path, policy)
        if verdict.error is not None:
            refused.append(f"{row['run_id']}: {verdict.error.message}")
            say(
                f"not reusing {row['run_id']}: its record does not verify ({verdict.error.message})"
            )
            continue
        record = load_record(path, payload=verdict.payload)
        if record.statement_sha256 != row["statement_sha256"] or spec_key_of_record(record) != key:
            refused.append(f"{row['run_id']}: the record at {path} is no longer that run")
            continue
        if record.status != "succeeded":
            refused.append(f"{row['run_id']}: its signed status is {record.status}")
            continue
        newer = None if superseded_too else _superseded_by(catalog, record, policy)
        if newer is not None:
            why = f"superseded by {newer} after a corrected input: not reused, the stage runs"
            refused.append(f"{row['run_id']}: {why}")
            say(f"warning: {row['run_id']} was {why} (--reuse-superseded reuses it)")
            continue
        return Reuse(Upstream(record, verdict.signer or ""), tuple(refused))
    return Reuse(None, tuple(refused))


def _superseded_by(catalog: Catalog, record: RunRecord, policy: TrustPolicy) -> str | None:
    """The run (and its regeneration) that replaced ``record``, if its record verifies under
    ``policy`` and says so; a claim that does not verify is ignored."""
    for row in catalog.successors([record.statement_sha256]):
        verdict = verify_record(Path(row["path"]), policy)
        if verdict.error is not None:
            continue
        newer = load_record(Path(row["path"]), payload=verdict.payload)
        lineage = newer.lineage
        if lineage.get("originalStatementSha256") == record.statement_sha256:
            regeneration = (lineage.get("regeneration") or {}).get("id")
            return f"{newer.run_id} (regeneration {regeneration})"
    return None


def spec_key_of_record(record: RunRecord) -> str:
    """The stage key a verified record signs (never the catalog's copy of it)."""
    return spec.stage_key(
        record.spec,
        image=dependency_digest(record.dependency("image")),
        code=dependency_digest(record.dependency("code")),
    )

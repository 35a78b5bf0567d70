"""``rexec verify RUN --chain``: the proof, offline, that a model came from these raw bytes
through these signed steps.

A record that read another run's outputs signs, for that input, the upstream run, the
sha256 of its Statement (``fromStatementSha256``), the signer it was verified to have
and the tree digest it read. The walk starts at a verified record and, for every such
input, finds a record whose Statement has exactly that sha256 (where the record says
the data was, in the runs dirs named, or wherever ``locate`` suggests), verifies it
under the upstream policy (signature and every output), and checks that it signs the
very tree the downstream record read. Inputs that came from no run are the raw data,
where the chain ends. Every break names its link: a missing or unverifiable upstream
record (exit 3) or a digest that does not match (exit 4).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor import safeio, snapshot, spec
from executor.errors import MismatchError, RexecError, VerificationError
from executor.record import STATEMENT_CAP, RunRecord, load_record, verify_record, writer
from executor.signing import TrustPolicy

__all__ = ["Link", "walk_chain"]

MAX_RECORDS = 10_000  # a chain longer than this is refused, not walked forever
# (run id, statement sha256) -> record directories that may hold it (never trusted)
Locate = Callable[[str, str], Sequence[Path]]


@dataclass
class Link:
    """One record of the chain, verified, and what each of its inputs came from."""

    run_id: str
    statement_sha256: str
    signer: str
    path: Path
    inputs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The link in ``verify --chain --json``."""
        return {
            "runId": self.run_id,
            "statementSha256": self.statement_sha256,
            "signer": self.signer,
            "path": str(self.path),
            "inputs": self.inputs,
        }


def _statement_sha(path: Path) -> str | None:
    try:
        data = safeio.read_capped(path / writer.STATEMENT, cap=STATEMENT_CAP)
    except (OSError, safeio.UnsafeFile):
        return None
    return hashlib.sha256(data).hexdigest()


def _recorded_place(notes: Mapping[str, Any]) -> Path | None:
    """The upstream record directory the downstream record says it read from:
    ``<record>/outputs/<path>``, the path being the one its ``from`` names."""
    host, ref = notes.get("hostPath"), notes.get("from")
    match = spec.FROM_RE.match(ref) if isinstance(ref, str) else None
    if not isinstance(host, str) or match is None:
        return None
    depth = len(Path(match.group(3).strip("/")).parts) + 1  # the path, then outputs/
    place = Path(host)
    return place.parents[depth - 1] if depth <= len(place.parents) else None


def _find(
    run_id: str,
    statement: str,
    notes: Mapping[str, Any],
    *,
    runs_dirs: Sequence[Path],
    locate: Locate,
) -> Path | None:
    """A directory holding the record with exactly this Statement, or None."""
    places = [_recorded_place(notes), *(d / run_id for d in runs_dirs), *locate(run_id, statement)]
    for place in places:
        if place is not None and _statement_sha(place) == statement:
            return place
    return None


def _signed_trees(record: RunRecord, rel: str) -> set[str]:
    """The tree digests ``record`` signs (``outputTrees``), and the one its signed subjects
    give for ``outputs/<rel>/`` when a deeper directory was read."""
    found = set(record.output_trees.values())
    clean = rel.strip("/")
    if clean and clean != ".":
        prefix = clean + "/"
        digests = {n[len(prefix) :]: d for n, d in record.outputs.items() if n.startswith(prefix)}
        with contextlib.suppress(RexecError, OSError, KeyError):
            found.add(snapshot.trees_of(record.outputs_dir / clean, digests)[""])
    return found


def walk_chain(
    start: RunRecord,
    signer: str,
    policy: TrustPolicy,
    *,
    runs_dirs: Sequence[Path] = (),
    locate: Locate = lambda run_id, statement: (),
) -> list[Link]:
    """Every record the chain from ``start`` (already verified, signed by ``signer``) back
    to raw data is made of, each verified under ``policy``; raises at the first broken link."""
    links: list[Link] = []
    seen: dict[str, Link] = {}
    pending: list[tuple[RunRecord, str]] = [(start, signer)]
    while pending:
        record, who = pending.pop(0)
        if record.statement_sha256 in seen:
            continue
        if len(seen) >= MAX_RECORDS:
            raise VerificationError(f"the chain has more than {MAX_RECORDS} records; not walked")
        link = Link(record.run_id, record.statement_sha256, who, record.path)
        seen[record.statement_sha256] = link
        links.append(link)
        for item in record.spec.get("inputs", []):
            name, digest = item.get("name"), item.get("digest")
            notes = (record.dependency(f"input:{name}") or {}).get("annotations") or {}
            upstream = notes.get("fromStatementSha256")
            if not isinstance(upstream, str):
                link.inputs.append({"name": name, "digest": digest, "from": None})
                continue
            found = _upstream(record, str(name), str(digest), notes, policy, runs_dirs, locate)
            link.inputs.append(
                {
                    "name": name,
                    "digest": digest,
                    "from": {
                        "runId": found[0].run_id,
                        "statementSha256": upstream,
                        "signer": found[1],
                        "signerWhenRead": notes.get("fromSigner"),
                    },
                }
            )
            pending.append(found)
    return links


def _upstream(
    record: RunRecord,
    name: str,
    digest: str,
    notes: Mapping[str, Any],
    policy: TrustPolicy,
    runs_dirs: Sequence[Path],
    locate: Locate,
) -> tuple[RunRecord, str]:
    """The verified upstream record one input of ``record`` came from, and its signer."""
    where = f"{record.run_id} input {name!r}"
    run_id, statement = str(notes.get("fromRun")), str(notes.get("fromStatementSha256"))
    place = _find(run_id, statement, notes, runs_dirs=runs_dirs, locate=locate)
    if place is None:
        raise VerificationError(
            f"chain broken at {where}: no record of run {run_id} with statement "
            f"sha256:{statement} was found",
            hint="pass the runs dir that holds it with --runs-dir (the chain is checked from "
            "the records themselves, offline)",
        )
    verdict = verify_record(place, policy)
    if verdict.error is not None:
        raise VerificationError(
            f"chain broken at {where}: its upstream record {place} does not verify under "
            f"{policy.describe()}: {verdict.error.message}",
            details=verdict.error.details,
        )
    if verdict.statement_digest != statement:
        raise MismatchError(f"chain broken at {where}: {place} changed while it was read")
    upstream = load_record(place, payload=verdict.payload)
    match = spec.FROM_RE.match(str(notes.get("from") or ""))
    rel = match.group(3) if match else ""
    if digest not in _signed_trees(upstream, rel):
        raise MismatchError(
            f"chain broken at {where}: it read {digest}, which run {upstream.run_id} does not "
            f"sign for outputs/{rel}",
        )
    return upstream, verdict.signer or ""

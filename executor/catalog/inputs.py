"""``[[inputs]] from = "run:<id>:<path>"``: an earlier run's output directory as an input.

The catalog is an index, never an authority: it only says where records that claim
a run (or the newest ``latest:`` runs of a name) might be. Each candidate record is
verified under the caller's trust policy, outputs included, before one byte of it is
used; a record that does not verify is skipped and said so, and without a policy
nothing is read. The directory is ``<record>/outputs/<path>`` and its digest the
tree the verified record signs for it (computed from its signed subjects, as
``outputTrees`` is), so a spec may leave ``digest`` out; a digest it does give must
be that one. The downstream record then signs the upstream run, its Statement's
sha256 and the signer it was verified to have: a chain of Statements a verifier
walks offline, raw data to model (``rexec verify --chain``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from executor import snapshot, spec
from executor.catalog.db import Catalog
from executor.errors import InputError, MismatchError, VerificationError
from executor.progress import Say
from executor.record import RunRecord, load_record, verify_record
from executor.signing import NO_POLICY_HINT, TrustPolicy

__all__ = ["LATEST_TRIES", "Upstream", "find_upstream", "pin_from", "resolve_inputs"]

LATEST_TRIES = 20  # the newest `latest:` candidates verified before giving up


@dataclass(frozen=True)
class Upstream:
    """A record that verified under the caller's policy, and who signed it."""

    record: RunRecord
    signer: str


def _candidates(kind: str, ident: str, *, runs_dir: Path, catalog: Catalog | None) -> list[Path]:
    """Where records that may be the one asked for are, best first (never trusted)."""
    found: list[Path] = []
    if kind == "run" and (runs_dir / ident / "statement.json").is_file():
        found.append(runs_dir / ident)
    if catalog is not None:
        if kind == "run":
            rows = catalog.records_of(ident)
        else:
            rows = catalog.rows(
                "SELECT path FROM runs WHERE name = ? AND status = 'succeeded' AND kind = 'run'"
                " ORDER BY started DESC NULLS LAST, statement_sha256 LIMIT ?",
                [ident, LATEST_TRIES],
            )
        found += [Path(r["path"]) for r in rows]
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.absolute(), path)
    return list(unique.values())


def _why_not(kind: str, ident: str, record: RunRecord) -> str | None:
    """Why a verified record is still not the one ``kind:ident`` asks for, if it is not."""
    if kind == "run":
        return None if record.run_id == ident else f"it is run {record.run_id}, not {ident}"
    if record.spec.get("name") != ident:
        return f"its signed name is {record.spec.get('name')!r}"
    if record.status != "succeeded":
        return f"its signed status is {record.status}"
    if record.lineage.get("replayOf") or record.lineage.get("derivedFrom"):
        return "it is a replay or rerun, not a run"
    return None


def find_upstream(
    ref: str,
    *,
    runs_dir: Path,
    catalog: Catalog | None,
    policy: TrustPolicy | None,
    say: Say = lambda text: None,
) -> tuple[Upstream, str]:
    """The record ``run:<id>:<path>`` or ``latest:<name>:<path>`` names, verified under
    ``policy``, and the path inside its outputs; skipped candidates are said, with why."""
    match = spec.FROM_RE.match(ref)
    if match is None:
        raise InputError(f"from {ref!r}: expected run:<id>:<path> or latest:<name>:<path>")
    kind, ident, rel = match.groups()
    if policy is None:
        raise InputError(
            f"from {ref}: reading another run's outputs needs a trust policy to verify its "
            "record (the catalog only says where records are, not which are genuine)",
            hint=NO_POLICY_HINT,
        )
    candidates = _candidates(kind, ident, runs_dir=runs_dir, catalog=catalog)
    verified: dict[str, Upstream] = {}
    skipped: list[str] = []
    for path in candidates:
        verdict = verify_record(path, policy)
        if verdict.error is not None:
            skipped.append(f"{path}: does not verify ({verdict.error.message})")
            continue
        record = load_record(path, payload=verdict.payload)
        why = _why_not(kind, ident, record)
        if why is not None:
            skipped.append(f"{path}: {why}")
            continue
        verified.setdefault(record.statement_sha256, Upstream(record, verdict.signer or ""))
        if kind == "latest":
            break  # the newest that verifies
    for line in skipped:
        say(f"from {kind}:{ident}: skipped {line}")
    what = f"run {ident}" if kind == "run" else f"a succeeded run named {ident!r}"
    if not verified:
        if not candidates:
            raise InputError(
                f"from {kind}:{ident}: no record of {what} in {runs_dir} or the catalog",
                hint="pass the --runs-dir it was written to, or `rexec catalog index` it",
            )
        raise VerificationError(
            f"from {kind}:{ident}: no record of {what} verifies under {policy.describe()}",
            details=skipped,
            hint="a record signed by someone else, unsigned or edited is never read; "
            "name the signer you trust, or restore the genuine record",
        )
    if len(verified) > 1:
        raise VerificationError(
            f"from {kind}:{ident}: {len(verified)} different records of {what} verify",
            details=[f"statement {s} at {u.record.path}" for s, u in verified.items()],
            hint="two signed records claim one run id; name the one you mean by its "
            "directory with --runs-dir, and find out how the other was made",
        )
    return next(iter(verified.values())), rel


def _signed_tree(record: RunRecord, rel: str) -> str:
    directory = record.outputs_dir / rel
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory of run {record.run_id}'s outputs")
    prefix = rel.rstrip("/") + "/"
    digests = {n[len(prefix) :]: d for n, d in record.outputs.items() if n.startswith(prefix)}
    return snapshot.trees_of(directory, digests)[""]


def pin_from(
    ref: str,
    *,
    runs_dir: Path,
    catalog: Catalog | None,
    policy: TrustPolicy | None,
    say: Say = lambda text: None,
) -> tuple[str, str]:
    """``rexec lock``: ``run:``/``latest:<name>:<path>`` as ``run:<id>:<path>`` (the verified
    run it names now) and the tree digest that run's record signs for the path."""
    upstream, rel = find_upstream(ref, runs_dir=runs_dir, catalog=catalog, policy=policy, say=say)
    return f"run:{upstream.record.run_id}:{rel}", _signed_tree(upstream.record, rel)


def resolve_inputs(
    run_spec: spec.RunSpec,
    *,
    runs_dir: Path,
    catalog: Catalog | None,
    policy: TrustPolicy | None,
    verified: Mapping[str, Upstream] | None = None,
    say: Say = lambda text: None,
) -> spec.RunSpec:
    """``run_spec`` with every ``from`` input's path, digest, upstream run and signer filled
    in; ``verified`` holds records the caller already verified, by run id (a pipeline's)."""
    if not any(i.from_ref and not i.from_run for i in run_spec.inputs):
        return run_spec
    resolved = []
    for index, item in enumerate(run_spec.inputs):
        if item.from_ref is None or item.from_run is not None:  # a path, or resolved (replay)
            resolved.append(item)
            continue
        match = spec.FROM_RE.match(item.from_ref)
        assert match is not None  # the parser checked the form
        kind, ident, rel = match.groups()
        if kind == "run" and verified and ident in verified:
            upstream = verified[ident]
        else:
            upstream, rel = find_upstream(
                item.from_ref, runs_dir=runs_dir, catalog=catalog, policy=policy, say=say
            )
        record = upstream.record
        digest = _signed_tree(record, rel)
        if item.digest != spec.UNRESOLVED_DIGEST and item.digest != digest:
            raise MismatchError(
                f"inputs[{index}] ({item.name}): pinned {item.digest}, but run {record.run_id} "
                f"signed {digest} for outputs/{rel}",
                hint="pin the digest the upstream record signs, or name the run you meant",
            )
        resolved.append(
            replace(
                item,
                path=record.outputs_dir / rel,
                digest=digest,
                from_run=record.run_id,
                from_statement=record.statement_sha256,
                from_signer=upstream.signer,
            )
        )
    return replace(run_spec, inputs=tuple(resolved))

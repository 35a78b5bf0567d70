"""Where a pinned listing comes from, for ``rexec snapshot diff`` and ``verify --listing``.

A tree digest hashed on this machine before (its listing is in the listing
store), a run record, its ``statement.json``, or a ``*.listing.json`` file.
A module of its own so that ``rexec snapshot hash`` never imports it, nor
the pathlib it uses.
"""

from __future__ import annotations

import json
from pathlib import Path

from executor.errors import InputError
from executor.snapshot import DIGEST_RE, Listing, load_listing


def references(ref: str, *, wanted: str | None) -> list[Listing]:
    """The pinned listing(s) a diff argument names: digest, run dir, statement or listing."""
    if DIGEST_RE.match(ref):
        listing = load_listing(ref)
        if listing is None:
            raise InputError(
                f"no listing is stored here for {ref}",
                hint="run `rexec snapshot hash` on the original data on this machine, or pass "
                "the run record (runs/<run-id>) that pinned it",
            )
        return [listing]
    path = Path(ref)
    if path.is_file() and path.name.endswith(".listing.json"):
        return [read_listing(path)]
    if path.is_file():
        return _run_listings(path.parent, pinned=_statement_digests(path), wanted=wanted)
    if path.is_dir():
        statement = path / "statement.json"
        pinned = _statement_digests(statement) if statement.is_file() else None
        return _run_listings(path, pinned=pinned, wanted=wanted)
    raise InputError(
        f"{ref}: not a tree digest, run record, statement.json or listing file",
        hint="pass sha256-tree-v1:<hex>, runs/<run-id>, its statement.json or a *.listing.json",
    )


def _statement_digests(path: Path) -> set[str]:
    """Tree digests a Statement pins, from predicate.buildDefinition.resolvedDependencies."""
    try:
        doc = json.loads(path.read_bytes())
        deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: not an in-toto Statement with resolvedDependencies ({exc})",
            hint="pass the statement.json of a rexec run record",
        ) from exc
    found = set()
    for dep in deps:
        for name, value in (dep.get("digest") or {}).items():
            if name in ("sha256-tree-v1", "blake3-tree-v1"):
                found.add(f"{name}:{value}")
    return found


def _run_listings(run_dir: Path, *, pinned: set[str] | None, wanted: str | None) -> list[Listing]:
    pattern = f"{wanted}.listing.json" if wanted else "*.listing.json"
    files = sorted((run_dir / "inputs").glob(pattern))
    listings = [read_listing(f) for f in files]
    if pinned is not None:
        listings = [li for li in listings if li.digest in pinned]
    if not listings:
        raise InputError(
            f"{run_dir}: no input listing {'named ' + wanted + ' ' if wanted else ''}"
            "matching the record's pinned digests",
            hint="check the run record's inputs/ directory (or --input NAME)",
        )
    return listings


def read_listing(path: str | Path) -> Listing:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read listing ({exc.strerror})") from exc
    return Listing.from_json(data, where=str(path))

"""``rexec snapshot``: pin a data directory by content digest, verify it, diff it.

Three verbs because users do three things with data: pin it (``hash``), gate
on it in a pipeline (``verify``, exit 4 on mismatch), and find out what changed
(``diff``). ``hash`` prints the digest alone on stdout so ``$(rexec snapshot
hash d)`` works; everything for humans goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from executor.errors import ExitCode, InputError
from executor.snapshot import (
    DIGEST_RE,
    Listing,
    Snapshot,
    diff_listings,
    hash_tree,
    load_listing,
    store_listing,
    verify_tree,
)

HASH_EPILOG = """\
examples:
  rexec snapshot hash data/                     print sha256-tree-v1:<hex>
  DIGEST=$(rexec snapshot hash data/)           capture it for a spec
  rexec snapshot hash data/ --algo blake3       faster, digest named blake3-tree-v1
  rexec snapshot hash data/ --json              one JSON document with totals

The digest covers every file's bytes, every path, symlink targets (never
followed) and empty directories; not permissions or timestamps. Its listing is
kept under $REXEC_CACHE_DIR (default ~/.cache/rexec) so a later mismatch can
name the files that differ. Unchanged files (same device, inode, size, mtime,
ctime) reuse their cached digest; --rehash reads everything again.
"""

VERIFY_EPILOG = """\
examples:
  rexec snapshot verify data/ sha256-tree-v1:3f1c…   exit 0 if it matches, 4 if not
  rexec snapshot verify data/ "$DIGEST" --listing runs/<id>/inputs/train.listing.json

On a mismatch the differing files are listed when a listing of the pinned
state is known (--listing, or stored by an earlier `rexec snapshot hash`).
"""

DIFF_EPILOG = """\
examples:
  rexec snapshot diff data/ sha256-tree-v1:3f1c…        against a digest hashed here before
  rexec snapshot diff data/ runs/<run-id>               against the input a run pinned
  rexec snapshot diff data/ runs/<run-id>/statement.json --input train
  rexec snapshot diff data/ old.listing.json --json

Prints "added: PATH", "removed: PATH", "changed: PATH" lines; exits 0 when
the tree matches, 4 when it differs.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "snapshot",
        help="pin, verify and diff data directories by content digest",
        description="Content digests of data directories (sha256-tree-v1, blake3-tree-v1).",
    )
    verbs = p.add_subparsers(title="snapshot commands", metavar="VERB")
    p.set_defaults(handler=lambda _a: _usage(p))

    h = verbs.add_parser(
        "hash",
        help="print the tree digest of a directory",
        description="Hash a directory into one tree digest and remember its listing.",
        epilog=HASH_EPILOG,
    )
    h.add_argument("path", type=Path, metavar="PATH")
    h.add_argument("--algo", choices=("sha256", "blake3"), default="sha256")
    h.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    h.add_argument(
        "--listing-out", type=Path, metavar="FILE", help="also write the listing to FILE"
    )
    h.add_argument(
        "--allow-external-links",
        action="store_true",
        help="record symlinks that point outside the directory instead of failing",
    )
    _common(h)
    h.set_defaults(handler=handle_hash)

    v = verbs.add_parser(
        "verify",
        help="check a directory against a pinned digest (exit 4 if it differs)",
        description="Re-hash a directory and compare it with a pinned tree digest.",
        epilog=VERIFY_EPILOG,
    )
    v.add_argument("path", type=Path, metavar="PATH")
    v.add_argument("digest", metavar="DIGEST")
    v.add_argument(
        "--listing", type=Path, metavar="FILE", help="listing of the pinned state, to name files"
    )
    _common(v)
    v.set_defaults(handler=handle_verify)

    d = verbs.add_parser(
        "diff",
        help="name the files added, removed and changed since a pin",
        description="Compare a directory with a pinned state, file by file.",
        epilog=DIFF_EPILOG,
    )
    d.add_argument("path", type=Path, metavar="PATH")
    d.add_argument(
        "reference",
        metavar="DIGEST|RUN_DIR|statement.json|LISTING",
        help="what to compare against",
    )
    d.add_argument("--input", metavar="NAME", help="which input of a run record (inputs/NAME)")
    d.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    _common(d)
    d.set_defaults(handler=handle_diff)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    p.add_argument("--rehash", action="store_true", help="ignore the cache; read every file")


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return int(ExitCode.BAD_INPUT)


def handle_hash(args: argparse.Namespace) -> int:
    snap = hash_tree(
        args.path,
        algo=args.algo,
        use_cache=not args.rehash,
        progress=not args.quiet,
        allow_external_links=args.allow_external_links,
    )
    stored = store_listing(snap.listing)
    if args.listing_out is not None:
        _write_listing(snap.listing, args.listing_out)
    if args.json:
        doc = _summary(snap) | {"path": str(args.path), "listing": str(stored)}
        print(json.dumps(doc, sort_keys=True))
    else:
        print(snap.digest)
    if not args.quiet:
        _say(_summary_line(snap))
    return int(ExitCode.OK)


def handle_verify(args: argparse.Namespace) -> int:
    reference = _read_listing(args.listing) if args.listing is not None else None
    snap = verify_tree(
        args.path,
        args.digest,
        reference=reference,
        use_cache=not args.rehash,
        progress=not args.quiet,
    )
    print(f"ok: {args.path} matches {snap.digest}")
    if not args.quiet:
        _say(_summary_line(snap))
    return int(ExitCode.OK)


def handle_diff(args: argparse.Namespace) -> int:
    candidates = _references(args.reference, wanted=args.input)
    algo = candidates[0].algo
    candidates = [c for c in candidates if c.algo == algo]
    snap = hash_tree(args.path, algo=algo, use_cache=not args.rehash, progress=not args.quiet)
    reference = min(candidates, key=lambda ref: _distance(ref, snap.listing))
    if len(candidates) > 1 and not args.quiet:
        _say(f"comparing with the closest of {len(candidates)} pinned inputs: {reference.digest}")
    diff = diff_listings(reference, snap.listing)
    if args.json:
        print(json.dumps({"pinned": reference.digest, "current": snap.digest} | diff.to_json()))
    else:
        for line in diff.lines():
            print(line)
        if diff.same:
            print(f"same: {args.path} matches {reference.digest}")
    return int(ExitCode.OK if diff.same else ExitCode.MISMATCH)


def _references(ref: str, *, wanted: str | None) -> list[Listing]:
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
        return [_read_listing(path)]
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
    listings = [_read_listing(f) for f in files]
    if pinned is not None:
        listings = [li for li in listings if li.digest in pinned]
    if not listings:
        raise InputError(
            f"{run_dir}: no input listing {'named ' + wanted + ' ' if wanted else ''}"
            "matching the record's pinned digests",
            hint="check the run record's inputs/ directory (or --input NAME)",
        )
    return listings


def _read_listing(path: Path) -> Listing:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read listing ({exc.strerror})") from exc
    return Listing.from_json(data, where=str(path))


def _write_listing(listing: Listing, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as out:
        listing.write_json(out)


def _distance(ref: Listing, current: Listing) -> int:
    d = diff_listings(ref, current)
    return len(d.added) + len(d.removed) + len(d.changed)


def _summary(snap: Snapshot) -> dict[str, Any]:
    return {
        "digest": snap.digest,
        "algo": snap.algo,
        "files": snap.files,
        "bytes": snap.bytes,
        "seconds": round(snap.seconds, 3),
        "cache_hits": snap.cache_hits,
        "cache_used": snap.cache_used,
    }


def _summary_line(snap: Snapshot) -> str:
    rate = snap.bytes / snap.seconds / 1e6 if snap.seconds > 0 else 0.0
    cache = f"{snap.cache_hits} from cache" if snap.cache_used else "cache off"
    return (
        f"{snap.files} files, {snap.bytes:,} bytes in {snap.seconds:.2f} s "
        f"({rate:.0f} MB/s; {cache})"
    )


def _say(text: str) -> None:
    print(text, file=sys.stderr)

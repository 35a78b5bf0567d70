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
from typing import Any

from executor.errors import ExitCode
from executor.snapshot import (
    Listing,
    Snapshot,
    diff_listings,
    hash_tree,
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
    """Add ``rexec snapshot hash|verify|diff`` to the parser."""
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
    h.add_argument("path", metavar="PATH")
    h.add_argument("--algo", choices=("sha256", "blake3"), default="sha256")
    h.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    h.add_argument("--listing-out", metavar="FILE", help="also write the listing to FILE")
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
    v.add_argument("path", metavar="PATH")
    v.add_argument("digest", metavar="DIGEST")
    v.add_argument("--listing", metavar="FILE", help="listing of the pinned state, to name files")
    v.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    _common(v)
    v.set_defaults(handler=handle_verify)

    d = verbs.add_parser(
        "diff",
        help="name the files added, removed and changed since a pin",
        description="Compare a directory with a pinned state, file by file.",
        epilog=DIFF_EPILOG,
    )
    d.add_argument("path", metavar="PATH")
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
    """Print a tree's digest (and keep its listing, so a later mismatch can name files)."""
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
        doc = _summary(snap) | {"path": args.path, "listing": stored}
        print(json.dumps(doc, sort_keys=True))
    else:
        print(snap.digest)
    if not args.quiet:
        _say(_summary_line(snap))
    return int(ExitCode.OK)


def handle_verify(args: argparse.Namespace) -> int:
    """Check a tree against a pinned digest; exit 4 naming the files that differ."""
    reference = None
    if args.listing is not None:
        from executor.cli._snapshot_refs import read_listing

        reference = read_listing(args.listing)
    snap = verify_tree(
        args.path,
        args.digest,
        reference=reference,
        use_cache=not args.rehash,
        progress=not args.quiet,
    )
    if args.json:
        print(json.dumps(_summary(snap) | {"path": args.path, "matches": True}, sort_keys=True))
    else:
        print(f"ok: {args.path} matches {snap.digest}")
    if not args.quiet:
        _say(_summary_line(snap))
    return int(ExitCode.OK)


def handle_diff(args: argparse.Namespace) -> int:
    """Show which files differ between a tree and a digest, listing or run record."""
    from executor.cli._snapshot_refs import references

    candidates = references(args.reference, wanted=args.input)
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


def _write_listing(listing: Listing, path: str) -> None:
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

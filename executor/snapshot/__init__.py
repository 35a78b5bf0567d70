"""Snapshots: pin a data directory by one content digest, and verify it later.

This module is the public face of snapshots (every import site uses it) and the
one place that wires the stages together: ``hash_tree`` walks a directory once,
depth first in digest order (:mod:`executor.snapshot.walk`), streams the files
it leaves to hash in chunks through :mod:`executor.snapshot.hashing`, and gets
the results back in walk order: one root-hash update per chunk, and the
listing. The listing store (``store_listing``/``load_listing``) lives here too,
so a mismatch found later can name the files that differ.

The tuning knobs below are module globals read on every call and passed down,
so a test or benchmark shrinks them on ``executor.snapshot`` alone. Where the
time goes, and so why the pipeline has this shape, is measured in
docs/performance.md.

Memory stays bounded: files are read in 1 MiB blocks, large ones a few 4 MiB
blocks ahead, a few chunks are in flight, the cache is read one directory at
a time; the listing keeps one small tuple per entry.

The digest format is defined in :mod:`executor.snapshot.listing` and
``docs/snapshots.md``.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import time
from collections.abc import Mapping
from typing import BinaryIO, NamedTuple

from executor import safeio
from executor.errors import InputError, MismatchError, SnapshotError
from executor.paths import cache_dir
from executor.progress import make_progress, progress_shown
from executor.safeio import write_atomic
from executor.snapshot import stamps
from executor.snapshot.hashing import Hashers, Sizes
from executor.snapshot.listing import (
    ALGOS,
    DIGEST_RE,
    Entry,
    Listing,
    ListingDiff,
    RootHasher,
    diff_listings,
    hash_bytes,
    new_hasher,
    parse_digest,
    root_digest,
    sort_key,
)
from executor.snapshot.statcache import RACY_MARGIN_NS, open_cache
from executor.snapshot.walk import totals, tree_root, walk

__all__ = [
    "ALGORITHMS",
    "DIGEST_RE",
    "Listing",
    "ListingDiff",
    "Snapshot",
    "Vouched",
    "check_vouched",
    "diff_listings",
    "hash_tree",
    "keep_listing",
    "load_listing",
    "parse_digest",
    "stamps",
    "store_listing",
    "trees_of",
    "verify_tree",
]

BIG = 8 << 20  # a file this large is hashed by a helper: SHA-256 on a thread that reads it
# ahead (several large files use several cores), BLAKE3 in a process that maps it (all cores)
READ_BLOCK = 4 << 20  # read-ahead block of a large file (a few in flight bound the memory)
MAP_WINDOW = 64 << 20  # BLAKE3 maps this much at a time: a progress step, a page-fault sample
BATCH_FILES = 1024  # files per process-pool task: amortises the pool's per-task cost
CHUNK_ENTRIES = 4096  # entries per chunk, hashed or not (cache hits, links, directories)
FORK_AFTER = 1024  # files to hash before starting the process pool pays for itself
# RACY_MARGIN_NS (imported above) is read here on each call as well, for the same reason.

ALGORITHMS = tuple(ALGOS)


class Snapshot(NamedTuple):
    """The result of hashing one tree."""

    digest: str
    algo: str
    files: int
    bytes: int
    cache_hits: int
    cache_used: bool
    listing: Listing
    seconds: float = 0.0
    check: str = "hash"  # or "stat": the submit host's hash, vouched for by lstat (stamps)


class Vouched(NamedTuple):
    """An input the submit host hashed: its listing and the stamps taken with it."""

    listing: Listing
    stamps: str  # :func:`executor.snapshot.stamps.take`


def check_vouched(path: str | os.PathLike[str], expected: str, vouched: Vouched) -> Snapshot | None:
    """The submit host's snapshot of ``path`` when every entry's lstat is as it was there,
    without reading a byte; None when anything differs (then hash it)."""
    started = time.perf_counter()
    expected = expected.strip()
    if vouched.listing.digest != expected:
        return None
    try:
        if stamps.take(path) != (vouched.stamps, len(vouched.listing.entries) + 1):
            return None
    except (OSError, InputError):
        return None
    files, size = vouched.listing.totals()
    algo, _ = parse_digest(expected, where="expected digest")
    seconds = time.perf_counter() - started
    return Snapshot(expected, algo, files, size, 0, False, vouched.listing, seconds, "stat")


def hash_tree(
    path: str | os.PathLike[str],
    *,
    algo: str = "sha256",
    use_cache: bool = True,
    progress: bool = False,
    allow_external_links: bool = False,
    exclude: frozenset[bytes] = frozenset(),
) -> Snapshot:
    """Hash a directory tree into a ``<algo>-tree-v1`` digest and its listing.

    ``exclude``: entry names left out at any depth, as if absent (``.git`` of a code tree).
    """
    new_hasher(algo)  # rejects an unknown algorithm before any I/O
    root = tree_root(path)
    settled = time.time_ns() - RACY_MARGIN_NS  # cache only files older than this
    t0 = time.perf_counter()
    cache = open_cache() if use_cache else None
    # The pre-walk gives the bar its total; without a terminal there is no bar to draw, and
    # the walk cost as much as the whole warm check (0.71 s against 0.44 s at 50,000 files)
    drawn = progress and progress_shown()
    total, nfiles = totals(root) if drawn else (0, 0)
    rooth = RootHasher(algo)
    entries: list[Entry] = []
    cache_used = cache is not None and cache.usable
    hashers = Hashers(
        algo,
        base=os.path.join(root, b""),
        sizes=Sizes(BIG, READ_BLOCK, MAP_WINDOW),
        fork_after=FORK_AFTER,
    )
    if nfiles > FORK_AFTER:
        hashers.start_pool()  # before the bar's thread exists: fork only single-threaded
    hits = 0
    try:
        with make_progress(enabled=drawn, total=total, label="hashing") as bar:
            hashers.bar = bar
            chunks = walk(
                root,
                algo=algo,
                cache=cache,
                allow_external_links=allow_external_links,
                batch_files=BATCH_FILES,
                chunk_entries=CHUNK_ENTRIES,
                exclude=exclude,
            )
            for chunk, result in hashers.in_order(chunks):
                new = chunk.finish(result)
                rooth.add_many(new)
                entries.extend(new)
                hits += chunk.hits
                bar.advance(chunk.hit_bytes)
                if cache is not None and chunk.todo:
                    chunk.remember(cache, new, root=root, algo=algo, settled_before_ns=settled)
    finally:
        hashers.close()
        if cache is not None:
            cache.close()
    listing = Listing(algo=algo, digest=rooth.hexdigest(), entries=tuple(entries))
    del entries
    nfiles, nbytes = listing.totals()
    return Snapshot(
        digest=listing.digest,
        algo=algo,
        files=nfiles,
        bytes=nbytes,
        cache_hits=hits,
        cache_used=cache_used,
        listing=listing,
        seconds=time.perf_counter() - t0,
    )


def trees_of(root: str | os.PathLike[str], digests: Mapping[str, str]) -> dict[str, str]:
    """``sha256-tree-v1`` digests of ``root`` and of each of its top-level directories,
    from file digests already known (``digests``: relative name → sha256 hex).

    A run's outputs are hashed once, file by file; their trees (what a later run
    pins when it takes ``outputs/model`` as an input) follow from those digests
    and the directory structure, without reading any file again. The result is
    exactly what ``hash_tree`` gives for the same directory. Keys: ``""`` for the
    root, ``"model/"`` for a top-level directory. Only regular files and
    directories are expected (the outputs policy removed everything else); a
    file without a known digest is an error.
    """
    empty = hash_bytes("sha256", b"")
    entries: list[Entry] = []
    for item in safeio.walk(root):
        if stat.S_ISDIR(item.st.st_mode):
            entries.append(Entry(item.rel, "d", 0, empty))
            continue
        name = item.rel.decode("utf-8", "surrogateescape")
        if not stat.S_ISREG(item.st.st_mode) or name not in digests:
            raise SnapshotError(f"{os.fsdecode(item.path)}: no known digest to build its tree from")
        entries.append(Entry(item.rel, "f", item.st.st_size, bytes.fromhex(digests[name])))
    entries.sort(key=lambda e: sort_key(e.path))
    trees = {"": root_digest("sha256", entries)}
    for top in [e for e in entries if e.type == "d" and b"/" not in e.path]:
        prefix = top.path + b"/"
        inside = [
            e._replace(path=e.path[len(prefix) :]) for e in entries if e.path.startswith(prefix)
        ]
        trees[top.path.decode("utf-8", "surrogateescape") + "/"] = root_digest("sha256", inside)
    return trees


def verify_tree(
    path: str | os.PathLike[str],
    expected: str,
    *,
    reference: Listing | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> Snapshot:
    """Hash ``path`` with the algorithm ``expected`` names; raise MismatchError if it differs.

    The error names the files that differ whenever a listing of the pinned
    state is known (passed in, or kept in the listing store by an earlier
    ``rexec snapshot hash``).
    """
    algo, _ = parse_digest(expected, where="expected digest")
    snap = hash_tree(path, algo=algo, use_cache=use_cache, progress=progress)
    if snap.digest == expected.strip():
        return snap
    reference = reference if reference is not None else load_listing(expected.strip())
    if reference is not None and reference.digest == expected.strip():
        diff = diff_listings(reference, snap.listing)
        raise MismatchError(
            f"{path}: snapshot is {snap.digest}, pinned {expected.strip()}",
            details=diff.lines(),
            hint="if the change is intended, pin the new digest; otherwise restore the data",
        )
    raise MismatchError(
        f"{path}: snapshot is {snap.digest}, pinned {expected.strip()} (the root differs)",
        hint="no listing of the pinned state is known here, so the files cannot be named; "
        "run `rexec snapshot diff PATH RUN_DIR` with the run record that pinned it",
    )


def store_listing(listing: Listing) -> str:
    """Keep a listing under the cache dir, addressed by its digest; written atomically.

    Streamed: a listing of a million files is never held as one string. A
    listing already kept is not written again: its name is its digest, and
    :func:`load_listing` checks the entries against it (and drops a damaged one).
    """
    target = _listing_path(listing.digest)
    if os.path.isfile(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)

    def write(f: BinaryIO) -> None:
        out = io.TextIOWrapper(f, encoding="utf-8")
        listing.write_json(out)
        out.flush()
        out.detach()  # the file stays open for write_atomic to close

    write_atomic(target, write, durable=False)  # a cache: rebuilt if lost
    return target


def keep_listing(listing: Listing) -> None:
    """Keep a listing if the cache dir allows (``lock`` and ``run`` pins): best effort.

    So that ``rexec snapshot diff DIR DIGEST`` can name the files that changed
    since, whichever command pinned the digest.
    """
    with contextlib.suppress(OSError):
        store_listing(listing)


def load_listing(digest: str) -> Listing | None:
    """The stored listing for ``digest``, or None if this machine never pinned it."""
    if DIGEST_RE.match(digest) is None:
        return None
    target = _listing_path(digest)
    try:
        with open(target, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        listing = Listing.from_json(data, where=target)
    except InputError:
        listing = None
    if listing is None or listing.digest != digest:
        with contextlib.suppress(OSError):
            os.unlink(target)  # damaged: the next `snapshot hash` keeps a fresh one
        return None
    return listing


def _listing_path(digest: str) -> str:
    name, hexpart = digest.split(":", 1)
    return os.path.join(cache_dir(), "listings", name, f"{hexpart}.json")

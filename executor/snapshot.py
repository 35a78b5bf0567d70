"""Snapshots: pin a data directory by one content digest, and verify it later.

``hash_tree`` walks a directory once, depth first in digest order, and streams
every entry through a small pipeline: the walk (main thread) reads ``lstat``
and the verification cache, batches of files are hashed on worker threads
(hashlib and blake3 release the GIL while hashing), and the results come back
in order into the root hash and the listing. Memory stays bounded: files are
read in 1 MiB blocks, only a few batches are in flight, and the cache is read
one directory at a time. SHA-256 of a file stays plain SHA-256 (the value
``sha256sum`` prints); BLAKE3 hashes a large file on all cores, which its tree
structure allows without changing the digest.

The digest format is defined in :mod:`executor.snapshot_listing` and
``docs/snapshots.md``.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from executor.errors import MismatchError, SnapshotError
from executor.progress import Progress, make_progress
from executor.snapshot_cache import RACY_MARGIN_NS, StatCache, StatKey, cache_dir, open_cache
from executor.snapshot_listing import (
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
)

__all__ = [
    "DIGEST_RE",
    "Listing",
    "ListingDiff",
    "Snapshot",
    "diff_listings",
    "hash_tree",
    "load_listing",
    "store_listing",
    "verify_tree",
]

BLOCK = 1 << 20  # read size: streams any file in bounded memory
BIG = 64 << 20  # a file this large is hashed alone (BLAKE3: on all cores)
BATCH_FILES = 512  # files per worker task: amortises the pool's per-task cost
BATCH_BYTES = 32 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(frozen=True)
class Snapshot:
    """The result of hashing one tree."""

    digest: str
    algo: str
    files: int
    bytes: int
    cache_hits: int
    cache_used: bool
    listing: Listing
    seconds: float = 0.0


@dataclass
class _Item:
    """One walked entry; ``digest`` is None until a worker has hashed the file."""

    rel: bytes
    kind: str
    size: int
    digest: bytes | None
    abs: bytes
    key: StatKey | None = None
    dir_abs: bytes = b""
    name: bytes = b""
    hit: bool = False


def hash_tree(
    path: Path,
    *,
    algo: str = "sha256",
    use_cache: bool = True,
    progress: bool = False,
    allow_external_links: bool = False,
) -> Snapshot:
    """Hash a directory tree into a ``<algo>-tree-v1`` digest and its listing."""
    new_hasher(algo)  # rejects an unknown algorithm before any I/O
    root = _root(path)
    started = time.time_ns()
    t0 = time.perf_counter()
    cache = open_cache() if use_cache else None
    total = _total_bytes(root) if progress else 0
    entries: list[Entry] = []
    rooth = RootHasher(algo)
    hits = 0
    cache_used = cache is not None and cache.usable
    try:
        with make_progress(enabled=progress, total=total, label="hashing") as bar:
            walk = _walk(root, algo=algo, cache=cache, allow_external_links=allow_external_links)
            for item in _hash_in_order(walk, algo=algo, bar=bar):
                assert item.digest is not None
                entry = Entry(item.rel, item.kind, item.size, item.digest)
                rooth.add(entry)
                entries.append(entry)
                if item.key is None:
                    continue
                if item.hit:
                    hits += 1
                    bar.advance(item.size)
                elif cache is not None and _settled(item.key, started):
                    cache.put(
                        algo=algo,
                        dir_path=item.dir_abs,
                        name=item.name,
                        key=item.key,
                        digest=item.digest,
                    )
    finally:
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


def verify_tree(
    path: Path,
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


def store_listing(listing: Listing) -> Path:
    """Keep a listing under the cache dir, addressed by its digest; written atomically."""
    target = _listing_path(listing.digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            listing.write_json(out)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_listing(digest: str) -> Listing | None:
    """The stored listing for ``digest``, or None if this machine never pinned it."""
    if DIGEST_RE.match(digest) is None:
        return None
    target = _listing_path(digest)
    try:
        data = target.read_bytes()
    except OSError:
        return None
    listing = Listing.from_json(data, where=str(target))
    return listing if listing.digest == digest else None


def _listing_path(digest: str) -> Path:
    name, hexpart = digest.split(":", 1)
    return cache_dir() / "listings" / name / f"{hexpart}.json"


# --- walking -----------------------------------------------------------------


def _root(path: Path) -> bytes:
    """The real path of the snapshot root, which must be a directory."""
    raw = os.fsencode(path)
    try:
        st = os.stat(raw)
    except FileNotFoundError:
        raise SnapshotError(
            f"{path}: no such directory", hint="name the data directory to snapshot"
        ) from None
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SnapshotError(
            f"{path}: not a directory",
            hint="a snapshot is a directory; put a single file in a directory of its own",
        )
    return os.path.realpath(raw)


def _walk(
    root: bytes, *, algo: str, cache: StatCache | None, allow_external_links: bool
) -> Iterator[_Item]:
    """Every entry below ``root`` in digest order (depth first, names sorted bytewise)."""
    empty = hash_bytes(algo, b"")
    stack: list[tuple[bytes, bytes, bytes, dict[bytes, tuple[StatKey, bytes]]]] = []
    _push_children(stack, root, b"", algo=algo, cache=cache)
    while stack:
        dir_abs, rel, name, cached = stack.pop()
        abs_path = dir_abs + b"/" + name
        try:
            st = os.lstat(abs_path)
        except FileNotFoundError:
            raise _changed(abs_path) from None
        except OSError as exc:
            raise _unreadable(abs_path, exc) from None
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            yield _Item(rel, "d", 0, empty, abs_path)
            _push_children(stack, abs_path, rel, algo=algo, cache=cache)
        elif stat.S_ISREG(mode):
            key = StatKey.of(st)
            hit = cached.get(name)
            if hit is not None and hit[0] == key:
                yield _Item(rel, "f", st.st_size, hit[1], abs_path, key, hit=True)
            else:
                yield _Item(rel, "f", st.st_size, None, abs_path, key, dir_abs, name)
        elif stat.S_ISLNK(mode):
            target = os.readlink(abs_path)
            if not allow_external_links:
                _check_link(root, abs_path, target)
            yield _Item(rel, "l", len(target), hash_bytes(algo, target), abs_path)
        else:
            raise SnapshotError(
                f"{os.fsdecode(abs_path)}: is a {_special_kind(mode)}, "
                "which a snapshot cannot hold",
                hint="remove it from the data directory (or snapshot a directory without it)",
            )


def _push_children(
    stack: list[tuple[bytes, bytes, bytes, dict[bytes, tuple[StatKey, bytes]]]],
    dir_abs: bytes,
    rel: bytes,
    *,
    algo: str,
    cache: StatCache | None,
) -> None:
    try:
        names = sorted(os.listdir(dir_abs))
    except OSError as exc:
        raise _unreadable(dir_abs, exc) from None
    cached = cache.directory(algo=algo, dir_path=dir_abs) if cache is not None else {}
    prefix = rel + b"/" if rel else b""
    stack.extend((dir_abs, prefix + n, n, cached) for n in reversed(names))


def _check_link(root: bytes, link: bytes, target: bytes) -> None:
    """A link must resolve inside the snapshot, or a mount elsewhere would break it."""
    resolved = os.path.realpath(os.path.join(os.path.dirname(link), target))
    inside = not target.startswith(b"/") and (resolved == root or resolved.startswith(root + b"/"))
    if not inside:
        raise SnapshotError(
            f"{os.fsdecode(link)}: symlink points outside the snapshot (-> {os.fsdecode(target)})",
            hint="copy the target into the snapshot, make the link relative and inside it, "
            "or pass --allow-external-links to record the link text as it is",
        )


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "special file"


def _total_bytes(root: bytes) -> int:
    """A quick pre-walk so the progress bar has a total and an honest ETA."""
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _settled(key: StatKey, started_ns: int) -> bool:
    """Only cache files last touched well before this scan began (see RACY_MARGIN_NS)."""
    return max(key.mtime_ns, key.ctime_ns) < started_ns - RACY_MARGIN_NS


# --- hashing -----------------------------------------------------------------


def _hash_in_order(items: Iterator[_Item], *, algo: str, bar: Progress) -> Iterator[_Item]:
    """Hash files in batches on worker threads; give items back in walk order."""
    workers = max(2, os.cpu_count() or 1)
    pending: deque[Future[list[_Item]]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="rexec-hash") as pool:
        try:
            for batch in _batches(items):
                pending.append(pool.submit(_hash_batch, batch, algo, bar))
                while len(pending) > 2 * workers:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def _batches(items: Iterator[_Item]) -> Iterator[list[_Item]]:
    batch: list[_Item] = []
    nbytes = 0
    for item in items:
        if item.digest is None and item.size >= BIG:
            if batch:
                yield batch
            yield [item]
            batch, nbytes = [], 0
            continue
        batch.append(item)
        if item.digest is None:
            nbytes += item.size
        if len(batch) >= BATCH_FILES or nbytes >= BATCH_BYTES:
            yield batch
            batch, nbytes = [], 0
    if batch:
        yield batch


def _hash_batch(batch: list[_Item], algo: str, bar: Progress) -> list[_Item]:
    for item in batch:
        if item.digest is None:
            assert item.key is not None
            item.digest = _hash_file(item.abs, algo=algo, key=item.key, bar=bar)
    return batch


def _hash_file(path: bytes, *, algo: str, key: StatKey, bar: Progress) -> bytes:
    """Stream one file through the hash, checking it did not change underneath us."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise _changed(path) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    try:
        if StatKey.of(os.fstat(fd)) != key:
            raise _changed(path)
        h = new_hasher(algo, threads=key.size >= BIG)
        if key.size < BLOCK:
            data = os.read(fd, BLOCK)
            h.update(data)
            tail = os.read(fd, BLOCK) if len(data) == key.size else b"?"
            if tail:
                raise _changed(path)
        else:
            buf = bytearray(BLOCK)
            view = memoryview(buf)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
                    bar.advance(n)
        if StatKey.of(os.fstat(fd)) != key:
            raise _changed(path)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    finally:
        os.close(fd)
    if key.size < BLOCK:
        bar.advance(key.size)
    digest: bytes = h.digest()
    return digest


def _changed(path: bytes) -> SnapshotError:
    return SnapshotError(
        f"{os.fsdecode(path)}: changed while it was being hashed",
        hint="stop whatever writes to the data directory, then hash it again",
    )


def _unreadable(path: bytes, exc: OSError) -> SnapshotError:
    return SnapshotError(
        f"{os.fsdecode(path)}: cannot read ({exc.strerror or exc})",
        hint="make the file readable by this user (chmod/chown), or remove it from the snapshot",
    )


ALGORITHMS = tuple(ALGOS)

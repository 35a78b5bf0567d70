"""The snapshot's tree walk: every entry below the root in digest order, cut into chunks.

A module of its own because it is the one part of hashing that must stay in
the parent process and single-threaded: it decides the order the digest is
defined by, applies the snapshot's rules (no special files, links stay inside
unless allowed), and consults the verification cache. The hashing machinery in
:mod:`executor.snapshot.hashing` only ever sees the files it leaves to hash.

Each directory is read with ``scandir``, whose entry types come with the
names, so without the cache there is no ``lstat`` per file (the hashing
worker's ``fstat`` gives the size). With the cache the walk does ``lstat``
each file, to compare with the cached stat key. At a million files the
parent's per-entry Python work limits the whole snapshot, so a chunk keeps
lists of fields rather than an object per entry.

The errors for a file that changed or cannot be read live here too: the walk
and the hashing workers raise the same ones.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from itertools import repeat

from executor.errors import SnapshotError
from executor.snapshot._files import (
    CHANGED_ERRNOS,
    OPEN_FLAGS,
    BatchResult,
    changed,
    os_error,
    unreadable,
)
from executor.snapshot.cache import StatCache, StatKey
from executor.snapshot.listing import Entry, hash_bytes, make_entries

__all__ = [
    "CHANGED_ERRNOS",
    "OPEN_FLAGS",
    "Chunk",
    "changed",
    "os_error",
    "totals",
    "tree_root",
    "unreadable",
    "walk",
]


class Chunk:
    """A run of consecutive entries in walk order, and which of them are files still to hash.

    Lists of fields rather than an object per entry: at a million files the
    parent's per-entry Python work is what limits the whole snapshot.
    """

    __slots__ = ("entries", "hit_bytes", "hits", "keys", "rels", "todo")

    def __init__(self, *, keyed: bool) -> None:
        self.entries: list[Entry | None] = []  # None: a file still to hash
        self.todo: list[int] = []  # the indices of those files
        self.rels: list[bytes] = []  # their paths relative to the root
        self.keys: list[StatKey] | None = [] if keyed else None  # their walk-time lstat
        self.hits = 0
        self.hit_bytes = 0

    def finish(self, result: BatchResult | None) -> list[Entry]:
        """The chunk's listing entries, in order, with the hashed files filled in."""
        if result is None:
            return self.entries  # type: ignore[return-value]  # nothing was left to hash
        sizes, digests = result
        if not all(type(d) is bytes for d in digests):  # large SHA-256 files on helper threads
            digests = [d if isinstance(d, bytes) else d.result() for d in digests]
        files = make_entries(self.rels, repeat("f"), sizes, digests)
        if len(files) == len(self.entries):
            return files
        for i, entry in zip(self.todo, files, strict=True):
            self.entries[i] = entry
        return self.entries  # type: ignore[return-value]  # every None is filled now

    def remember(
        self,
        cache: StatCache,
        entries: list[Entry],
        *,
        root: bytes,
        algo: str,
        settled_before_ns: int,
    ) -> None:
        """Queue cache rows for the files hashed here that were settled before the scan.

        ``settled_before_ns`` is the scan's start less the racy margin (see
        ``RACY_MARGIN_NS`` in :mod:`executor.snapshot.cache`): a file touched
        later than that is hashed but not cached.
        """
        assert self.keys is not None
        for i, key in zip(self.todo, self.keys, strict=True):
            if max(key.mtime_ns, key.ctime_ns) < settled_before_ns:
                parent, _, name = entries[i].path.rpartition(b"/")
                dir_path = os.path.join(root, parent) if parent else root
                cache.put(
                    algo=algo, dir_path=dir_path, name=name, key=key, digest=entries[i].digest
                )


_Frame = tuple[Iterator[os.DirEntry[bytes]], bytes, bytes, dict[bytes, tuple[StatKey, bytes]]]


def walk(
    root: bytes,
    *,
    algo: str,
    cache: StatCache | None,
    allow_external_links: bool,
    batch_files: int,
    chunk_entries: int,
    exclude: frozenset[bytes] = frozenset(),
) -> Iterator[Chunk]:
    """Every entry below ``root`` in digest order (depth first, names sorted bytewise).

    A chunk is cut once it holds ``batch_files`` files to hash or
    ``chunk_entries`` entries in all. Entries named in ``exclude`` (at any
    depth) are left out, as if absent: the code pin leaves out ``.git``.
    """
    empty = hash_bytes(algo, b"")
    keyed = cache is not None
    chunk = Chunk(keyed=keyed)
    out, todo, rels, keys = chunk.entries, chunk.todo, chunk.rels, chunk.keys
    stack = [_open_dir(root, b"", algo=algo, cache=cache, exclude=exclude)]
    while stack:
        entries, _dir_abs, prefix, cached = stack[-1]
        for e in entries:
            if e.is_file(follow_symlinks=False):
                rel = prefix + e.name
                if keys is not None:
                    key = _lstat_key(e.path)
                    hit = cached.get(e.name)
                    if hit is not None and hit[0] == key:
                        out.append(Entry(rel, "f", key.size, hit[1]))
                        chunk.hits += 1
                        chunk.hit_bytes += key.size
                    else:
                        keys.append(key)
                        todo.append(len(out))
                        out.append(None)
                        rels.append(rel)
                else:
                    todo.append(len(out))
                    out.append(None)
                    rels.append(rel)
            elif e.is_dir(follow_symlinks=False):
                out.append(Entry(prefix + e.name, "d", 0, empty))
                stack.append(
                    _open_dir(
                        e.path, prefix + e.name + b"/", algo=algo, cache=cache, exclude=exclude
                    )
                )
                break
            elif e.is_symlink():
                target = _readlink(e.path)
                if not allow_external_links:
                    _check_link(root, e.path, target)
                out.append(Entry(prefix + e.name, "l", len(target), hash_bytes(algo, target)))
            else:
                raise _special(e.path)
            if len(rels) >= batch_files or len(out) >= chunk_entries:
                yield chunk
                chunk = Chunk(keyed=keyed)
                out, todo, rels, keys = chunk.entries, chunk.todo, chunk.rels, chunk.keys
        else:
            stack.pop()
    if out:
        yield chunk


def _open_dir(
    dir_abs: bytes,
    prefix: bytes,
    *,
    algo: str,
    cache: StatCache | None,
    exclude: frozenset[bytes] = frozenset(),
) -> _Frame:
    """One directory's entries sorted bytewise by name, with its cached rows."""
    try:
        with os.scandir(dir_abs) as it:
            entries = sorted(it, key=_name)
        if exclude:
            entries = [e for e in entries if e.name not in exclude]
    except FileNotFoundError:
        raise changed(dir_abs) from None
    except OSError as exc:
        raise unreadable(dir_abs, exc) from None
    cached = cache.directory(algo=algo, dir_path=dir_abs) if cache is not None else {}
    return iter(entries), dir_abs, prefix, cached


def _name(e: os.DirEntry[bytes]) -> bytes:
    return e.name


def _lstat_key(path: bytes) -> StatKey:
    try:
        return StatKey.of(os.lstat(path))
    except FileNotFoundError:
        raise changed(path) from None
    except OSError as exc:
        raise unreadable(path, exc) from None


def _readlink(path: bytes) -> bytes:
    try:
        return os.readlink(path)
    except OSError as exc:
        if exc.errno in CHANGED_ERRNOS or exc.errno == errno.EINVAL:
            raise changed(path) from None
        raise unreadable(path, exc) from None


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


def _special(path: bytes) -> SnapshotError:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return changed(path)
    except OSError as exc:
        return unreadable(path, exc)
    if stat.S_ISFIFO(mode):
        kind = "FIFO"
    elif stat.S_ISSOCK(mode):
        kind = "socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "device file"
    elif stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return changed(path)  # its type changed between readdir and lstat
    else:
        kind = "special file"
    return SnapshotError(
        f"{os.fsdecode(path)}: is a {kind}, which a snapshot cannot hold",
        hint="remove it from the data directory (or snapshot a directory without it)",
    )


def totals(root: bytes) -> tuple[int, int]:
    """(bytes, files): a quick pre-walk so the progress bar has a total and an honest ETA."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
                files += 1
    return total, files


def tree_root(path: str | os.PathLike[str]) -> bytes:
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

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
from executor.snapshot.listing import Entry, hash_bytes, make_entries
from executor.snapshot.statcache import CachedRow, StatCache, StatKey

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
        ``RACY_MARGIN_NS`` in :mod:`executor.snapshot.statcache`): a file touched
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


# One directory in the walk: its entries as (name, kind, stat key or None) in
# name order, its absolute path, its prefix in the listing, its cached rows.
_Listed = tuple[bytes, str, tuple[int, ...] | None]
_Frame = tuple[Iterator[_Listed], bytes, bytes, dict[bytes, CachedRow]]


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
        entries, dir_abs, prefix, cached = stack[-1]
        for name, kind, key in entries:
            if kind == "f":
                rel = prefix + name
                if keys is not None:
                    hit = cached.get(name)
                    if hit is not None and hit[1:6] == key:
                        out.append(Entry(rel, "f", hit[3], hit[6]))
                        chunk.hits += 1
                        chunk.hit_bytes += hit[3]
                        continue  # a hit never fills a chunk's files to hash
                    keys.append(StatKey._make(key))  # type: ignore[arg-type]  # keyed: a tuple
                todo.append(len(out))
                out.append(None)
                rels.append(rel)
            elif kind == "d":
                out.append(Entry(prefix + name, "d", 0, empty))
                stack.append(
                    _open_dir(
                        os.path.join(dir_abs, name),
                        prefix + name + b"/",
                        algo=algo,
                        cache=cache,
                        exclude=exclude,
                    )
                )
                break
            elif kind == "l":
                path = os.path.join(dir_abs, name)
                target = _readlink(path)
                if not allow_external_links:
                    _check_link(root, path, target)
                out.append(Entry(prefix + name, "l", len(target), hash_bytes(algo, target)))
            else:
                raise _special(os.path.join(dir_abs, name))
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
    """One directory's entries sorted bytewise by name, with its cached rows.

    Without the cache, ``scandir``'s entry types are enough (no ``lstat`` per
    file). With it, every entry is ``lstat``-ed anyway, relative to the
    directory's descriptor (one path component to resolve, not the whole path,
    and the directory cannot be swapped for a link meanwhile), and its mode
    gives the type.
    """
    try:
        if cache is None:
            listed = _scan(dir_abs, exclude)
            rows: dict[bytes, CachedRow] = {}
        else:
            listed = _scan_keyed(dir_abs, exclude)
            rows = cache.directory(algo=algo, dir_path=dir_abs)
    except SnapshotError:
        raise
    except OSError as exc:
        raise os_error(dir_abs, exc) from None  # gone, or swapped for a link: changed
    return iter(listed), dir_abs, prefix, rows


def _scan(dir_abs: bytes, exclude: frozenset[bytes]) -> list[_Listed]:
    with os.scandir(dir_abs) as it:
        entries = sorted(it, key=_name)
    return [(e.name, _kind(e), None) for e in entries if e.name not in exclude]


def _kind(e: os.DirEntry[bytes]) -> str:
    if e.is_file(follow_symlinks=False):
        return "f"
    if e.is_dir(follow_symlinks=False):
        return "d"
    return "l" if e.is_symlink() else "?"


_KINDS = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l"}


def _scan_keyed(dir_abs: bytes, exclude: frozenset[bytes]) -> list[_Listed]:
    fd = os.open(dir_abs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        names = sorted(os.listdir(dir_abs))  # by path: bytes names (listdir(fd) gives str)
        if exclude:
            names = [n for n in names if n not in exclude]
        lstat, kinds, fmt = os.stat, _KINDS, stat.S_IFMT  # os.stat(follow_symlinks=False)
        out: list[_Listed] = []
        for n in names:
            try:
                st = lstat(n, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise os_error(os.path.join(dir_abs, n), exc) from None
            kind = kinds.get(fmt(st.st_mode), "?")
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            out.append((n, kind, key if kind == "f" else None))
        return out
    finally:
        os.close(fd)


def _name(e: os.DirEntry[bytes]) -> bytes:
    return e.name


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

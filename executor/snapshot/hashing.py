"""Hashing the files the walk left to hash: per-file reads, a process pool, large files.

A module of its own because this is where the time of a cold snapshot goes,
and each choice here is a measured trade-off (docs/performance.md) that the
walk and the public API need not know about:

* for small files the cost is Python and system calls per file, which holds
  the GIL, so threads cannot spread it over cores (a second thread made it
  slower). A small tree is hashed in this process; once a tree has shown
  ``fork_after`` files to hash, batches go to a fork-based process pool, one
  worker per core. Each file costs ``open``, one ``read`` into a reused buffer,
  ``fstat`` and ``close``;
* a file of a buffer or more is read with an ``fstat`` before and after (it
  must not change underneath us). One of ``sizes.big`` bytes or more, hashed
  in this process, goes to a helper: SHA-256 (sequential by definition, the
  value ``sha256sum`` prints) to a thread that reads it ahead
  (:mod:`executor.snapshot.readahead`), so several large files use several
  cores; BLAKE3 to a helper process that maps it and hashes it on all cores,
  which its tree structure allows without changing the digest
  (:mod:`executor.snapshot.mapped`). A pool worker reads a large file ahead
  and hashes it on its own core;
* results come back in walk order, a few chunks in flight.

The thresholds (:class:`Sizes` and ``fork_after``) arrive as arguments from
:mod:`executor.snapshot`, which owns their values: one place to turn them, and
the workers get them with each batch. A NamedTuple rather than a frozen
dataclass, whose import and creation would add milliseconds to start-up.

``concurrent.futures``, ``multiprocessing``, ``queue`` and the mapping helper
are imported only when a tree needs them: start-up time of ``rexec snapshot
hash`` counts.
"""

from __future__ import annotations

import os
import stat
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from executor.progress import NoProgress, Progress
from executor.snapshot._files import OPEN_FLAGS, BatchResult, ChunkT, changed, os_error
from executor.snapshot.listing import hasher_factory, new_hasher
from executor.snapshot.readahead import read_ahead
from executor.snapshot.statcache import StatKey

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor

    from executor.snapshot.mapped import MappedHasher

__all__ = ["BLOCK", "BatchResult", "Hashers", "Sizes"]


class Sizes(NamedTuple):
    """The large-file thresholds (owned by :mod:`executor.snapshot`), sent with each batch."""

    big: int  # a file this large goes to a helper thread (SHA-256) or process (BLAKE3)
    read_block: int  # read-ahead block
    map_window: int  # bytes the BLAKE3 helper maps at a time


BLOCK = 1 << 20  # read size: streams any file in bounded memory; smaller files take one read


_Job = Any  # a Future of a BatchResult (process pool), a BatchResult (hashed here), or None


class Hashers:
    """Where each batch is hashed: in this process, or in the process pool once the tree is large.

    The pool is forked only while this process has no other thread, so a child
    never inherits a lock some other thread held at the fork; and after the
    BLAKE3 helper is stopped, so the workers hold none of its pipes.
    """

    def __init__(self, algo: str, *, base: bytes, sizes: Sizes, fork_after: int) -> None:
        self.algo = algo
        self.base = base
        self.sizes = sizes
        self.fork_after = fork_after
        self.bar: Progress = NoProgress()
        self.workers = max(2, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._mapped: MappedHasher | None = None
        self._can_map = algo == "blake3" and sys.platform.startswith("linux")  # fork, as the pool
        self._buf = memoryview(bytearray(BLOCK))
        self._queued = 0

    def start_pool(self) -> None:
        """Fork the workers now, if this platform and moment allow it."""
        if self._pool is not None or not sys.platform.startswith("linux"):
            return
        if self._threads is not None:
            self._threads.shutdown(wait=True)  # their futures keep their results
            self._threads = None
        if self._mapped is not None:
            self._mapped.close()
            self._mapped = None
        import threading

        if threading.active_count() != 1:
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_default_signals,
        )
        pool.submit(int)  # forks every worker now, before any other thread starts
        self._pool = pool

    def in_order(self, chunks: Iterator[ChunkT]) -> Iterator[tuple[ChunkT, BatchResult | None]]:
        """Each chunk with its hashing result, in walk order; a few chunks in flight."""
        pending: deque[tuple[ChunkT, _Job, bool]] = deque()
        for chunk in chunks:
            pending.append(self._submit(chunk))
            while len(pending) > 2 * self.workers:
                yield self._collect(*pending.popleft())
        while pending:
            yield self._collect(*pending.popleft())

    def close(self) -> None:
        """Stop the pool and the mapping helper, reaping every child."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
        if self._mapped is not None:
            self._mapped.close()

    def _submit(self, chunk: ChunkT) -> tuple[ChunkT, _Job, bool]:
        if not chunk.rels:
            return chunk, None, False
        self._queued += len(chunk.rels)
        if self._pool is None and self._queued > self.fork_after:
            self.start_pool()
        if self._pool is not None:
            job = self._pool.submit(
                _hash_remote,
                self.base,
                chunk.rels,
                chunk.keys,
                self.algo,
                self.sizes,
            )
            return chunk, job, True
        result = _hash_batch(
            [self.base + r for r in chunk.rels],
            chunk.keys,
            algo=self.algo,
            buf=self._buf,
            bar=self.bar,
            sizes=self.sizes,
            offload=self._offload,
        )
        return chunk, result, False

    def _collect(self, chunk: ChunkT, job: _Job, remote: bool) -> tuple[ChunkT, BatchResult | None]:
        if not remote:
            return chunk, job
        result: BatchResult = job.result()
        self.bar.advance(sum(result[0]))
        return chunk, result

    def _offload(self, path: bytes, key: StatKey) -> Future[bytes] | bytes:
        """Hash a large file: BLAKE3 in the mapping helper process, on all cores;
        SHA-256 (or BLAKE3 where no helper can start) on a helper thread."""
        if (mapped := self._mapper()) is not None:
            return mapped.digest(path, key, self.bar)
        if self._threads is None:
            from concurrent.futures import ThreadPoolExecutor

            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="rexec-hash")
        return self._threads.submit(_hash_path, path, key, self.algo, self.bar, self.sizes)

    def _mapper(self) -> MappedHasher | None:
        """The BLAKE3 helper, started on first use; None for SHA-256, or if it cannot start."""
        if self._mapped is None and self._can_map:
            from executor.snapshot.mapped import MappedHasher

            mapped = MappedHasher(window=self.sizes.map_window, read_block=self.sizes.read_block)
            try:
                mapped.start()
            except OSError:  # fork refused (a process limit): hash on threads instead
                self._can_map = False
                return None
            self._mapped = mapped
        return self._mapped


def _hash_remote(
    base: bytes,
    rels: list[bytes],
    keys: list[StatKey] | None,
    algo: str,
    sizes: Sizes,
) -> BatchResult:
    """Process-pool entry point: one batch, with this worker's own read buffer.

    Paths travel relative and are joined here, so the parent does less per file.
    No ``offload`` here: a worker hashes a large file itself, on its own core.
    """
    paths = [base + r for r in rels]
    buf = _worker_buffer()
    return _hash_batch(
        paths,
        keys,
        algo=algo,
        buf=buf,
        bar=NoProgress(),
        sizes=sizes,
        offload=None,
    )


_WORKER_BUFFERS: list[memoryview] = []


def _worker_buffer() -> memoryview:
    if not _WORKER_BUFFERS:
        _WORKER_BUFFERS.append(memoryview(bytearray(BLOCK)))
    return _WORKER_BUFFERS[0]


def _hash_batch(
    paths: list[bytes],
    keys: list[StatKey] | None,
    *,
    algo: str,
    buf: memoryview,
    bar: Progress,
    sizes: Sizes,
    offload: Callable[[bytes, StatKey], Future[bytes] | bytes] | None,
) -> BatchResult:
    """Hash files in order; the hot loop of a cold many-files snapshot.

    A file smaller than the buffer costs ``open``, one ``read``, ``fstat`` and
    ``close``: the read returning less than asked means end of file, which the
    ``fstat`` after it confirms (size equal to what was read; with the cache,
    the whole stat key equal to the walk's ``lstat``). Larger files go to
    :func:`_hash_open`, which stats before and after.
    """
    make = hasher_factory(algo)
    lengths: list[int] = []
    digests: list[Any] = []
    bufs = [buf]
    limit = len(buf)
    os_open, readv, fstat, close = os.open, os.readv, os.fstat, os.close
    is_reg = stat.S_ISREG
    for j, path in enumerate(paths):
        key = keys[j] if keys is not None else None
        try:
            fd = os_open(path, OPEN_FLAGS)
        except OSError as exc:
            raise os_error(path, exc) from None
        try:
            n = readv(fd, bufs)
            if n < limit:
                st = fstat(fd)
                if st.st_size != n or not is_reg(st.st_mode):
                    raise changed(path)
                if key is not None and StatKey.of(st) != key:
                    raise changed(path)
                digests.append(make(buf[:n]).digest())
                lengths.append(n)
                bar.advance(n)
            else:
                size, digest = _hash_open(
                    fd,
                    path,
                    key,
                    algo=algo,
                    buf=buf,
                    bar=bar,
                    sizes=sizes,
                    offload=offload,
                )
                lengths.append(size)
                digests.append(digest)
        except OSError as exc:
            raise os_error(path, exc) from None
        finally:
            close(fd)
    return lengths, digests


def _hash_open(
    fd: int,
    path: bytes,
    key: StatKey | None,
    *,
    algo: str,
    buf: memoryview,
    bar: Progress,
    sizes: Sizes,
    offload: Callable[[bytes, StatKey], Future[bytes] | bytes] | None,
) -> tuple[int, Any]:
    """A file of a buffer or more: stat it, then stream it from the start."""
    st = os.fstat(fd)
    before = StatKey.of(st)
    if not stat.S_ISREG(st.st_mode) or (key is not None and before != key):
        raise changed(path)
    if offload is not None and before.size >= sizes.big:
        return before.size, offload(path, before)
    return before.size, _stream(fd, path, before, algo=algo, buf=buf, bar=bar, sizes=sizes)


def _hash_path(path: bytes, key: StatKey, algo: str, bar: Progress, sizes: Sizes) -> bytes:
    """Open and stream one large file (on a helper thread); it must still match ``key``."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        raise os_error(path, exc) from None
    try:
        if StatKey.of(os.fstat(fd)) != key:
            raise changed(path)
        buf = memoryview(bytearray(BLOCK))
        return _stream(fd, path, key, algo=algo, buf=buf, bar=bar, sizes=sizes)
    except OSError as exc:
        raise os_error(path, exc) from None
    finally:
        os.close(fd)


def _stream(
    fd: int,
    path: bytes,
    before: StatKey,
    *,
    algo: str,
    buf: memoryview,
    bar: Progress,
    sizes: Sizes,
) -> bytes:
    """Hash an open file from offset 0; its stat afterwards must equal ``before``."""
    h = new_hasher(algo)
    if before.size >= sizes.big:
        read_ahead(fd, path, h, start=0, size=before.size, block=sizes.read_block, bar=bar)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        total = 0
        bufs = [buf]
        while n := os.readv(fd, bufs):
            h.update(buf[:n])
            total += n
            bar.advance(n)
        if total != before.size:
            raise changed(path)
    if StatKey.of(os.fstat(fd)) != before:
        raise changed(path)
    digest: bytes = h.digest()
    return digest


def _default_signals() -> None:
    """In a pool worker, TERM and HUP kill as they do any process: rexec's handlers for
    them stop a job, and a worker has none to stop."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

"""Reading one large file a few blocks ahead of its hasher.

A helper thread ``preadv``s the next blocks while the caller hashes the
current one, so the copy out of the page cache overlaps the hashing. This is
how SHA-256 reads a large file (it beat a mapping by 20 %, docs/performance.md),
how a process-pool worker reads one, and how the BLAKE3 mapping helper
(:mod:`executor.snapshot.mapped`) goes on where mapping a file proves slow.

A file that ends before the size its stat gave is an error naming it (a
short read), never the digest of whatever was left.
"""

from __future__ import annotations

import os
from typing import Any

from executor.progress import Progress
from executor.snapshot._files import changed

AHEAD = 3  # blocks the reader may hold ahead of the hasher: memory is AHEAD blocks


def read_ahead(
    fd: int,
    path: bytes,
    hasher: Any,
    *,
    start: int,
    size: int,
    block: int,
    bar: Progress,
) -> None:
    """Feed bytes ``[start, size)`` of ``fd`` to ``hasher``, read on a helper thread.

    Any failure of the reader (an ``OSError``, a short read) is raised here,
    in the caller, after the reader thread has been joined.
    """
    import queue
    import threading

    free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[bytearray, int] | BaseException | None] = queue.SimpleQueue()

    def fill() -> None:
        offset = start
        try:
            while offset < size:
                if (buf := free.get()) is None:  # the hasher stopped
                    return
                n = os.preadv(fd, [memoryview(buf)[: min(len(buf), size - offset)]], offset)
                if n == 0:
                    full.put(changed(path))  # shorter than its stat said
                    return
                offset += n
                full.put((buf, n))
            full.put(None)
        except BaseException as exc:  # any failure reaches the hasher, which re-raises it
            full.put(exc)

    for _ in range(AHEAD):
        free.put(bytearray(block))
    reader = threading.Thread(target=fill, name="rexec-read", daemon=True)
    reader.start()
    try:
        while (item := full.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            buf, n = item
            hasher.update(memoryview(buf)[:n])
            free.put(buf)
            bar.advance(n)
    finally:
        free.put(None)
        reader.join()

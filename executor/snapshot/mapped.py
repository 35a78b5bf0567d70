"""BLAKE3 of large files, mapped and hashed on all cores in a helper process.

Mapping a file and letting BLAKE3 split the mapping over every core is how
``b3sum`` reaches its speed: no copy out of the page cache. Reading ahead
costs that copy, which on two cores is about a fifth of the time
(docs/performance.md). Two things keep the mapping out of rexec's own process:

* a mapped file truncated underneath its reader raises SIGBUS, which no
  Python code can catch. In the helper it ends the helper, and rexec reports
  the file as changed while it was being hashed, as it does for a short read;
* BLAKE3's thread pool (rayon) then starts only in the helper. A process pool
  forked later from rexec never inherits a thread pool whose threads stayed
  behind in the parent.

Where the page cache holds a file in 4 KiB pages (written in small writes,
or on a kernel without large folios for its file system), touching a mapping
costs one page fault per 64 KiB and mapping is slower than reading. The
helper counts its page faults over each window it maps, and when they come
that densely, it reads the rest of the file ahead instead. A count rather
than a timer: timed trials on a busy machine chose wrongly.

The helper is forked at the first large BLAKE3 file, while rexec is still
small (a fork copies page tables), and serves every later one until
:meth:`MappedHasher.close`. It closes every other file descriptor it
inherited, so it holds no lock or pipe of rexec's. Requests are
length-prefixed ``marshal`` frames of (path, stat key); each reply is a
record of a tag byte and 32 bytes: progress, the digest, "changed", or an
``errno``.
"""

from __future__ import annotations

import marshal
import os
import signal

from executor.errors import RexecError
from executor.progress import NoProgress, Progress
from executor.snapshot._files import OPEN_FLAGS, changed, os_error
from executor.snapshot.statcache import StatKey

# Faults per MiB above which mapping is slower than reading. A file cached in 4 KiB
# folios faults at least 16 times per MiB (one fault maps 64 KiB); in large folios,
# 0 to 6 were measured, and up to 9 over a first window, which also pays for
# starting BLAKE3's threads.
FINE_FAULTS_PER_MIB = 12
_RECORD = 33  # a tag byte and a 32-byte payload
_PROGRESS, _DIGEST, _CHANGED, _ERRNO = b"p", b"d", b"c", b"e"


class MappedHasher:
    """A helper process that hashes large files with BLAKE3, one request at a time."""

    def __init__(self, *, window: int, read_block: int) -> None:
        self.window = window  # bytes mapped at a time (a page multiple): one progress step
        self.read_block = read_block  # read-ahead block, where mapping proves slow
        self._pid = 0
        self._requests = self._replies = -1

    def digest(self, path: bytes, key: StatKey, bar: Progress) -> bytes:
        """The BLAKE3 digest of ``path``, which must still match ``key`` when opened and after."""
        if not self._pid:
            self.start()
        frame = marshal.dumps((path, tuple(key)))
        try:
            _write_all(self._requests, len(frame).to_bytes(4, "little") + frame)
        except BrokenPipeError:  # it ended while idle (killed from outside)
            raise self._ended(path) from None
        while (record := _read_exact(self._replies, _RECORD)) is not None:
            tag, payload = record[:1], record[1:]
            if tag == _PROGRESS:
                bar.advance(int.from_bytes(payload, "little"))
            elif tag == _DIGEST:
                return payload
            elif tag == _CHANGED:
                raise changed(path)
            else:
                code = int.from_bytes(payload, "little")
                raise os_error(path, OSError(code, os.strerror(code)))
        raise self._ended(path)

    def close(self) -> None:
        """Stop the helper now, even mid-file: it writes nothing but its replies."""
        if not self._pid:
            return
        os.close(self._requests)
        os.close(self._replies)
        os.kill(self._pid, signal.SIGKILL)  # our unreaped child: its pid is still ours
        os.waitpid(self._pid, 0)
        self._pid = 0

    def start(self) -> None:
        """Fork the helper; an ``OSError`` (a process limit) leaves nothing behind."""
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (requests_r, requests_w, replies_r, replies_w):
                os.close(fd)
            raise
        if pid == 0:  # the helper: never returns into rexec's code
            code = 1
            try:
                _close_fds_except({0, 1, 2, requests_r, replies_w})
                _serve(requests_r, replies_w, self.window, self.read_block)
                code = 0
            finally:
                os._exit(code)
        os.close(requests_r)
        os.close(replies_w)
        self._pid, self._requests, self._replies = pid, requests_w, replies_r

    def _ended(self, path: bytes) -> RexecError:
        """The error for a helper that ended while hashing ``path``."""
        _, status = os.waitpid(self._pid, 0)
        self._pid = 0
        os.close(self._requests)
        os.close(self._replies)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGBUS:
            return changed(path)  # the mapping outlived the file's end: it was truncated
        how = (
            f"signal {signal.Signals(os.WTERMSIG(status)).name}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        return RexecError(
            f"{os.fsdecode(path)}: the BLAKE3 hashing helper process ended ({how})",
            hint="hash again; if it recurs, try --algo sha256 and report it with -v output",
        )


class _Replies(NoProgress):
    """The helper's side of the reply pipe; also its progress bar, which rexec draws."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, tag: bytes, payload: bytes = b"") -> None:
        _write_all(self.fd, tag + payload.ljust(_RECORD - 1, b"\0"))

    def advance(self, nbytes: int) -> None:
        self.send(_PROGRESS, nbytes.to_bytes(8, "little"))


def _serve(requests: int, replies_fd: int, window: int, read_block: int) -> None:
    """The helper's loop: one request at a time until rexec closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # on Ctrl-C rexec decides, and closes us
    # rexec's own TERM/HUP handlers stop a job; in this helper they would only turn a
    # kill into an exception, so the helper dies of them as any process does.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    replies = _Replies(replies_fd)
    while (header := _read_exact(requests, 4)) is not None:
        frame = _read_exact(requests, int.from_bytes(header, "little"))
        if frame is None:
            return
        path, key = marshal.loads(frame)
        try:
            digest = _hash(path, StatKey(*key), replies, window=window, read_block=read_block)
        except OSError as exc:
            replies.send(_ERRNO, (exc.errno or 0).to_bytes(8, "little"))
        except RexecError:  # a short read, or a stat that moved
            replies.send(_CHANGED)
        else:
            replies.send(_DIGEST, digest)


def _hash(path: bytes, key: StatKey, replies: _Replies, *, window: int, read_block: int) -> bytes:
    """Map ``path`` a window at a time; read the rest ahead once faults come densely."""
    import mmap
    import resource

    import blake3

    from executor.snapshot.readahead import read_ahead

    def faults() -> int:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_minflt + usage.ru_majflt

    fd = os.open(path, OPEN_FLAGS)
    try:
        if StatKey.of(os.fstat(fd)) != key:
            raise changed(path)
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        offset = 0
        while offset < key.size:
            n = min(window, key.size - offset)
            before = faults()
            try:
                mapped = mmap.mmap(fd, n, prot=mmap.PROT_READ, offset=offset)
            except ValueError:  # mmap found the file shorter than its stat said
                raise changed(path) from None
            with mapped:
                hasher.update(mapped)
            offset += n
            replies.advance(n)
            if (faults() - before) << 20 > FINE_FAULTS_PER_MIB * n and offset < key.size:
                read_ahead(
                    fd,
                    path,
                    hasher,
                    start=offset,
                    size=key.size,
                    block=read_block,
                    bar=replies,
                )
                break
        if StatKey.of(os.fstat(fd)) != key:
            raise changed(path)
        digest: bytes = hasher.digest()
        return digest
    finally:
        os.close(fd)


def _close_fds_except(keep: set[int]) -> None:
    """Close every other descriptor. Empty ranges are skipped: ``os.closerange(0, 0)``
    asks ``close_range`` for 0 to -1, which it reads as "to the last descriptor"."""
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from a pipe, or None at its end (the other side is gone)."""
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]

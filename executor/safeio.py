"""Reading what a job or a record controls without being fooled by it.

A job leaves files in its outputs and reports directory, and anyone may edit a
record before it reaches ``verify``. Every such file is opened here: never
through a symlink (``O_NOFOLLOW``), never waiting on a FIFO (``O_NONBLOCK``,
then ``fstat`` must say regular file), never read past a size cap, and trees
are walked without recursion (a job can nest directories deeper than Python's
recursion limit) and without following links.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

from executor.errors import InputError

# How a file that someone else controls is opened.
NOFOLLOW_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# Small files rexec parses (job reports, host captures, listings, statements).
SMALL_CAP = 16 << 20
_CHUNK = 1 << 20


class UnsafeFile(InputError):
    """A file is a link, a special file, too large, or otherwise not what it must be."""


def open_regular(path: str | bytes | os.PathLike[str], *, dir_fd: int | None = None) -> int:
    """A descriptor for ``path`` if, and only if, it is a regular file (not a link to one)."""
    try:
        fd = os.open(path, NOFOLLOW_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{os.fsdecode(path)}: is a symbolic link, not a file") from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{os.fsdecode(path)}: is {kind_of(info.st_mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_capped(path: str | bytes | os.PathLike[str], *, cap: int = SMALL_CAP) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > cap:
            raise UnsafeFile(
                f"{os.fsdecode(path)}: {size} bytes, more than the {cap} bytes rexec reads",
                hint="this file is read into memory and must stay small",
            )
        chunks = []
        total = 0
        while chunk := os.read(fd, min(_CHUNK, cap + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:  # it grew since the fstat
                raise UnsafeFile(f"{os.fsdecode(path)}: grew past {cap} bytes while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_under(root: str | os.PathLike[str], relative: str) -> int:
    """A descriptor for the regular file ``root/relative``, every directory on the way
    opened without following a link (a record's ``outputs/model -> /etc`` is refused, not
    read through) and no ``..``: a name a record gives cannot leave ``root``."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise UnsafeFile(f"{relative!r}: not a path below {os.fspath(root)}")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        fd = os.open(root, flags)
    except OSError as exc:
        where = os.fspath(root)
        raise UnsafeFile(f"{where}: not a directory rexec reads ({exc.strerror})") from exc
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                raise UnsafeFile(f"{relative}: {part} is not a directory ({exc.strerror})") from exc
            os.close(fd)
            fd = next_fd
        return open_regular(parts[-1], dir_fd=fd)
    finally:
        os.close(fd)


def read_under(root: str | os.PathLike[str], relative: str, *, cap: int) -> bytes:
    """The bytes of ``root/relative`` (opened by :func:`open_under`), at most ``cap``."""
    with os.fdopen(open_under(root, relative), "rb") as f:
        if os.fstat(f.fileno()).st_size > cap:
            raise UnsafeFile(f"{relative}: more than the {cap} bytes rexec reads here")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise UnsafeFile(f"{relative}: grew past {cap} bytes while being read")
    return data


def sha256_file(path: str | bytes | os.PathLike[str], *, follow_links: bool = False) -> str:
    """SHA-256 of a regular file, streamed (as ``sha256sum``); the one file hasher.

    A link or special file is refused, unless ``follow_links`` (a file the user named,
    such as ``--artifact`` or a Dockerfile, may be a link): then its target must be a
    regular file, never a FIFO to wait on.
    """
    if follow_links:
        path = os.path.realpath(path)
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def kind_of(mode: int) -> str:
    """A file type in words, for messages and for the outputs policy."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


class Entry(NamedTuple):
    """One entry below a walked root: its path relative to the root, as bytes, and lstat."""

    rel: bytes
    path: bytes
    st: os.stat_result


def walk(root: str | os.PathLike[str]) -> Iterator[Entry]:
    """Every entry below ``root``: a directory's entries sorted, before any subdirectory's.

    Iterative, so depth is bounded by nothing but the file system; links are
    reported, never followed.
    """
    base = os.fsencode(root)
    stack: list[bytes] = [b""]
    while stack:
        rel_dir = stack.pop()
        dir_path = os.path.join(base, rel_dir) if rel_dir else base
        with os.scandir(dir_path) as it:
            names = sorted(e.name for e in it)
        subdirs = []
        for name in names:
            rel = os.path.join(rel_dir, name) if rel_dir else name
            path = os.path.join(base, rel)
            st = os.lstat(path)
            yield Entry(rel, path, st)
            # The caller may have removed a directory it was shown: then it is not entered.
            if stat.S_ISDIR(st.st_mode) and os.path.lexists(path):
                subdirs.append(rel)
        stack.extend(reversed(subdirs))


def read_small_files(
    directory: str | os.PathLike[str],
    *,
    names: re.Pattern[str],
    cap: int,
    most: int,
    expected: str,
) -> tuple[dict[str, bytes], list[str]]:
    """The small regular files at the top of a directory someone else wrote, by name;
    and a line for each thing there that was not read (a link, a FIFO, a huge file, a
    subdirectory, a name ``names`` refuses, one too many), never opened by following it
    or read without ``cap``."""
    found: dict[str, bytes] = {}
    ignored: list[str] = []
    try:
        listed = sorted(os.listdir(os.fsencode(directory)))
    except FileNotFoundError:
        return found, ignored
    for raw in listed:
        name = raw.decode("utf-8", "backslashreplace")
        if len(found) >= most or not names.match(name):
            ignored.append(f"{name!r}: not {expected}")
            continue
        try:
            found[name] = read_capped(os.path.join(os.fsencode(directory), raw), cap=cap)
        except (UnsafeFile, OSError) as exc:
            ignored.append(f"{name}: {getattr(exc, 'message', None) or exc}")
    return found, ignored


def chown_tree(path: str | os.PathLike[str], uid: int, gid: int) -> None:
    """Give a tree a job may have made to ``uid:gid``, never following a link in it."""
    os.chown(path, uid, gid)  # the top is rexec's own directory
    for entry in walk(path):
        os.lchown(entry.path, uid, gid)


def rmtree(path: str | bytes | os.PathLike[str]) -> None:
    """Remove a tree a job made, however deep, without following links; missing is fine.

    Each directory is given owner rwx before it is read: a job may leave
    directories without the bits needed to empty them.
    """
    top = os.fsencode(path)
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(top)
        return
    try:
        _rmtree(top)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        # Deeper than PATH_MAX: GNU rm walks by descriptors and never follows links.
        import subprocess  # here only: it pulls in threading, which `snapshot hash` never needs

        subprocess.run(["rm", "-rf", "--", top], check=True)


def _rmtree(top: bytes) -> None:
    stack = [top]
    emptied: list[bytes] = []
    while stack:
        directory = stack.pop()
        os.chmod(directory, 0o700)  # listed as a directory, never a link
        emptied.append(directory)
        with os.scandir(directory) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.unlink(entry.path)
    for directory in reversed(emptied):
        os.rmdir(directory)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in ``path`` durable (what ``write_atomic`` does for one file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: str | os.PathLike[str],
    content: bytes | Callable[[BinaryIO], None],
    *,
    mode: int = 0o644,
    durable: bool = True,
) -> None:
    """Write ``path`` whole or not at all: a sibling temporary file, then a rename.

    ``content`` is the bytes, or a function that writes them to the open file (a
    large listing streams). ``durable`` fsyncs before the rename (records, locks);
    caches that can be rebuilt skip it. On any failure (a full disk, a read-only
    directory) the temporary file is removed and the error raised: nothing
    half-written is ever left under ``path``. The one atomic write in rexec.
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    unique = f"{os.getpid()}.{_thread.get_ident()}.{time.monotonic_ns()}"
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{unique}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

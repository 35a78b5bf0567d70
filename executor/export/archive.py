"""Writing and unpacking an audit bundle: one tar, read back without trusting a byte of it.

Unpacking takes regular files and directories only, at relative paths with no
``..``, each created new (``O_EXCL``, no link followed) under an empty
directory, with a cap on every size; anything else in the archive (a link, a
device, an absolute name, a second copy of a name) is refused. Only then is
any of it read, and it is checked against digests the signed record gives.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from executor import safeio
from executor.errors import InputError

__all__ = ["TOTAL_CAP", "add_tree", "unpack"]

TOTAL_CAP = 256 << 30
MEMBERS_CAP = 2_000_000
# What an archive's own shape can make the file system refuse (a member under a file).
SHAPE_ERRORS = (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP)


def _walk(root: Path, skip: Callable[[Path], bool]) -> Iterator[Path]:
    """Every directory and regular file under ``root``, never following a link."""
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        path = Path(entry.path)
        if skip(path):
            continue
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            yield path
            yield from _walk(path, skip)
        elif stat.S_ISREG(mode):
            yield path
        else:
            raise InputError(
                f"{path}: a {'symbolic link' if stat.S_ISLNK(mode) else 'special file'}; "
                "an audit bundle holds regular files and directories only",
                hint="export without this input (--without-inputs), or replace the link by a file",
            )


def add_tree(
    tar: tarfile.TarFile,
    root: Path,
    arcname: str,
    *,
    skip: Callable[[Path], bool] = lambda p: False,
) -> int:
    """Add ``root``'s directories and files under ``arcname``; returns the bytes added."""
    total = 0
    tar.add(root, arcname=arcname, recursive=False)
    for path in _walk(root, skip):
        rel = path.relative_to(root).as_posix()
        info = tar.gettarinfo(str(path), arcname=f"{arcname}/{rel}")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if info.isreg():
            fd = safeio.open_regular(path)  # no link followed, never a FIFO swapped in
            with os.fdopen(fd, "rb") as handle:
                tar.addfile(info, handle)
            total += info.size
        else:
            tar.addfile(info)
    return total


def _safe(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\x00" in name:
        raise InputError(f"audit bundle: member {name!r} is not a relative path inside it")
    return path


def unpack(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into the empty (or new) ``dest``, safely (see the module doc)."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise InputError(f"{dest}: not empty", hint="unpack an audit bundle into a new directory")
    seen: set[str] = set()
    total = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for count, member in enumerate(tar):
                if count > MEMBERS_CAP:
                    raise InputError(f"{archive}: more than {MEMBERS_CAP} members")
                rel = _safe(member.name.rstrip("/"))
                key = rel.as_posix()
                if key in seen:
                    raise InputError(f"{archive}: {key} appears twice")
                seen.add(key)
                target = dest.joinpath(*rel.parts)
                if member.isdir():
                    target.mkdir(mode=0o755, parents=True, exist_ok=True)
                    continue
                if not member.isreg():
                    raise InputError(f"{archive}: {key} is not a regular file or directory")
                total += member.size
                if total > TOTAL_CAP:
                    raise InputError(f"{archive}: over {TOTAL_CAP} bytes unpacked")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out, source:
                    left = member.size
                    while left:
                        chunk = source.read(min(left, 1 << 20))
                        if not chunk:
                            raise InputError(f"{archive}: {key} is truncated")
                        out.write(chunk)
                        left -= len(chunk)
    except (tarfile.TarError, EOFError) as exc:
        raise InputError(f"{archive}: not a readable tar archive ({exc})") from exc
    except OSError as exc:
        if exc.errno not in SHAPE_ERRORS:
            raise  # the disk's, not the archive's
        name = os.fsdecode(exc.filename) if exc.filename is not None else "a member"
        raise InputError(
            f"{archive}: {name} cannot be unpacked: {exc.strerror} (a file and a directory "
            "of one name, or a member inside a file)"
        ) from exc

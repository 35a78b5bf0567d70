"""Stamps: one digest of what ``lstat`` says of every entry of a tree, so each node of a
submission can check a tree the submit host hashed without reading its bytes again.

A file written on shared storage changes its size and its ctime (which no user can set
back, and which a write or a new mtime sets too), or, replaced, its inode. GNU ``find``
walks the tree (``-P``: no link followed; ``-xdev``: only the root's file system, since
device numbers of one NFS export differ from host to host) and its output is hashed as
it streams, in the directories' own order: the node's check costs about one ``find`` of
the tree (docs/performance.md). Stamps vouch for a tree only when they cover every entry
of its listing (a file system mounted inside it would be left out). A node whose stamps
differ, for any reason (a write, another readdir order), hashes the tree again.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import NamedTuple

from executor import safeio
from executor.errors import InputError

__all__ = ["PREFIX", "Taken", "take"]

PREFIX = "stamps-v1:"
# One record per entry: type, size, ctime (ns, as seconds), inode, the path below the root.
FORMAT = r"%y %s %C@ %i %P\0"
CHUNK = 1 << 20


class Taken(NamedTuple):
    """A tree's stamps, and how many entries (the root too) they cover."""

    stamps: str
    entries: int


def take(root: str | os.PathLike[str]) -> Taken:
    """The stamps of the tree at ``root``; an InputError if it cannot be walked whole."""
    import subprocess  # here: `rexec snapshot hash` starts without them (and shutil)
    import tempfile

    path = os.path.abspath(root)  # never read as one of find's options
    top = os.lstat(path)
    if not stat.S_ISDIR(top.st_mode):
        raise InputError(f"{path}: is {safeio.kind_of(top.st_mode)}, not a directory")
    h = hashlib.sha256(b"%d\n" % top.st_ino)
    entries = 0
    with tempfile.TemporaryFile() as errors:
        try:
            find = subprocess.Popen(
                ["find", "-P", path, "-xdev", "-printf", FORMAT],
                stdout=subprocess.PIPE,
                stderr=errors,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise InputError(f"{path}: cannot walk it with find ({exc})") from exc
        assert find.stdout is not None
        with find.stdout:
            while chunk := find.stdout.read(CHUNK):
                h.update(chunk)
                entries += chunk.count(b"\0")
        if find.wait() != 0:
            errors.seek(0)
            said = errors.read(300).decode(errors="replace")
            raise InputError(f"{path}: find failed: {said}")
    return Taken(PREFIX + h.hexdigest(), entries)

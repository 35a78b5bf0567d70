"""What the walk and the hashers share: how a listed file is opened, the errors for a file
that changed or cannot be read, and the shape of a hashed batch.

Below both, so neither imports the other.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Protocol, TypeVar

from executor.errors import SnapshotError
from executor.snapshot.statcache import StatKey

# errnos that mean a path vanished or turned into something else mid-walk
CHANGED_ERRNOS = (errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENOTDIR)


# How a hasher opens a file the walk listed: a symlink or FIFO swapped in since
# is a change (ELOOP) or an error, never followed or waited on.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def os_error(path: bytes, exc: OSError) -> SnapshotError:
    """A file that vanished or became something else is a change; anything else, unreadable."""
    if exc.errno in CHANGED_ERRNOS:
        return changed(path)
    return unreadable(path, exc)


def changed(path: bytes) -> SnapshotError:
    """The error for a path that changed under the walk or a hashing worker."""
    return SnapshotError(
        f"{os.fsdecode(path)}: changed while it was being hashed",
        hint="stop whatever writes to the data directory, then hash it again",
    )


def unreadable(path: bytes, exc: OSError) -> SnapshotError:
    """The error for a path this user may not read (or that fails to read)."""
    return SnapshotError(
        f"{os.fsdecode(path)}: cannot read ({exc.strerror or exc})",
        hint="make the file readable by this user (chmod/chown), or remove it from the snapshot",
    )


# (sizes, digests) of one batch, in the order of its paths. A digest may be a
# Future while a helper thread still hashes a large SHA-256 file.
BatchResult = tuple[list[int], list[Any]]


class Batch(Protocol):
    """What the hashers need of a walk chunk: the files left to hash, and their stat keys."""

    rels: list[bytes]
    keys: list[StatKey] | None


ChunkT = TypeVar("ChunkT", bound=Batch)

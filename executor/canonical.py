"""Canonical JSON (RFC 8785) and the sha256 helpers every stage shares.

Anything rexec hashes or signs is serialised here, so the same value always
has the same bytes, whichever stage or machine wrote it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import rfc8785

CHUNK = 1 << 20  # 1 MiB: large enough to amortise syscalls, small enough to stream


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON-able value."""
    return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Plain SHA-256 of a file's bytes, streamed (same as ``sha256sum``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()

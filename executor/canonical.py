"""Canonical JSON (RFC 8785), strict JSON reading, and sha256 of bytes.

Anything rexec hashes or signs is serialised here, so the same value always
has the same bytes, whichever stage or machine wrote it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

CHUNK = 1 << 20  # 1 MiB: large enough to amortise syscalls, small enough to stream


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON-able value."""
    return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of bytes: the digest every record field and subject uses."""
    return hashlib.sha256(data).hexdigest()


class StrictJSONError(ValueError):
    """A JSON document that two parsers could read differently, or that is too deep."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise StrictJSONError(f"duplicate key {key!r}")
        found[key] = value
    return found


def _no_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not JSON")


def strict_loads(data: bytes | str) -> Any:
    """Parse signed or job-written JSON the one way every reader must agree on.

    Duplicate keys and NaN/Infinity are refused (parsers disagree on them, so a
    verifier and a consumer could see different documents), and so is nesting
    deep enough to exhaust the parser's recursion.
    """
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise StrictJSONError("nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StrictJSONError(str(exc)) from exc

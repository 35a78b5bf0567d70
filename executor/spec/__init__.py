"""Run spec v1: TOML bytes to a frozen, validated :class:`RunSpec` (the face of ``spec/``).

The only I/O here is reading the spec file. Every problem is collected and
reported at once, each naming the key path (``inputs[1].digest: …``), so a
user fixes a spec in one pass instead of one error per attempt. Unknown keys
are errors: a misspelt key silently ignored is an irreproducible run.

``model`` holds the types and value parsers, ``parse`` reads a document table by
table through ``_table``, and ``view`` is the spec as the Statement records it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from executor.canonical import sha256_hex
from executor.errors import SpecError
from executor.spec.argv import format_value, render_command, render_words
from executor.spec.model import (
    COMMIT_RE,
    ENV_NAME_RE,
    FRAMEWORKS,
    FROM_RE,
    IMAGE_DIGEST_RE,
    IMAGE_ID_RE,
    LOCK_HINT,
    MAX_CPUS,
    MAX_ID,
    MAX_MEMORY,
    MAX_PIDS,
    MAX_TIMEOUT_S,
    MIN_MEMORY,
    NAME_RE,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIX,
    RESERVED_MOUNTS,
    SECRET_NAME_RE,
    SIGNING_METHODS,
    SPEC_VERSION,
    TREE_DIGEST_RE,
    UNRESOLVED_DIGEST,
    USER_RE,
    ArchiveSpec,
    BuildSpec,
    Checkpoint,
    CodeSpec,
    Determinism,
    ImageSpec,
    InputSpec,
    ParamOverride,
    Resources,
    RunSection,
    RunSpec,
    Security,
    Signing,
    Tolerance,
    parse_duration,
    parse_override,
    parse_size,
    parse_user,
)
from executor.spec.parse import parse_document, with_purpose
from executor.spec.view import resolved_view, seed_key_of, stage_key

SPEC_CAP = 1 << 20  # a spec is a page of TOML; anything larger is not one


def read_document(path: Path) -> tuple[bytes, dict[str, Any]]:
    """A spec file's bytes and its TOML document; the one reader `run` and `lock` share.

    The user names it, so a symbolic link is followed; a FIFO, a device (or a link to
    one, ``/dev/zero``) or an oversized file is refused rather than read without end.
    """
    from executor import safeio

    try:
        data = safeio.read_capped(path.resolve(strict=True), cap=SPEC_CAP)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file", hint="check the path") from None
    except safeio.UnsafeFile as exc:
        raise SpecError(
            f"{path}: not a spec file ({exc.message})",
            hint="a spec is a TOML file; see docs/spec.md",
        ) from exc
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror}") from exc
    return data, _decode(data, path)


def _decode(data: bytes, source: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}", hint="see docs/spec.md") from exc


def engine_named(document: dict[str, Any]) -> str | None:
    """``[runtime] engine`` of a document not yet parsed (lock reads unpinned specs)."""
    table = document.get("runtime")
    engine = table.get("engine") if isinstance(table, dict) else None
    return engine if isinstance(engine, str) else None


def loads(
    data: bytes,
    *,
    source: Path,
    overrides: Sequence[tuple[str, Any]] = (),
    seed: int | None = None,
) -> RunSpec:
    """Parse spec bytes; ``source`` anchors relative paths and error messages."""

    source = source.resolve()
    doc = _decode(data, source)
    return parse_document(
        doc, source=source, source_sha256=sha256_hex(data), overrides=overrides, seed=seed
    )


def load(
    path: Path, *, overrides: Sequence[tuple[str, Any]] = (), seed: int | None = None
) -> RunSpec:
    """Read and parse a spec file (``overrides``: ``--param``; ``seed``: ``--seed``)."""
    data, _ = read_document(path)
    return loads(data, source=path, overrides=overrides, seed=seed)


__all__ = [
    "COMMIT_RE",
    "ENV_NAME_RE",
    "FRAMEWORKS",
    "FROM_RE",
    "IMAGE_DIGEST_RE",
    "IMAGE_ID_RE",
    "LOCK_HINT",
    "MAX_CPUS",
    "MAX_ID",
    "MAX_MEMORY",
    "MAX_PIDS",
    "MAX_TIMEOUT_S",
    "MIN_MEMORY",
    "NAME_RE",
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIX",
    "RESERVED_MOUNTS",
    "SECRET_NAME_RE",
    "SIGNING_METHODS",
    "SPEC_CAP",
    "SPEC_VERSION",
    "TREE_DIGEST_RE",
    "UNRESOLVED_DIGEST",
    "USER_RE",
    "ArchiveSpec",
    "BuildSpec",
    "Checkpoint",
    "CodeSpec",
    "Determinism",
    "ImageSpec",
    "InputSpec",
    "ParamOverride",
    "Resources",
    "RunSection",
    "RunSpec",
    "Security",
    "Signing",
    "Tolerance",
    "engine_named",
    "format_value",
    "load",
    "loads",
    "parse_document",
    "parse_duration",
    "parse_override",
    "parse_size",
    "parse_user",
    "read_document",
    "render_command",
    "render_words",
    "resolved_view",
    "seed_key_of",
    "stage_key",
    "with_purpose",
]

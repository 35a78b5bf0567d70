"""``rexec lock``: turn a spec that names things into one that pins them.

Users write tags (``registry/repo:tag``), data directories and code paths; a
reproducible run needs digests. Lock resolves each name once, at a moment the
user chooses, and writes the answers into a new spec:

- ``image.ref`` tag → ``repo:tag@sha256:…`` from the registry (manifest only,
  no layers pulled);
- a build argument that alone names a ``FROM`` base (``FROM ${BASE_IMAGE}``)
  → ``repo@sha256:…``, so the Dockerfile stays the user's, untouched;
- each ``[[inputs]].path`` → its ``sha256-tree-v1`` digest;
- ``[code].path`` → ``commit`` and ``tree``, which the run then checks.

After locking, moving a tag or editing data changes nothing that runs until
the user locks again. ``rexec run --allow-unpinned`` runs the same resolution
in memory and records that it did.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import tomli_w
import tomlkit
import tomlkit.exceptions

from executor import snapshot, spec
from executor.code import check_code_pins as check_code_pins  # re-exported
from executor.code import resolve_code
from executor.errors import InputError, RexecError, SpecError
from executor.images import read_from_lines
from executor.spec import IMAGE_DIGEST_RE

REMOVED = "(removed)"
HEADER = "# Written by `rexec lock` from {source}; every input is pinned. Re-lock, do not edit.\n"


class Resolver(Protocol):
    """The one engine capability lock needs: a tag's digest in its registry."""

    def registry_digest(self, ref: str) -> str:
        """The registry digest a tag points to now."""


@dataclass(frozen=True)
class Pin:
    """One thing ``rexec lock`` pinned: what it was and what it became."""

    key: str  # key path in the spec, e.g. "image.build.args.BASE_IMAGE"
    old: str | None
    new: str

    def describe(self) -> str:
        """One line for the terminal: ``kind name: before -> after``."""
        if self.new == REMOVED:
            return f"{self.key} removed: every FROM is pinned now"
        if self.old is None:
            return f"{self.key} = {self.new}"
        return f"{self.key} = {self.new} (was {self.old})"

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``lock --json`` and the record."""
        return {"key": self.key, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class Locked:
    """A locked document, the pins made, and what could not be resolved."""

    document: dict[str, Any]
    pins: tuple[Pin, ...]
    unresolved: tuple[str, ...]  # what could not be pinned (only when not strict)


def _digest_for(ref: str, resolver: Resolver) -> str:
    return resolver.registry_digest(ref)


def _strip_tag(ref: str) -> str:
    last = ref.rsplit("/", 1)[-1]
    return ref[: len(ref) - len(last)] + last.split(":", 1)[0]


# ``from = "latest:<name>:<path>"`` → (``"run:<id>:<path>"``, the tree that run signs for it)
FromPinner = Callable[[str], tuple[str, str]]


class _Locker:
    def __init__(
        self, *, base: Path, resolver: Resolver, strict: bool, pin_from: FromPinner | None
    ) -> None:
        self.base = base
        self.resolver = resolver
        self.strict = strict
        self.pin_from = pin_from
        self.pins: list[Pin] = []
        self.unresolved: list[str] = []

    def fail(self, exc: RexecError) -> None:
        if self.strict:
            raise exc
        self.unresolved.append(exc.message)

    def path(self, value: Any, key: str) -> Path:
        if not isinstance(value, str):
            raise SpecError(f"{key}: expected a path string", hint="see docs/spec.md")
        return (self.base / value).resolve()

    def image(self, image: dict[str, Any]) -> None:
        ref = image.get("ref")
        if isinstance(ref, str) and not IMAGE_DIGEST_RE.search(ref):
            try:
                digest = _digest_for(ref, self.resolver)
            except RexecError as exc:
                self.fail(exc)
            else:
                image["ref"] = f"{ref}@{digest}"
                self.pins.append(Pin("image.ref", ref, image["ref"]))
        build = image.get("build")
        if isinstance(build, dict):
            self.build(build)

    def build(self, build: dict[str, Any]) -> None:
        args = build.setdefault("args", {})
        dockerfile = self.path(build.get("dockerfile"), "image.build.dockerfile")
        lines = read_from_lines(dockerfile, args={k: str(v) for k, v in args.items()})
        for line in lines:
            if line.pinned:
                continue
            variable = line.single_variable
            if variable is None:
                self.fail(
                    InputError(
                        f"{dockerfile}:{line.line}: `{line.text}` names its base literally, "
                        "so lock cannot pin it without editing the Dockerfile",
                        hint=f"write FROM {_strip_tag(line.image)}@sha256:<digest> there, or "
                        "use `ARG BASE_IMAGE=…` / `FROM ${BASE_IMAGE}` so lock pins the argument",
                    )
                )
                continue
            try:
                digest = _digest_for(line.image, self.resolver)
            except RexecError as exc:
                self.fail(exc)
                continue
            pinned = f"{_strip_tag(line.image)}@{digest}"
            old = args.get(variable)
            args[variable] = pinned
            self.pins.append(Pin(f"image.build.args.{variable}", old or line.image, pinned))
        if not args:
            del build["args"]
        if build.get("allow_unpinned_from") and not self.unresolved:
            # Every base is pinned now: the opt-in has nothing left to allow.
            del build["allow_unpinned_from"]
            self.pins.append(Pin("image.build.allow_unpinned_from", "true", REMOVED))

    def inputs(self, inputs: list[Any]) -> None:
        for index, item in enumerate(inputs):
            if isinstance(item, dict) and isinstance(item.get("from"), str):
                self.from_input(item, f"inputs[{index}]")
            if not isinstance(item, dict) or "path" not in item:
                continue
            key = f"inputs[{index}]"
            path = self.path(item["path"], f"{key}.path")
            if not path.is_dir():
                self.fail(InputError(f"{key}.path: {path} is not a directory"))
                continue
            old = item.get("digest")
            algo = "blake3" if isinstance(old, str) and old.startswith("blake3-") else "sha256"
            hashed = snapshot.hash_tree(path, algo=algo)
            snapshot.keep_listing(hashed.listing)
            digest = hashed.digest
            item["digest"] = digest
            if old != digest:
                self.pins.append(Pin(f"{key}.digest", old, digest))

    def from_input(self, item: dict[str, Any], key: str) -> None:
        """``latest:`` becomes the run it names today, and the digest what that run signed."""
        if self.pin_from is None:
            return
        try:
            ref, digest = self.pin_from(item["from"])
        except RexecError as exc:
            self.fail(exc)
            return
        for name, value in (("from", ref), ("digest", digest)):
            if item.get(name) != value:
                self.pins.append(Pin(f"{key}.{name}", item.get(name), value))
                item[name] = value

    def code(self, code: dict[str, Any], *, allow_dirty: bool) -> None:
        path = self.path(code.get("path"), "code.path")
        resolved = resolve_code(
            path, mount=str(code.get("mount", "/code")), allow_dirty=allow_dirty
        )
        for name, value in (("commit", resolved.commit), ("tree", resolved.tree_digest)):
            if value is not None and code.get(name) != value:
                self.pins.append(Pin(f"code.{name}", code.get(name), value))
                code[name] = value


def lock_document(
    doc: dict[str, Any],
    *,
    base: Path,
    resolver: Resolver,
    strict: bool = True,
    code: bool = True,
    allow_dirty: bool = False,
    pin_from: FromPinner | None = None,
) -> Locked:
    """Pin a parsed spec document; ``base`` is the spec file's directory; ``pin_from``
    resolves ``from`` inputs (without it they are left as written)."""
    out = copy.deepcopy(doc)
    locker = _Locker(base=base, resolver=resolver, strict=strict, pin_from=pin_from)
    if isinstance(out.get("image"), dict):
        locker.image(out["image"])
    if isinstance(out.get("inputs"), list):
        locker.inputs(out["inputs"])
    if code and isinstance(out.get("code"), dict):
        locker.code(out["code"], allow_dirty=allow_dirty)
    return Locked(out, tuple(locker.pins), tuple(locker.unresolved))


_PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("image", "build", "dockerfile"),
    ("image", "build", "context"),
    ("image", "archive", "path"),
    ("code", "path"),
    ("signing", "key"),
)


def rebase_paths(doc: dict[str, Any], *, source_dir: Path, target_dir: Path) -> None:
    """Relative paths mean "from the spec's directory"; keep their meaning when
    the locked spec is written somewhere else."""

    def move(value: Any) -> Any:
        if not isinstance(value, str) or os.path.isabs(value):
            return value
        return os.path.relpath((source_dir / value).resolve(), target_dir.resolve())

    for keys in _PATH_KEYS:
        node: Any = doc
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node:
            node[keys[-1]] = move(node[keys[-1]])
    for item in doc.get("inputs") or []:
        if isinstance(item, dict) and "path" in item:
            item["path"] = move(item["path"])


def editable(data: bytes, *, fallback: dict[str, Any]) -> dict[str, Any]:
    """The spec's document in a form that keeps its comments and layout when locked.

    ``fallback`` is the same document as ``tomllib`` read it (which already
    accepted it); it is used should tomlkit disagree, and then the lock is
    still right, only without the comments.
    """
    try:
        return tomlkit.parse(data.decode("utf-8"))
    except (tomlkit.exceptions.TOMLKitError, UnicodeDecodeError):
        return fallback


def dumps(doc: dict[str, Any], *, source: str) -> str:
    """A locked spec as TOML, with a header saying what it was locked from.

    A document from :func:`editable` comes back with the user's comments and
    layout; any other is written plainly.
    """
    body = tomlkit.dumps(doc) if isinstance(doc, tomlkit.TOMLDocument) else tomli_w.dumps(doc)
    return HEADER.format(source=source) + body


def pin_at_run_time(
    path: Path,
    *,
    resolver: Resolver,
    say: Callable[[str], None],
    overrides: list[tuple[str, object]] | None = None,
    seed: int | None = None,
) -> tuple[spec.RunSpec, dict[str, object]]:
    """What ``rexec lock`` would pin, resolved in memory now (``run --allow-unpinned``,
    ``pipeline run --allow-unpinned``); the second value is what the record says of it."""
    from executor.canonical import sha256_hex

    source = path.resolve()
    document = spec.read_document(source)[1]  # not yet a valid spec: it is not pinned
    locked = lock_document(
        document, base=source.parent, resolver=resolver, strict=False, code=False
    )
    for pin in locked.pins:
        say(f"pinned at run time: {pin.describe()}")
    record: dict[str, object] = {
        "specSha256": sha256_hex(source.read_bytes()),
        "pins": [p.to_json() for p in locked.pins],
        "unresolved": list(locked.unresolved),
    }
    text = dumps(locked.document, source=str(path))
    return spec.loads(text.encode(), source=source, overrides=overrides or (), seed=seed), record

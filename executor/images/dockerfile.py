"""Read the ``FROM`` lines of a Dockerfile, as the builder will see them.

rexec must refuse a build whose base is named by a tag, and say which line to
fix; ``rexec lock`` must know which build argument feeds a ``FROM`` so it can
pin that argument instead of editing the user's Dockerfile. Both need the
``FROM`` lines with their line numbers and with global ``ARG`` values
substituted the way the builder substitutes them. This is not a full
Dockerfile parser: only what decides the base images is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from executor.errors import InputError

PINNED_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
_DIRECTIVE_RE = re.compile(r"^#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$")
_VAR_RE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:[-+])?(?P<word>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class FromLine:
    """One ``FROM`` instruction: where it is, what it names, and how it got there."""

    line: int  # 1-based line where the instruction starts
    text: str  # the instruction as written (continuations joined)
    image: str  # the base after ARG substitution
    stage: str | None  # the ``AS name`` it defines, if any
    kind: str  # "image", "stage" (an earlier stage of this file) or "scratch"
    variables: tuple[str, ...]  # build arguments the image name was built from

    @property
    def pinned(self) -> bool:
        """True when the FROM names a digest."""
        return self.kind != "image" or bool(PINNED_RE.search(self.image))

    @property
    def single_variable(self) -> str | None:
        """The argument that alone names the base (``FROM ${BASE_IMAGE}``), if any."""
        words = self.text.split()
        spec = next((w for w in words[1:] if not w.startswith("--")), "")
        match = _VAR_RE.fullmatch(spec)
        if match is None:
            return None
        return match.group("braced") or match.group("bare")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions with their starting line numbers: continuations joined,
    comments and blank lines dropped, the ``escape`` parser directive honoured."""
    escape = "\\"
    lines = text.splitlines()
    for raw in lines:
        match = _DIRECTIVE_RE.match(raw.strip())
        if match is None:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("\\", "`"):
            escape = match.group(2)
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # comments may sit inside a continued instruction too
        if not current:
            if not stripped:
                continue
            start = number
        body = raw.rstrip()
        if body.endswith(escape):
            current.append(body[: -len(escape)])
            continue
        current.append(body)
        out.append((start, " ".join(part.strip() for part in current if part.strip())))
        current = []
    if current:
        out.append((start, " ".join(part.strip() for part in current if part.strip())))
    return out


def _substitute(value: str, env: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    used: list[str] = []

    def repl(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        used.append(name)
        current = env.get(name, "")
        op = match.group("op")
        if op == ":-":
            return current or match.group("word")
        if op == ":+":
            return match.group("word") if current else ""
        return current

    return _VAR_RE.sub(repl, value), tuple(used)


def _parse_arg(rest: str) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for word in rest.split():
        name, sep, default = word.partition("=")
        pairs.append((name, default.strip("\"'") if sep else None))
    return pairs


def from_lines(text: str, *, args: Mapping[str, str], source: Path) -> tuple[FromLine, ...]:
    """Every ``FROM`` of a Dockerfile, with build ``args`` applied to global ARGs."""
    env: dict[str, str] = {}
    stages: set[str] = set()
    result: list[FromLine] = []
    for line, instruction in _logical_lines(text):
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not result:
            # Only ARGs before the first FROM are visible to FROM lines.
            for name, default in _parse_arg(rest):
                if name in args:
                    env[name] = args[name]
                elif default is not None:
                    env[name] = _substitute(default, env)[0]
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                raise InputError(
                    f"{source}:{line}: FROM names no image",
                    hint="write FROM <image>@sha256:<digest> [AS <name>]",
                )
            image, variables = _substitute(words[0], env)
            stage = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            if image.lower() == "scratch":
                kind = "scratch"
            elif image.lower() in stages:
                kind = "stage"
            else:
                kind = "image"
            result.append(FromLine(line, instruction, image, stage, kind, variables))
            if stage:
                stages.add(stage.lower())
    if not result:
        raise InputError(
            f"{source}: no FROM instruction",
            hint="a Dockerfile must start its first stage with FROM <image>@sha256:<digest>",
        )
    return tuple(result)


def read_from_lines(dockerfile: Path, *, args: Mapping[str, str]) -> tuple[FromLine, ...]:
    """Every FROM of a Dockerfile with build arguments substituted, for pinning and checking."""
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{dockerfile}: cannot read the Dockerfile: {exc}") from exc
    return from_lines(text, args=args, source=dockerfile)


def unpinned_error(dockerfile: Path, lines: list[FromLine]) -> InputError:
    """The error for bases named by a tag: each file:line, and how to pin it."""
    details = [f"{dockerfile}:{f.line}: {f.text}  (resolves to {f.image!r})" for f in lines]
    variable = next((f.single_variable for f in lines if f.single_variable), None)
    how = (
        f"run `rexec lock SPEC` to pin the build argument {variable} to a registry digest, "
        if variable
        else "write the digest into the Dockerfile (FROM repo@sha256:<digest>; "
        "`docker inspect --format '{{index .RepoDigests 0}}' IMAGE` prints it), "
    )
    return InputError(
        f"{dockerfile}: {len(lines)} FROM line{'s' if len(lines) > 1 else ''} not pinned by digest",
        details=details,
        hint=how + "or accept a local base with `rexec run --allow-unpinned` "
        "(the manifest records its image id and pinned=false)",
    )

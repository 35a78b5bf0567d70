"""FROM lines as the builder sees them: line numbers, ARG substitution, stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.errors import InputError
from executor.images.dockerfile import from_lines, unpinned_error

DIGEST = "sha256:" + "ab" * 32
SRC = Path("/x/Dockerfile")


def parse(text: str, **args: str) -> list[tuple[int, str, str, bool]]:
    return [(f.line, f.image, f.kind, f.pinned) for f in from_lines(text, args=args, source=SRC)]


def test_literal_tag_is_unpinned_and_digest_is_pinned() -> None:
    text = f"# comment\n\nFROM debian:12\nRUN true\nFROM repo@{DIGEST} AS b\n"
    assert parse(text) == [
        (3, "debian:12", "image", False),
        (5, f"repo@{DIGEST}", "image", True),
    ]


def test_global_arg_default_and_build_arg_override() -> None:
    text = "ARG BASE=local/base:1\nARG OTHER\nFROM ${BASE}\n"
    assert parse(text) == [(3, "local/base:1", "image", False)]
    assert parse(text, BASE=f"reg:5000/base@{DIGEST}") == [
        (3, f"reg:5000/base@{DIGEST}", "image", True)
    ]
    line = from_lines(text, args={}, source=SRC)[0]
    assert line.single_variable == "BASE"
    assert line.variables == ("BASE",)


def test_arg_after_first_from_is_invisible_to_later_from() -> None:
    # Docker scopes an ARG after FROM to that stage; FROM sees only global ARGs.
    text = "FROM scratch\nARG LATE=x:1\nFROM ${LATE:-fallback:2}\n"
    assert parse(text, LATE="ignored:3") == [
        (1, "scratch", "scratch", True),
        (3, "fallback:2", "image", False),
    ]


def test_stage_reference_and_scratch_need_no_digest() -> None:
    text = f"FROM r@{DIGEST} AS Builder\nFROM builder\nCOPY --from=builder /a /a\nFROM scratch\n"
    assert [(k, p) for _, _, k, p in parse(text)] == [
        ("image", True),
        ("stage", True),
        ("scratch", True),
    ]


def test_continuation_lines_count_from_the_first_line() -> None:
    text = "RUN a \\\n  b\n# c\nFROM \\\n  --platform=linux/amd64 \\\n  debian:12 AS x\n"
    lines = from_lines(text, args={}, source=SRC)
    assert [(f.line, f.image, f.stage) for f in lines] == [(4, "debian:12", "x")]


def test_escape_directive_backtick() -> None:
    text = "# escape=`\nFROM `\n  debian:12\n"
    assert parse(text) == [(2, "debian:12", "image", False)]


def test_no_from_is_an_error() -> None:
    with pytest.raises(InputError, match="no FROM"):
        from_lines("RUN true\n", args={}, source=SRC)


def test_unpinned_error_names_file_line_and_how_to_pin() -> None:
    lines = list(from_lines("ARG B=x:1\nFROM ${B}\nFROM y:2\n", args={}, source=SRC))
    err = unpinned_error(SRC, [f for f in lines if not f.pinned])
    assert "2 FROM lines not pinned" in err.message
    assert err.details[0].startswith("/x/Dockerfile:2: FROM ${B}")
    assert err.details[1].startswith("/x/Dockerfile:3: FROM y:2")
    assert err.hint is not None and "rexec lock" in err.hint and "B" in err.hint
    assert "--allow-unpinned" in err.hint

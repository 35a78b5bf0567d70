"""The hint a failed run gets from the end of its stderr."""

from __future__ import annotations

import os
from pathlib import Path

from executor.runner import failure_hint

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/code/train.py", line 40, in <module>\n'
    "OSError: [Errno 30] Read-only file system: '/code/checkpoint.pt'\n"
)


def logs(tmp_path: Path, text: bytes) -> Path:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "stderr.log").write_bytes(text)
    return tmp_path


def test_a_read_only_write_names_the_path_and_says_what_to_change(tmp_path: Path) -> None:
    hint = failure_hint(logs(tmp_path, b"x" * 200_000 + TRACEBACK.encode()), outputs_mount="/out")
    assert "read-only path (/code/checkpoint.pt)" in hint
    assert "only /out (and /tmp) is writable" in hint
    assert '"{outputs}"' in hint and "scratch_workdir = true" in hint
    assert hint.endswith(f"read {tmp_path / 'logs' / 'stderr.log'}")


def test_a_shell_tool_erofs_is_recognised_too(tmp_path: Path) -> None:
    hint = failure_hint(
        logs(tmp_path, b"touch: cannot touch 'x': Read-only file system\n"), outputs_mount="/o"
    )
    assert hint.startswith("the job wrote to a read-only path:")


def test_any_other_failure_points_at_the_log(tmp_path: Path) -> None:
    run_dir = logs(tmp_path, b"ZeroDivisionError: division by zero\n")
    assert failure_hint(run_dir, outputs_mount="/o") == f"read {run_dir / 'logs' / 'stderr.log'}"


def test_what_is_quoted_from_the_job_is_printable_and_short(tmp_path: Path) -> None:
    path = "/code/" + "\x1b[31m" + "a" * 500
    text = f"OSError: [Errno 30] Read-only file system: '{path}'\n".encode()
    hint = failure_hint(logs(tmp_path, text), outputs_mount="/o")
    assert "\x1b" not in hint and "…" in hint and "a" * 200 not in hint


def test_a_log_swapped_for_a_link_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("OSError: [Errno 30] Read-only file system: '/leak'\n")
    (tmp_path / "logs").mkdir()
    os.symlink(secret, tmp_path / "logs" / "stderr.log")
    assert "/leak" not in failure_hint(tmp_path, outputs_mount="/o")

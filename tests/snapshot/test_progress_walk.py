"""The progress bar's pre-walk (its total) is made only when a bar is drawn."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor import snapshot


def test_no_terminal_no_pre_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a terminal the bar is never drawn, yet its total was walked for: the default
    `snapshot hash TREE` took 0.71-0.77 s at 50,000 files against 0.44 s with -q."""
    (tmp_path / "a.txt").write_text("a\n")

    def walked(root: bytes) -> tuple[int, int]:
        raise AssertionError("the tree was pre-walked for a bar nobody sees")

    monkeypatch.setattr("executor.snapshot.totals", walked)
    monkeypatch.setattr("executor.snapshot.progress_shown", lambda: False)
    quiet = snapshot.hash_tree(tmp_path, progress=False, use_cache=False)
    shown = snapshot.hash_tree(tmp_path, progress=True, use_cache=False)
    assert shown.digest == quiet.digest
    monkeypatch.setattr("executor.snapshot.progress_shown", lambda: True)
    with pytest.raises(AssertionError, match="pre-walked"):  # a terminal: the bar needs it
        snapshot.hash_tree(tmp_path, progress=True, use_cache=False)

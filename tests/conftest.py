"""Suite-wide test hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own rexec cache and config directory, so none reads or
    fills the user's ~/.cache, or finds (or writes) a default key in ~/.config."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REXEC_CACHE_DIR", str(cache))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return cache

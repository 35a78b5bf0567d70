"""Suite-wide test hygiene."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module- and session-scoped fixtures run before the per-test cache below exists:
    give the whole session a private cache and config too, so nothing (a run's catalog
    hook, a key lookup) ever reaches the real ~/.cache or ~/.config."""
    root = tmp_path_factory.mktemp("session-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REXEC_CACHE_DIR", str(root / "cache"))
        patch.setenv("XDG_CONFIG_HOME", str(root / "config"))
        patch.delenv("REXEC_CATALOG", raising=False)
        yield


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own rexec cache and config directory, so none reads or
    fills the user's ~/.cache, or finds (or writes) a default key in ~/.config."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REXEC_CACHE_DIR", str(cache))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return cache


def _postgres_server() -> str:
    url = os.environ.get("REXEC_TEST_POSTGRES")
    if url:
        return url
    problem = "REXEC_TEST_POSTGRES names no PostgreSQL server: scripts/test starts one"
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def postgres_catalog() -> Iterator[str]:
    """The URL of a fresh, empty database on the test PostgreSQL server (dropped after)."""
    import psycopg

    server = _postgres_server()
    name = f"rexec_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each catalog backend in turn: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "catalog.sqlite")
    return str(request.getfixturevalue("postgres_catalog"))

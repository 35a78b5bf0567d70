"""The catalog, the web view and the trust file under unfriendly input: each case a clear
error with its own exit code, never a traceback, a hang, a write where only a read was
asked, or a page another site can read."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executor import catalog, web
from executor.canonical import canonical_json
from executor.catalog.where import parse_where
from executor.errors import InputError
from tests.hostile.lab import REPO, Lab, rexec
from tests.hostile.test_record_corpus import signed_record, statement


def clean_failure(proc: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and needle in proc.stderr, proc.stderr


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


# --- the web view answers only its own names -------------------------------------------


def test_a_request_naming_another_host_is_refused(tmp_path: Path, lab: Lab) -> None:
    lab.run("train")
    client = web.create_app(catalog.default_location()).test_client()
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example"):
        assert client.get("/", headers={"Host": host}).status_code == 400, host
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host


def test_the_names_it_answers_follow_how_it_is_bound(lab: Lab) -> None:
    import argparse

    from executor.cli.ui import _hosts

    def names(host: str, *allow: str) -> list[str]:
        return _hosts(argparse.Namespace(host=host, allow_host=list(allow)))

    assert set(names("127.0.0.1")) == {"127.0.0.1", "localhost", "[::1]"}
    assert "rexec.internal" in names("127.0.0.1", "rexec.internal")
    assert "10.0.0.5" in names("10.0.0.5") and "localhost" not in names("10.0.0.5")
    import socket

    assert socket.gethostname().lower() in names("0.0.0.0")
    lab.run("train")
    client = web.create_app(catalog.default_location(), hosts=names("10.0.0.5")).test_client()
    assert client.get("/", headers={"Host": "10.0.0.5:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "localhost"}).status_code == 400


@pytest.mark.parametrize("page", ["99999999999999999999999", "0", "-1", "abc", "1e9"])
def test_an_impossible_page_number_is_a_400_not_a_500(lab: Lab, page: str) -> None:
    lab.run("train")
    client = web.create_app(catalog.default_location()).test_client()
    assert client.get(f"/?page={page}").status_code == 400


# --- --where, --catalog, query --------------------------------------------------------


@pytest.mark.parametrize(
    "condition", ["seed = 1e30", "seed = 3.5", "seed = -1", "metrics.acc > nan", "params.lr < inf"]
)
def test_a_where_value_out_of_range_is_a_clear_error(condition: str, lab: Lab) -> None:
    with pytest.raises(InputError):
        parse_where(condition)
    lab.run("train")
    clean_failure(rexec("log", "--where", condition), 2, "--where")


def test_a_device_as_the_catalog_is_refused(tmp_path: Path) -> None:
    clean_failure(rexec("log", "--catalog", "/dev/zero"), 2, "not a regular file")
    clean_failure(rexec("catalog", "index", tmp_path, "--catalog", "/dev/null"), 2, "regular file")


def test_a_catalog_path_with_a_question_mark_is_a_path(lab: Lab, tmp_path: Path) -> None:
    result = lab.run("train")
    where = tmp_path / "odd?dir" / "c.sqlite"
    assert rexec("catalog", "index", lab.runs, "--catalog", where).returncode == 0
    out = rexec("catalog", "query", "SELECT run_id FROM runs", "--catalog", where, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"run_id": result.run_id}]
    assert not (tmp_path / "odd").exists()  # not cut at the "?"


@pytest.mark.parametrize(
    "command",
    [
        ["log"],
        ["show", "x"],
        ["lineage", "x"],
        ["compare", "a", "b"],
        ["catalog", "status"],
        ["catalog", "query", "SELECT 1"],
        ["report", "x", "-o", "/dev/null"],
    ],
)
def test_a_reader_never_creates_a_catalog_or_its_directory(
    command: list[str], tmp_path: Path
) -> None:
    where = tmp_path / "nonexistent" / "dir" / "c.sqlite"
    clean_failure(rexec(*command, "--catalog", where), 2, "no catalog here yet")
    assert not (tmp_path / "nonexistent").exists()


def test_indexing_onto_a_full_disk_is_a_clear_error(lab: Lab, tmp_path: Path) -> None:
    for seed in range(3):
        lab.run("train", seed=seed)

    def small_files() -> None:  # writes past 64 KiB fail as on a full disk (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    where = tmp_path / "full" / "c.sqlite"
    proc = rexec("catalog", "index", lab.runs, "--catalog", where, preexec_fn=small_files)
    clean_failure(proc, 6, "the catalog database failed")
    assert "free space" in proc.stderr


RECURSIVE = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"


def test_a_never_ending_query_stops_at_its_time_limit(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executor.catalog import sqlite as backend

    lab.run("train")
    monkeypatch.setattr(backend, "QUERY_TIMEOUT_S", 0.5)
    cat = catalog.open_catalog()
    started = time.monotonic()
    try:
        with pytest.raises(InputError, match="stopped after"):
            cat.read_only_query(RECURSIVE)
    finally:
        cat.close()
    assert time.monotonic() - started < 10


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has installed a handler for ``signum`` (/proc SigCgt)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_never_ending_query_stops_on_a_signal(
    lab: Lab, signum: int, backend: str, request: pytest.FixtureRequest
) -> None:
    where = catalog.default_location()
    if backend == "postgresql":
        where = str(request.getfixturevalue("postgres_catalog"))
        catalog.open_catalog(where).close()
    lab.run("train")
    proc = subprocess.Popen(
        [sys.executable, "-m", "executor", "catalog", "query", RECURSIVE, "--catalog", where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 60
    # rexec is up and handles signals (Python catches SIGINT from its start, SIGTERM only
    # once rexec installs its handlers); a loaded CI host may take seconds to get there
    while not _catches(proc.pid, signal.SIGTERM):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(1.0)  # inside the query
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 128 + signum and "Traceback" not in stderr
    assert f"interrupted ({signal.Signals(signum).name})" in stderr


def test_a_schema_3_catalog_is_rekeyed_by_statement_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, statement_sha256 TEXT NOT NULL, name TEXT,
          kind TEXT, status TEXT, exit_code INTEGER, started TEXT, finished TEXT, seed BIGINT,
          image TEXT, code_commit TEXT, code_tree TEXT, invoker TEXT, engine TEXT,
          signed INTEGER, verification TEXT, replay_of TEXT, derived_from TEXT,
          path TEXT NOT NULL, partial TEXT, signer_kind TEXT, signer TEXT, stage_key TEXT,
          purpose TEXT, verdict TEXT);
        CREATE INDEX runs_by_started ON runs (started);
        CREATE TABLE inputs (run_id TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL,
          role TEXT NOT NULL, from_run TEXT, PRIMARY KEY (run_id, name));
        CREATE TABLE outputs (run_id TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL,
          role TEXT NOT NULL, PRIMARY KEY (run_id, name));
        CREATE TABLE supersedes (run_id TEXT NOT NULL, old_run TEXT NOT NULL,
          regeneration TEXT, PRIMARY KEY (run_id, old_run));
        INSERT INTO runs (run_id, statement_sha256, path) VALUES ('old', 'aa', '/r/old');
        INSERT INTO runs (run_id, statement_sha256, path) VALUES ('new', 'bb', '/r/new');
        INSERT INTO inputs VALUES ('new', 'data', 'd:1', 'input', 'old');
        INSERT INTO outputs VALUES ('old', 'out', 'd:1', 'tree');
        INSERT INTO supersedes VALUES ('new', 'old', 'regen-1');
        PRAGMA user_version = 3;
        """
    )
    db.close()
    cat = catalog.open_catalog(path)
    try:
        assert cat.backend.version() == catalog.SCHEMA_VERSION
        assert cat.rows("SELECT statement_sha256, name FROM inputs") == [
            {"statement_sha256": "bb", "name": "data"}
        ]
        assert cat.rows("SELECT statement_sha256, old_statement FROM supersedes") == [
            {"statement_sha256": "bb", "old_statement": "aa"}
        ]
        assert cat.walk(["d:1"], direction="upstream") == ["aa"]
    finally:
        cat.close()


# --- replay of what another tool signed -----------------------------------------------


def test_replaying_a_signed_statement_without_resources_is_a_clear_error(
    tmp_path: Path, lab: Lab
) -> None:
    doc = statement()
    doc["predicate"]["buildDefinition"]["externalParameters"] = {  # type: ignore[index]
        "spec": {"name": "x", "version": 1, "inputs": []}
    }
    doc["predicate"]["buildDefinition"]["resolvedDependencies"] = []  # type: ignore[index]
    record = signed_record(tmp_path / "rec", lab.key, canonical_json(doc))
    proc = rexec("replay", record, "--key", lab.pub, "--sign", "none", "--runs-dir", tmp_path / "r")
    clean_failure(proc, 2, "cannot be run again")


# --- the trust file -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not toml [", "not a readable TOML trust file"),
        ("[signer]\nkey = 'x'\n", "one or more [[signer]] tables"),
        ("[[signer]]\nidentity = 'a@b'\n", "signer[0]"),
        ("[[signer]]\nkey = 'missing.pub'\n", "signer[0]"),
        ("[[signer]]\nkey = 'k.pub'\ncolour = 'red'\n", "unknown key(s) colour"),
    ],
)
def test_a_broken_trust_file_names_the_file_and_the_entry(
    tmp_path: Path, lab: Lab, text: str, needle: str
) -> None:
    trust = tmp_path / "trust.toml"
    trust.write_text(text)
    (tmp_path / "k.pub").write_bytes(lab.pub.read_bytes())
    run = lab.run("train").run_dir
    proc = rexec("verify", run, "--trust-policy", trust)
    clean_failure(proc, 2, needle)
    assert str(trust) in proc.stderr


def test_a_trust_file_lists_several_signers(tmp_path: Path, lab: Lab) -> None:
    run = lab.run("train", key=lab.evil_key).run_dir
    trust = tmp_path / "trust.toml"
    trust.write_text(f'[[signer]]\nkey = "{lab.pub.name}"\n[[signer]]\nkey = "{lab.evil_pub}"\n')
    assert rexec("verify", run, "--trust-policy", trust).returncode == 0
    trust.write_text(f'[[signer]]\nkey = "{lab.pub.name}"\n')
    out = rexec("verify", run, "--trust-policy", trust)
    clean_failure(out, 3, "signed by none of the 1 signer(s)")


def test_rerun_without_any_trust_policy_refuses_before_anything_runs(
    tmp_path: Path, lab: Lab
) -> None:
    run = lab.run("train").run_dir
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    (fixed / "raw.txt").write_text("c\n")
    proc = rexec("rerun", run, "--input", f"data={fixed}", "--runs-dir", tmp_path / "r")
    clean_failure(proc, 2, "no trust policy")
    assert not (tmp_path / "r").exists()


def test_the_config_trust_file_is_the_default_policy_for_other_runs_records(
    tmp_path: Path, lab: Lab
) -> None:
    up = lab.run("prepare", writes={"dataset/rows.txt": b"rows"})
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "rexec"
    config.mkdir(parents=True)
    (config / "trust.toml").write_text(f'[[signer]]\nkey = "{lab.pub}"\n')
    from executor.cli._options import upstream_policy

    args = __import__("argparse").Namespace(
        key=None, identity=None, identity_regexp=None, issuer=None, trust_policy=None
    )
    policy = upstream_policy(args)
    assert policy is not None
    down = lab.run("train", inputs={"data": f"run:{up.run_id}:dataset"}, upstream=policy)
    assert down.status.status == "succeeded"

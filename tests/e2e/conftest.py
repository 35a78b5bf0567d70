"""Fixtures for end-to-end tests: the real `rexec` command against a real Docker engine.

`scripts/setup` starts the engine and builds the base image. Outside CI a
machine without an engine skips these tests with that reason; in CI
(`CI=true`) a missing engine is a failure, so the suite cannot go green by
silently skipping its most important tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

REPO = Path(__file__).resolve().parents[2]
LOCAL_BASE = "rexec/base:bookworm"
# Every FROM must name a digest. scripts/setup pushes the base to the local
# registry and writes its pinned reference here (the digest is machine-specific,
# so it is never committed). Reading a file at import touches no socket.
BASE_REF_FILE = REPO / "build" / "base" / "registry-ref"
BASE_IMAGE = BASE_REF_FILE.read_text().strip() if BASE_REF_FILE.is_file() else LOCAL_BASE
REGISTRY = os.environ.get("REXEC_REGISTRY_ADDR", "127.0.0.1:5000")


def _engine_problem() -> str | None:
    try:
        import docker

        client = docker.from_env()
        client.ping()
        client.images.get(LOCAL_BASE)
        if BASE_IMAGE == LOCAL_BASE:
            return f"{BASE_REF_FILE} is missing: the base is not pinned; run `bash scripts/setup`"
        client.images.get(BASE_IMAGE)
    except Exception as exc:  # any failure here means "no usable engine"
        return f"no usable Docker engine with {BASE_IMAGE} ({exc}); run `bash scripts/setup`"
    return None


def _registry_problem() -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5) as response:
            if response.status == 200:
                return None
            return f"registry at {REGISTRY} answered HTTP {response.status}"
    except OSError as exc:
        return f"no registry at {REGISTRY} ({exc}); run `bash scripts/setup`"


@pytest.fixture(scope="session")
def registry(engine: None) -> str:
    """The local registry scripts/setup starts (no auth, 127.0.0.1 only)."""
    problem = _registry_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return REGISTRY


@pytest.fixture(scope="session")
def engine() -> None:
    problem = _engine_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def spec(
    name: str,
    command: Sequence[str],
    *,
    image: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
    inputs: Sequence[Mapping[str, Any]] = (),
    **tables: Any,
) -> dict[str, Any]:
    """A run spec as a document, every e2e test's (DVC's ``tmp_dir.gen`` is the model): the
    base image and seed 1 unless the test says otherwise, every other table as given."""
    doc: dict[str, Any] = {
        "version": 1,
        "name": name,
        "image": dict(image or {"ref": BASE_IMAGE}),
        "run": {"command": list(command), "seed": 1, **(run or {})},
    }
    if inputs:
        doc["inputs"] = [dict(i) for i in inputs]
    doc.update(tables)
    return doc


# `[determinism] frameworks = []`: for a job that imports no framework rexec seeds.
NO_FRAMEWORKS: dict[str, Any] = {"frameworks": []}
# The demo image, built from the base image (its FROM pinned by a build argument).
DEMO_IMAGE = {
    "build": {
        "dockerfile": f"{REPO}/images/demo/Dockerfile",
        "context": f"{REPO}/images/demo",
        "args": {"BASE_IMAGE": BASE_IMAGE},
    }
}


def gen(path: Path, doc: Mapping[str, Any], *, extra: str = "") -> Path:
    """Write ``doc`` as TOML at ``path``; ``extra`` is raw TOML appended, for what a test
    writes by hand (a table it adds, or something no valid document holds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(doc) + textwrap.dedent(extra))
    return path


def pinned(rexec: Rexec, name: str, path: Path, mount: str) -> dict[str, str]:
    """An ``[[inputs]]`` entry for ``path``, pinned to its digest now."""
    digest = rexec("snapshot", "hash", path, "--quiet").stdout.strip()
    return {"name": name, "path": str(path), "digest": digest, "mount": mount}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Rexec:
    """Runs the real `rexec` command with an isolated cache directory."""

    env: dict[str, str]
    cwd: Path

    def argv(self, *args: str | Path) -> list[str]:
        """The command line of ``rexec ARGS``, for a test that runs it itself."""
        return [sys.executable, "-m", "executor", *map(str, args)]

    def __call__(self, *args: str | Path, check: int | None = 0) -> Result:
        proc = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check is not None and proc.returncode != check:
            raise AssertionError(
                f"rexec {' '.join(map(str, args))} exited {proc.returncode}, expected {check}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return result

    def run(
        self, spec: Path, key: Path | None, runs: Path, *more: str | Path, check: int | None = 0
    ) -> Path:
        """`rexec run SPEC --json`; returns the record directory."""
        return run_record(self, spec, key, runs, *more, check=check)


def run_record(
    call: Callable[..., Any],
    spec: Path,
    key: Path | None,
    runs: Path,
    *more: str | Path,
    check: int | None = 0,
) -> Path:
    """The one way the e2e tests run a spec: `rexec run SPEC --json` through ``call`` (a
    :class:`Rexec`, or another user's), signed with ``key`` (None: unsigned), exiting
    ``check``; returns the record's directory."""
    signing = ["--signing-key", key] if key is not None else ["--sign", "none"]
    out = call("run", spec, *signing, "--runs-dir", runs, "--json", *more, check=check)
    return Path(json.loads(out.stdout)["run_dir"])


def statement(run_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run_dir / "statement.json").read_bytes())
    return loaded


def exit_status(run_dir: Path) -> dict[str, Any]:
    """The signed `exit-status` byproduct's annotations."""
    products = statement(run_dir)["predicate"]["runDetails"]["byproducts"]
    found: dict[str, Any] = next(p["annotations"] for p in products if p["name"] == "exit-status")
    return found


def build_definition(run_dir: Path) -> dict[str, Any]:
    found: dict[str, Any] = statement(run_dir)["predicate"]["buildDefinition"]
    return found


@pytest.fixture
def rexec(tmp_path: Path) -> Rexec:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
    env["REXEC_CACHE_DIR"] = str(tmp_path / "cache")
    return Rexec(env=env, cwd=tmp_path)


@pytest.fixture
def keys(rexec: Rexec, tmp_path: Path) -> tuple[Path, Path]:
    rexec("keygen", "--out", tmp_path / "keys" / "signing")
    return tmp_path / "keys" / "signing.key", tmp_path / "keys" / "signing.pub"


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@dataclass
class Project:
    """A throwaway project: a git repo with code, one data input and a spec."""

    root: Path
    rexec: Rexec

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def write_code(self, name: str, source: str) -> None:
        (self.code / name).write_text(textwrap.dedent(source))
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", f"add {name}")

    def spec(
        self,
        command: list[str],
        *,
        extra: str = "",
        pin: str | None = None,
        image: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        run: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        **tables: Any,
    ) -> Path:
        """The project's spec: the demo image, its code, its data pinned (``pin``: another
        digest), and whatever the test adds."""
        digest = pin or self.rexec("snapshot", "hash", self.data, "--quiet").stdout.strip()
        doc = spec(
            "e2e",
            command,
            image=image or DEMO_IMAGE,
            run={"workdir": "/code", "seed": 7, "timeout": "2m", **(run or {})},
            inputs=[{"name": "data", "path": "data", "digest": digest, "mount": "/data"}],
            **{
                "code": {"path": "code"},
                "params": {"scale": 2, **(params or {})},
                "resources": {"cpus": 1, "memory": "512m", **(resources or {})},
                **tables,
            },
        )
        return gen(self.root / "spec.toml", doc, extra=extra)


@pytest.fixture
def project(tmp_path: Path, rexec: Rexec) -> Project:
    root = tmp_path / "project"
    (root / "code").mkdir(parents=True)
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "numbers.txt").write_text("1\n2\n3\n")
    (root / "data" / "sub" / "more.txt").write_text("4\n5\n")
    git(root, "init", "-q")
    (root / ".gitignore").write_text("spec.toml\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return Project(root=root, rexec=rexec)


@pytest.fixture
def job_containers_created() -> Callable[[Path], list[dict[str, object]]]:
    """Returns a function listing `create` events, since the test began, of rexec job
    containers for one spec (other tests may run jobs on the same engine meanwhile)."""
    import docker

    client = docker.from_env()
    since = int(time.time()) - 1

    def created(spec: Path) -> list[dict[str, object]]:
        return list(
            client.events(
                since=since,
                until=int(time.time()) + 1,
                decode=True,
                filters={"type": "container", "event": "create", "label": f"dev.rexec.spec={spec}"},
            )
        )

    return created


def strict_parse(statement: dict[str, Any], predicate: str) -> None:
    """Parse with the in-toto-attestation protobuf bindings, unknown fields rejected."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.test_result.v0 import test_result_pb2
    from in_toto_attestation.predicates.vsa.v1 import vsa_pb2
    from in_toto_attestation.v1 import statement_pb2

    body = {k: v for k, v in statement.items() if k != "predicate"}
    json_format.ParseDict(body, statement_pb2.Statement(), ignore_unknown_fields=False)
    message = {"test_result": test_result_pb2.TestResult, "vsa": vsa_pb2.VerificationSummary}[
        predicate
    ]
    json_format.ParseDict(statement["predicate"], message(), ignore_unknown_fields=False)

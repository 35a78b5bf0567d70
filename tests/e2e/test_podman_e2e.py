"""rexec under Podman, rootful (as root) and rootless (as an unprivileged user), end to end.

The rootless half runs the real `rexec` as a user made for it (its own home,
subordinate ids, runtime dir), in a project that user owns, so what only root
can do cannot hide a bug. A record made under Docker is replayed under Podman.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from executor.errors import ExitCode
from tests.e2e.conftest import (
    DEMO_IMAGE,
    REPO,
    Rexec,
    build_definition,
    exit_status,
    gen,
    pinned,
    run_record,
    spec,
)
from tests.e2e.test_run_e2e import PROBE

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

USER = "rexec-rootless"


def _problem() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/setup installs it)"
    return None


@pytest.fixture(scope="session")
def podman() -> None:
    problem = _problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def _ensure_user(
    name: str = USER, *, session: bool = True, first: int = 200000
) -> pwd.struct_passwd:
    """An unprivileged user with subordinate ids and (``session``) a runtime dir, as a login
    would give; without one, as a batch job on a compute node has none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
        entry = pwd.getpwnam(name)
    for table in ("/etc/subuid", "/etc/subgid"):
        lines = Path(table).read_text().splitlines() if Path(table).exists() else []
        if not any(line.startswith(f"{name}:") for line in lines):
            with open(table, "a") as f:
                f.write(f"{name}:{first}:65536\n")
    if not session:
        return entry
    run_dir = Path(f"/run/user/{entry.pw_uid}")
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chown(run_dir, entry.pw_uid, entry.pw_gid)
    run_dir.chmod(0o700)
    return entry


@dataclass
class Side:
    """Who runs rexec: root (Podman rootful) or the unprivileged user (rootless)."""

    mode: str
    root: Path  # a directory this side owns, for its project, keys, cache and runs
    user: pwd.struct_passwd | None

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
        base["REXEC_CACHE_DIR"] = str(self.root / "cache")
        if self.user is None:
            return base
        session = Path(f"/run/user/{self.user.pw_uid}")
        return {
            "PATH": base.get("PATH", "/usr/bin:/bin"),
            "HOME": self.user.pw_dir,
            "USER": self.user.pw_name,
            "LOGNAME": self.user.pw_name,
            **({"XDG_RUNTIME_DIR": str(session)} if session.is_dir() else {}),
            "REXEC_CACHE_DIR": base["REXEC_CACHE_DIR"],
            "LANG": "C.UTF-8",
        }

    def sh(
        self, *argv: str | Path, check: int | None = 0, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user.pw_name, "--"] if self.user is not None else []
        proc = subprocess.run(
            [*prefix, "env", "-i", *(f"{k}={v}" for k, v in self.env().items()), *map(str, argv)],
            capture_output=True, text=True, cwd=cwd or self.root, timeout=900,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check is not None and proc.returncode != check:
            raise AssertionError(
                f"{' '.join(map(str, argv))} exited {proc.returncode}, expected {check}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def rexec(self, *args: str | Path, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        return self.sh(sys.executable, "-m", "executor", *args, check=check)

    def git(self, path: Path, *args: str) -> None:
        self.sh("git", "-C", path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args)


@pytest.fixture(params=["rootful", "rootless"])
def side(request: pytest.FixtureRequest, podman: None, tmp_path: Path) -> Iterator[Side]:
    if request.param == "rootful":
        yield Side("rootful", tmp_path, None)
        return
    yield from _rootless(_ensure_user())


def _rootless(user: pwd.struct_passwd) -> Iterator[Side]:
    root = Path(user.pw_dir) / f"e2e-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    os.chown(root, user.pw_uid, user.pw_gid)
    yield Side("rootless", root, user)
    shutil.rmtree(root, ignore_errors=True)


def project(
    side: Side, command: list[str], *, code: dict[str, str] | None = None, extra: str = ""
) -> Path:
    """A git project the side's user owns: code, one input, a spec for Podman."""
    root = side.root / "project"
    side.sh("mkdir", "-p", root / "code", root / "data")
    side.sh("sh", "-c", f"printf '1\\n2\\n' > {root}/data/numbers.txt")
    for name, text in (code or {}).items():
        side.sh("sh", "-c", f"cat > {root / 'code' / name} <<'EOF'\n{textwrap.dedent(text)}EOF\n")
    side.git(root, "init", "-q")
    side.sh("sh", "-c", f"echo spec.toml > {root}/.gitignore")
    side.git(root, "add", "-A")
    side.git(root, "commit", "-qm", "init")
    digest = side.rexec("snapshot", "hash", root / "data", "--quiet").stdout.strip()
    doc = spec(
        "podman-e2e",
        command,
        image=DEMO_IMAGE,
        run={"workdir": "/code", "seed": 7, "timeout": "2m"},
        inputs=[{"name": "data", "path": "data", "digest": digest, "mount": "/data"}],
        code={"path": "code"},
        params={"scale": 2},
        resources={"cpus": 1, "memory": "512m"},
        runtime={"engine": "podman"},
    )
    text = tomli_w.dumps(doc) + textwrap.dedent(extra)
    side.sh("sh", "-c", f"cat > {root}/spec.toml <<'EOF'\n{text}EOF\n")
    return root / "spec.toml"


def keys(side: Side) -> tuple[Path, Path]:
    side.rexec("keygen", "--out", side.root / "keys" / "signing")
    return side.root / "keys" / "signing.key", side.root / "keys" / "signing.pub"


def engine_facts(run_dir: Path) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads((run_dir / "host.json").read_text())["engine"]
    return facts


def test_the_job_is_hardened_under_podman(side: Side) -> None:
    key, pub = keys(side)
    spec = project(side, ["python3", "/code/probe.py"], code={"probe.py": PROBE})
    run_dir = run_record(side.rexec, spec, key, side.root / "runs")
    report = json.loads((run_dir / "outputs" / "probe.json").read_text())
    expected_uid = 65534 if side.user is None else side.user.pw_uid
    assert report["uid"] == expected_uid != 0
    assert report["write"] == {
        "/probe": errno.EROFS,
        "/data/probe": errno.EROFS,
        "/code/probe": errno.EROFS,
        "/tmp/probe": "ok",
    }
    assert report["cap_eff"] == 0 and report["cap_bnd"] == 0 and report["no_new_privs"] == 1
    # Podman's own seccomp profile lets a job unshare(CLONE_NEWUSER) and hold every
    # capability in the new namespace; rexec's profile refuses it, as Docker's does.
    assert report["userns"] == errno.EPERM
    assert report["interfaces"] == ["lo"]
    facts = engine_facts(run_dir)
    assert facts["name"] == "podman" and facts["mode"] == side.mode
    assert facts["nested_user_namespaces"].startswith("refused (seccomp profile")
    internal = build_definition(run_dir)["internalParameters"]
    if side.mode == "rootless":
        assert facts["id_mappings"]["uidmap"][0]["host_id"] == side.user.pw_uid  # type: ignore[union-attr]
        if not Path("/sys/fs/cgroup/cgroup.controllers").exists():  # cgroup v1
            assert facts["limits_enforced"] is False
            assert "memory" in internal["unenforcedLimits"]
    else:
        assert "unenforcedLimits" not in internal
    side.rexec("verify", run_dir, "--key", pub)


def test_failures_and_timeouts_are_recorded_under_podman(side: Side) -> None:
    key, pub = keys(side)
    spec = project(
        side, ["python3", "/code/fail.py"], code={"fail.py": "import sys\nsys.exit(3)\n"}
    )
    out = side.rexec(
        "run", spec, "--signing-key", key, "--runs-dir", side.root / "runs",
        check=ExitCode.JOB_FAILED,
    )  # fmt: skip
    assert "failed (exit code 3)" in out.stderr
    (run_dir,) = (side.root / "runs").iterdir()
    assert exit_status(run_dir)["exitCode"] == 3
    doc = tomllib.loads(spec.read_text())
    doc["run"].update(timeout="2s", command=["python3", "-c", "import time; time.sleep(60)"])
    side.sh("sh", "-c", f"cat > {spec} <<'EOF'\n{tomli_w.dumps(doc)}EOF\n")
    timed = run_record(side.rexec, spec, key, side.root / "runs", check=ExitCode.JOB_FAILED)
    assert exit_status(timed)["status"] == "timed-out"
    side.rexec("verify", timed, "--key", pub, check=ExitCode.JOB_FAILED)  # the gate refuses
    side.rexec("verify", timed, "--key", pub, "--allow-failed")


def test_a_podman_run_replays_bitwise_under_podman(side: Side) -> None:
    key, pub = keys(side)
    code = {
        "job.py": "import json,os\njson.dump({'seed': os.environ['REXEC_SEED']}, open('/outputs/m.json','w'))\n"
    }
    original = run_record(
        side.rexec, project(side, ["python3", "/code/job.py"], code=code), key, side.root / "runs"
    )
    out = side.rexec(
        "replay", original, "--key", pub, "--signing-key", key, "--runs-dir", side.root / "runs",
        "--json",
    )  # fmt: skip
    assert json.loads(out.stdout)["verdict"] == "reproduced-bitwise"


def test_the_demo_runs_under_podman(side: Side) -> None:
    """The README's demo spec, from the side's own copy of the repository's files."""
    key, pub = keys(side)
    tree = side.root / "rexec"
    for part in ("specs/demo.toml", "specs/demo", "images/demo"):
        side.sh("mkdir", "-p", (tree / part).parent)
        side.sh("cp", "-r", REPO / part, tree / part)
    side.git(tree, "init", "-q")
    side.git(tree, "add", "-A")
    side.git(tree, "commit", "-qm", "demo")
    locked = side.root / "demo.lock.toml"  # as scripts/demo does: pins the base for this engine
    side.rexec("lock", tree / "specs" / "demo.toml", "-o", locked, "--runtime", "podman")
    run_dir = run_record(side.rexec, locked, key, side.root / "runs", "--runtime", "podman")
    metrics = json.loads((run_dir / "outputs" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8
    assert engine_facts(run_dir)["mode"] == side.mode
    assert "VERIFIED" in side.rexec("verify", run_dir, "--key", pub).stdout


def test_a_docker_record_replays_under_podman_with_the_same_verdict(
    rexec: Rexec, podman: None, tmp_path: Path
) -> None:
    """Same registry digest → same image id in both engines; a built image id would not be."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("x\n")
    job = "open('/outputs/y.txt','w').write(open('/data/x.txt').read()*3)"
    data_input = {**pinned(rexec, "data", data, "/data"), "path": "data"}
    spec_file = gen(
        tmp_path / "spec.toml", spec("cross", ["python3", "-c", job], inputs=[data_input])
    )
    rexec("keygen", "--out", tmp_path / "keys" / "signing")
    key, pub = tmp_path / "keys" / "signing.key", tmp_path / "keys" / "signing.pub"
    runs = tmp_path / "runs"
    original = rexec.run(spec_file, key, runs)
    assert engine_facts(original)["name"] == "docker"
    out = rexec(
        "replay", original, "--runtime", "podman", "--key", pub, "--signing-key", key,
        "--runs-dir", runs, "--json",
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["verdict"] == "reproduced-bitwise"
    replayed = Path(doc["replay"]["run_dir"])
    assert engine_facts(replayed)["name"] == "podman"
    assert (
        build_definition(replayed)["resolvedDependencies"]
        == build_definition(original)["resolvedDependencies"]
    )  # the same image, by the same digest, and the same data


def test_rootless_podman_without_a_login_session_gets_a_private_runtime_dir(
    podman: None,
) -> None:
    """A batch job on a compute node: no XDG_RUNTIME_DIR, no /run/user/<uid>. rexec gives
    Podman a runtime dir only this user can enter, and the run goes as with a session."""
    user = _ensure_user("rexec-batch", session=False, first=300000)
    assert not Path(f"/run/user/{user.pw_uid}").exists()
    for side in _rootless(user):
        assert "XDG_RUNTIME_DIR" not in side.env()
        key, pub = keys(side)
        spec = project(side, ["sh", "-c", "echo ok > $REXEC_OUTPUTS/ok.txt"])
        run_dir = run_record(side.rexec, spec, key, side.root / "runs")
        assert (run_dir / "outputs" / "ok.txt").read_text() == "ok\n"
        private = Path(tempfile.gettempdir()) / f"rexec-runtime-{user.pw_uid}"
        info = private.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, 0o700)
        assert engine_facts(run_dir)["mode"] == "rootless"
        side.rexec("verify", run_dir, "--key", pub)


def test_submit_refuses_an_engine_the_user_cannot_use_on_the_nodes(podman: None) -> None:
    """Checked before anything is queued: an unprivileged user outside the docker group
    cannot run Docker on the nodes; rootless Podman with subordinate ids can."""
    for side in _rootless(_ensure_user()):
        key, _ = keys(side)
        spec = project(side, ["true"])
        runs = side.root / "runs"
        out = side.rexec(
            "submit", spec, "--signing-key", key, "--runs-dir", runs, "--runtime", "docker",
            check=ExitCode.BAD_INPUT,
        )  # fmt: skip
        assert "may not use (neither root nor in the docker group)" in out.stderr
        assert "--runtime podman" in out.stderr and not runs.exists()
        script = side.rexec("submit", spec, "--signing-key", key, "--runs-dir", runs, "--dry-run")
        assert "slurm-node" in script.stdout  # Podman passes the check

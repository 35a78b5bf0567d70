"""A hostile job against the host side of rexec, at the container seam.

The fake engine here runs the "job" on the host, writing into the directories
rexec mounts for it (outputs and reports) exactly what a job inside the
container could create there: links to host files, FIFOs, devices, huge sparse
files, unencodable names, trees deeper than Python's recursion limit, files
without read bits. rexec must record the run truthfully, copy nothing from the
host, hang on nothing, and produce a record that verifies, as root and as an
unprivileged user. tests/e2e/test_hostile_e2e.py repeats the worst case in a
real container.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor import runner, spec
from executor.errors import MismatchError
from executor.record.reader import load_record
from executor.record.verification import verify_record
from executor.signing import KeyPolicy, SignOptions, generate_keypair
from tests.fakes import FakeRuntime, Job

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "keys" / "k.key", tmp_path / "keys" / "k.pub"
    generate_keypair(private, public, password=None)
    return private, public


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "host-secret"
    secret.write_text("HOST-SECRET-VALUE\n")
    secret.chmod(0o600)
    return secret


def run_job(tmp_path: Path, keys: tuple[Path, Path], job: Job) -> runner.RunResult:
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    text = """
version = 1
name = "hostile"
[image]
build = { dockerfile = "img/Dockerfile", context = "img", allow_unpinned_from = true }
[run]
command = ["train"]
seed = 3
"""
    run_spec = spec.loads(text.encode(), source=tmp_path / "spec.toml")
    said: list[str] = []
    options = runner.RunOptions(
        runs_dir=tmp_path / "runs",
        sign=SignOptions(method="key", key_path=keys[0]),
        echo_logs=False,
        say=said.append,
    )
    result = runner.run(run_spec, options=options, runtime=FakeRuntime(job))
    (result.run_dir / "said.txt").write_text("\n".join(said))  # unsigned: for the assertions
    return result


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging forever when something waits on a FIFO."""

    def hang(signum: int, frame: object) -> None:
        raise AssertionError("rexec hung (a FIFO was opened or read without O_NONBLOCK?)")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def record_bytes(run_dir: Path) -> bytes:
    chunks = []
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            chunks.append(path.read_bytes())
    return b"".join(chunks)


def test_reports_that_point_at_host_files_are_never_read(
    tmp_path: Path, keys: tuple[Path, Path], host_secret: Path, alarm: None
) -> None:
    def job(outputs: Path, reports: Path) -> None:
        (reports / "determinism.json").symlink_to(host_secret)
        (reports / "key.json").symlink_to(keys[0])
        (reports / "zero.json").symlink_to("/dev/zero")
        os.mkfifo(reports / "fifo.json")
        with open(reports / "sparse.json", "wb") as f:
            f.truncate(1 << 40)  # a terabyte of holes: must not be read into memory
        (reports / "dir.json").mkdir()
        (reports / "dangling.json").symlink_to("/nonexistent")
        (reports / "ok.json").write_text('{"seeded": true}')
        (outputs / "model.bin").write_bytes(b"weights")

    result = run_job(tmp_path, keys, job)
    assert result.status.status == "succeeded"
    meta = result.run_dir / "job-meta"
    assert sorted(p.name for p in meta.iterdir()) == ["ok.json"]
    everything = record_bytes(result.run_dir)
    assert b"HOST-SECRET-VALUE" not in everything
    assert keys[0].read_bytes()[40:80] not in everything
    said = (result.run_dir / "said.txt").read_text()
    for name in ("determinism.json", "key.json", "zero.json", "fifo.json", "sparse.json"):
        assert f"ignored in the job's reports directory: {name}" in said
    assert not (result.run_dir / ".job-reports").exists()
    assert verify_record(result.run_dir, KeyPolicy.from_file(keys[1])).verified


def test_outputs_links_fifos_odd_names_and_deep_trees_are_excluded_and_recorded(
    tmp_path: Path, keys: tuple[Path, Path], host_secret: Path, alarm: None
) -> None:
    def job(outputs: Path, reports: Path) -> None:
        (outputs / "model.bin").write_bytes(b"weights")
        (outputs / ".rexec").symlink_to("/")
        (outputs / "leak").symlink_to(host_secret)
        (outputs / "dangling").symlink_to("/nonexistent")
        os.mkfifo(outputs / "pipe")
        (outputs / "back\\slash").write_bytes(b"x")
        os.close(os.open(os.fsencode(outputs) + b"/caf\xe9", os.O_CREAT | os.O_WRONLY, 0o644))
        (outputs / "new\nline").write_bytes(b"x")
        path = os.fsencode(outputs / "deep")
        os.mkdir(path)
        for _ in range(1500):
            path = os.path.join(path, b"d")
            os.mkdir(path)
        (outputs / "locked").write_bytes(b"mode 000")
        (outputs / "locked").chmod(0)

    result = run_job(tmp_path, keys, job)
    assert result.status.status == "succeeded"
    assert sorted(s.name for s in result.subjects) == ["locked", "model.bin"]
    excluded = json.loads((result.run_dir / "outputs-excluded.json").read_bytes())
    by_name = {e["name"]: e["kind"] for e in excluded}
    assert by_name[".rexec"] == by_name["leak"] == by_name["dangling"] == "a symbolic link"
    assert by_name["pipe"] == "a FIFO"
    assert {"back\\\\slash", "caf\\\\xe9", "new\\nline"} <= set(by_name)
    assert any(
        name.startswith("deep/d/d") and kind == "a directory" for name, kind in by_name.items()
    )
    assert b"HOST-SECRET-VALUE" not in record_bytes(result.run_dir)
    assert verify_record(result.run_dir, KeyPolicy.from_file(keys[1])).verified
    # ... and the record replays and diffs from its verified bytes
    assert load_record(result.run_dir).outputs.keys() == {"locked", "model.bin"}


def test_a_user_who_is_not_root_can_verify_the_record(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the unprivileged user (CI runs as root)")

    def job(outputs: Path, reports: Path) -> None:
        (outputs / "sub").mkdir()
        (outputs / "sub" / "weights").write_bytes(b"w")
        (outputs / "sub" / "weights").chmod(0)
        (outputs / "sub").chmod(0o100)
        (outputs / "private").write_bytes(b"p")
        (outputs / "private").chmod(0o200)

    result = run_job(tmp_path, keys, job)
    shared = Path(tempfile.mkdtemp(prefix="rexec-verify-"))
    try:
        shared.chmod(0o755)
        shutil.copytree(result.run_dir, shared / "run", symlinks=True, copy_function=shutil.copy2)
        shutil.copy(keys[1], shared / "k.pub")
        (shared / "k.pub").chmod(0o644)
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-m",
                "executor",
                "verify",
                str(shared / "run"),
                "--key",
                str(shared / "k.pub"),
            ],
            capture_output=True,
            text=True,
            cwd="/",
            timeout=60,
            env={
                "PATH": os.environ["PATH"],
                "PYTHONPATH": str(REPO),
                "HOME": "/nonexistent",
                "REXEC_CACHE_DIR": str(shared / "cache"),
            },
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "VERIFIED" in proc.stdout
    finally:
        shutil.rmtree(shared)


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def signed_record(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("signed")
    private, public = tmp / "k.key", tmp / "k.pub"
    generate_keypair(private, public, password=None)

    def job(outputs: Path, reports: Path) -> None:
        (outputs / "model.bin").write_bytes(b"weights" * 10)
        (outputs / "eval").mkdir()
        (outputs / "eval" / "metrics.json").write_text('{"acc": 0.5}')
        (reports / "determinism.json").write_text('{"seeded": ["numpy"]}')

    result = run_job(tmp, (private, public), job)
    return result.run_dir, public


def named_files(run_dir: Path) -> list[str]:
    statement = json.loads((run_dir / "statement.json").read_bytes())
    products = statement["predicate"]["runDetails"]["byproducts"]
    names = [p["name"] for p in products if "content" not in p]
    return sorted(names) + sorted(f"outputs/{s['name']}" for s in statement["subject"])


def test_the_record_names_every_file_it_holds(signed_record: tuple[Path, Path]) -> None:
    run_dir, _ = signed_record
    named = set(named_files(run_dir))
    assert {
        "host.json",
        "params.json",
        "logs/stdout.log",
        "logs/stderr.log",
        "image-inventory.json",
        "job-meta/determinism.json",
        "outputs/model.bin",
    } <= named
    unsigned = {
        "statement.json",
        "statement.sigstore.json",
        "signing-key.pub",
        "record.json",
        "said.txt",
    }
    on_disk = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert on_disk - unsigned == named


@PROPERTY
@given(data=st.data())
def test_any_single_byte_change_to_any_named_file_is_detected(
    signed_record: tuple[Path, Path], data: st.DataObject
) -> None:
    run_dir, public = signed_record
    name = data.draw(st.sampled_from(named_files(run_dir)))
    path = run_dir / name
    original = path.read_bytes()
    index = data.draw(st.integers(min_value=0, max_value=max(len(original) - 1, 0)))
    changed = bytearray(original or b"\0")
    changed[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        path.write_bytes(bytes(changed))
        verdict = verify_record(run_dir, KeyPolicy.from_file(public))
        assert isinstance(verdict.error, MismatchError), verdict
        assert name.removeprefix("outputs/") in " ".join(verdict.error.details)
        if name == "host.json" or name.startswith("inputs/"):  # what replay reads beside it
            with pytest.raises(MismatchError, match="not the file the statement signs"):
                load_record(run_dir)
    finally:
        path.write_bytes(original)

"""A trainer that prints its perplexity and writes a CSV history, run by the real runner
with the engine faked (tests/fakes.py): records made and signed in-process."""

from __future__ import annotations

from pathlib import Path

from executor import runner, spec
from executor.runtime import ContainerRequest
from executor.signing import SignOptions
from executor.signing.key import generate_keypair
from tests.fakes import FakeRuntime

SPEC = """
version = 1
name = "lm"
[image]
build = { dockerfile = "img/Dockerfile", context = "img", allow_unpinned_from = true }
[run]
command = ["train"]
seed = 1
[[metrics]]
stdout = 'end of epoch\\s+(?P<step>\\d+) .*valid ppl\\s+(?P<val_ppl>[0-9.]+)'
summary = "min"
[[metrics]]
file = "history.csv"
step = "epoch"
"""
# What the trainer prints at the end of its epochs, by seed: the spread the issue measured.
PPL = {1: (960.0, 921.5), 2: (950.0, 893.7), 3: (990.0, 940.6), 4: (930.0, 897.3)}


def job(outputs: Path, reports: Path) -> None:
    (outputs / "history.csv").write_text("epoch,train_loss\n1,7.1\n2,6.8\n")
    (outputs / "summary.json").write_text('{"params": 1200, "curve": [3, 2, 1]}')
    (outputs / "plots").mkdir()
    (outputs / "plots" / "curve.png").write_bytes(PNG)
    (outputs / "notes.txt").write_text("<script>alert(1)</script> & more\n")


# a 1x1 PNG: what a trainer's plotting library leaves beside its metrics
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db40000000049454e44ae426082"
)


def printed(request: ContainerRequest) -> bytes:
    first, last = PPL[int(request.env["REXEC_SEED"])]
    return (
        f"| end of epoch   1 | time: 1.0s | valid ppl {first:8.2f}\n"
        f"| end of epoch   2 | time: 1.0s | valid ppl {last:8.2f}\n"
    ).encode()


def make_key(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh P-256 key pair: (private, public)."""
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub", password=None)
    return tmp_path / "k.pem", tmp_path / "k.pub"


def run(tmp_path: Path, key: Path, seed: int, text: str = SPEC) -> Path:
    """One run of the trainer with ``seed``, signed with ``key``; its record's path."""
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    run_spec = spec.loads(text.encode(), source=tmp_path / "spec.toml", seed=seed)
    options = runner.RunOptions(
        runs_dir=tmp_path / "runs", sign=SignOptions(method="key", key_path=key), echo_logs=False
    )
    runtime = FakeRuntime(job, stdout=printed)
    return runner.run(run_spec, options=options, runtime=runtime).run_dir

"""`scripts/bench run [--repeat N]`: what `rexec run` costs over a bare `docker run`.

Same image, same trivial job, same machine, in one script: a bare
`docker run --rm --network none IMAGE python3 -c pass`, a hardened bare run
(the flags rexec uses), and `rexec run` of a spec with that command (which
adds snapshot verification, code pinning, host capture, hashing, the
manifest, signing and the atomic record). Then the demo spec end to end.
Prints the median of N runs of each and the ratio to the bare run. A
benchmark, not a test: it prints, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REXEC = str(REPO / ".venv" / "bin" / "rexec")
BASE = "rexec/base:bookworm"
# Every FROM must name a digest: scripts/setup pushes the base to the local registry
# and writes its pinned reference here (machine-specific, never committed).
BASE_REF_FILE = REPO / "build" / "base" / "registry-ref"


def pinned_base() -> str:
    """The base image by digest, as scripts/setup pinned it; a clear error if it did not."""
    if not BASE_REF_FILE.is_file():
        raise SystemExit(f"scripts/bench: {BASE_REF_FILE} is missing; run scripts/setup first")
    return BASE_REF_FILE.read_text().strip()


HARDENED = [
    "--network",
    "none",
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges:true",
    "--pids-limit",
    "512",
    "-u",
    "65534:65534",
]


def timed(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        cmd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def median(cmd: Sequence[str], repeat: int, env: dict[str, str] | None = None) -> float:
    timed(cmd, env=env)  # warm-up: page cache, image layers, Python bytecode
    return statistics.median(timed(cmd, env=env) for _ in range(repeat))


def trivial_project(root: Path) -> Path:
    (root / "code").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "x.txt").write_text("x\n")
    (root / "code" / "job.py").write_text("pass\n")
    git = ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    digest = subprocess.run(
        [REXEC, "snapshot", "hash", str(root / "data"), "--quiet"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    spec = root / "spec.toml"
    dockerfile, context = REPO / "images" / "demo" / "Dockerfile", REPO / "images" / "demo"
    spec.write_text(
        textwrap.dedent(f"""\
        version = 1
        name = "bench"
        [image]
        [image.build]
        dockerfile = "{dockerfile}"
        context = "{context}"
        args = {{ BASE_IMAGE = "{pinned_base()}" }}
        [run]
        command = ["python3", "/code/job.py"]
        workdir = "/code"
        seed = 1
        [[inputs]]
        name = "data"
        path = "data"
        digest = "{digest}"
        mount = "/data"
        [code]
        path = "code"
        """)
    )
    return spec


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench run", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per case (median reported)")
    parser.add_argument(
        "--smoke", action="store_true", help="one run per case: proves the bench still runs (CI)"
    )
    parser.add_argument(
        "--runtime",
        choices=("docker", "podman"),
        default="docker",
        help="the engine: rexec run --runtime X against a bare `X run` of the same job",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat = 1
    with tempfile.TemporaryDirectory(prefix="rexec-bench-run-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "REXEC_CACHE_DIR": str(root / "cache")}
        key = root / "keys" / "k"
        subprocess.run(
            [REXEC, "keygen", "--out", str(key)],
            check=True,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        spec = trivial_project(root / "project")
        rexec_run = [
            REXEC,
            "run",
            str(spec),
            "--runtime",
            args.runtime,
            "--quiet",
            "--signing-key",
            f"{key}.key",
            "--runs-dir",
            str(root / "runs"),
        ]
        demo = [
            REXEC,
            "run",
            str(REPO / "specs" / "demo.toml"),
            "--quiet",
            "--allow-dirty",
            "--allow-unpinned",  # the demo spec names its base by tag; `rexec lock` pins it
            "--runtime",
            args.runtime,
            "--signing-key",
            f"{key}.key",
            "--runs-dir",
            str(root / "runs"),
        ]
        engine, image, hardened, limits = ["docker"], BASE, HARDENED, []
        if args.runtime == "podman":
            from executor.runtime.podman import ULIMITS, global_flags

            engine = ["podman", *global_flags(rootless=os.geteuid() != 0)]
            image = pinned_base()  # pulled by digest: Podman holds no local `rexec/base` tag
            # Without them runc cannot start any container here (root lacks CAP_SYS_RESOURCE).
            limits = [f"--ulimit={u['name']}={u['soft']}:{u['hard']}" for u in ULIMITS]
            hardened = [*HARDENED, *limits]
            subprocess.run([*engine, "pull", "-q", image], check=True, stdout=subprocess.DEVNULL)
        bare_name, hard_name = (
            f"{args.runtime} run (bare)",
            f"{args.runtime} run (rexec's hardening)",
        )
        cases = {
            bare_name: (
                [*engine, "run", "--rm", *limits, image, "python3", "-c", "pass"],
                None,
            ),
            hard_name: ([*engine, "run", "--rm", *hardened, image, "python3", "-c", "pass"], None),
            "rexec run (trivial job)": (rexec_run, env),
            "rexec run specs/demo.toml": (demo, env),
        }
        results = {name: median(cmd, args.repeat, env) for name, (cmd, env) in cases.items()}
    bare = results[bare_name]
    print(f"median of {args.repeat} runs each, after one warm-up")
    print(f"{'case':34} {'seconds':>8} {'× bare ' + args.runtime + ' run':>18}")
    for name, seconds in results.items():
        print(f"{name:34} {seconds:8.3f} {seconds / bare:18.2f}")
    overhead = results["rexec run (trivial job)"] - results[hard_name]
    print(f"rexec overhead over the same hardened {args.runtime} run: {overhead:.3f} s")
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`scripts/bench submit [--repeat N] [--jobs N] [--smoke]`: what `rexec submit` costs on Slurm.

Two figures, each against a peer measured in the same script on the same cluster:

1. Time from submitting to the job's first instruction inside its container:
   `rexec submit` of a trivial spec, against `sbatch` of a plain script that
   runs the same image with the same hardening flags (`docker run`). The job
   prints `time.time()` from inside the container; the bench subtracts the
   moment it started the submit command. Target: at most 1.5 s added.
2. Polling cost: how many Slurm commands one `rexec status` cycle runs for N
   tracked jobs (target: 2, one squeue and one sacct, whatever N is).

Uses the cluster in $SLURM_CONF, or starts a throwaway one (scripts/slurm-cluster,
root) and stops it at the end. A benchmark, not a test: it prints, it does not assert.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PYTHON = str(REPO / ".venv" / "bin" / "python")
REXEC = [PYTHON, "-m", "executor"]
BASE_REF_FILE = REPO / "build" / "base" / "registry-ref"
PRINT_TIME = "import time; print('T=%.6f' % time.time(), flush=True)"
HARDENED = "--network none --read-only --cap-drop ALL --security-opt no-new-privileges:true"


def base_image() -> str:
    if not BASE_REF_FILE.is_file():
        raise SystemExit(f"scripts/bench: {BASE_REF_FILE} is missing; run scripts/setup first")
    return BASE_REF_FILE.read_text().strip()


def wait_for_time(log: Path, timeout: float = 120.0) -> float:
    """The T= stamp the job printed from inside its container."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file():
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("T="):
                    return float(line[2:])
        time.sleep(0.05)
    raise SystemExit(f"scripts/bench: no T= line in {log} after {timeout:g} s")


def plain_sbatch(work: Path, env: dict[str, str], image: str) -> float:
    log = work / f"plain-{time.time_ns()}.out"
    script = work / "plain.sbatch"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --output={log}\n#SBATCH --export=NONE\n"
        f'exec docker run --rm {HARDENED} -u 65534:65534 {image} python3 -c "{PRINT_TIME}"\n'
    )
    t0 = time.time()
    subprocess.run(["sbatch", "--parsable", str(script)], env=env, check=True, capture_output=True)
    return wait_for_time(log) - t0


def trivial_spec(work: Path, image: str) -> Path:
    (work / "data").mkdir(exist_ok=True)
    (work / "data" / "x.txt").write_text("x\n")
    spec = work / "spec.toml"
    digest = subprocess.run(
        [*REXEC, "snapshot", "hash", str(work / "data"), "-q"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    spec.write_text(
        textwrap.dedent(f"""\
        version = 1
        name = "bench"
        [image]
        ref = "{image}"
        [run]
        command = ["python3", "-c", "{PRINT_TIME}"]
        seed = 1
        [[inputs]]
        name = "data"
        path = "data"
        digest = "{digest}"
        mount = "/data"
        [determinism]
        frameworks = []
        [signing]
        method = "none"
        """)
    )
    return spec


def rexec_submit(work: Path, env: dict[str, str], spec: Path) -> float:
    runs = work / "runs"
    t0 = time.time()
    out = subprocess.run(
        [*REXEC, "submit", str(spec), "--runs-dir", str(runs), "--json"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    doc = json.loads(out)
    log = runs / ".rexec-jobs" / doc["run_id"] / f"slurm-{doc['job_id']}.out"
    return wait_for_time(log) - t0


def polling_cost(work: Path, env: dict[str, str], jobs: int) -> tuple[int, float]:
    """Slurm commands in one status cycle for ``jobs`` tracked submissions, and its time."""
    from executor.cluster import SiteOptions, Slurm, Submission, poll

    runs = work / "poll-runs"
    subs = []
    for i in range(jobs):
        job = subprocess.run(
            ["sbatch", "--parsable", "--wrap", "true", "--output=/dev/null"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        subs.append(
            Submission(
                run_id=f"bench-{i}",
                spec_path="-",
                spec_sha256="-",
                runs_dir=str(runs),
                site=SiteOptions(),
                sign={},
                job_id=job.split(";")[0],
            )
        )
    slurm = Slurm(env)
    t0 = time.perf_counter()
    poll(subs, slurm)
    return len(slurm.calls), time.perf_counter() - t0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench submit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeat", type=int, default=5, help="submissions per case (median)")
    parser.add_argument("--jobs", type=int, default=100, help="tracked jobs for the polling cost")
    parser.add_argument("--smoke", action="store_true", help="one run, 5 jobs: proves it runs (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat, args.jobs = 1, 5
    image = base_image()
    with tempfile.TemporaryDirectory(prefix="rexec-bench-submit-") as tmp:
        work = Path(tmp)
        env = dict(os.environ)
        started_cluster = None
        if not env.get("SLURM_CONF"):
            work.chmod(0o755)  # munged and MariaDB run as their own users
            started_cluster = work / "cluster"
            subprocess.run(
                ["bash", str(REPO / "scripts" / "slurm-cluster"), "up", str(started_cluster)],
                check=True, stdout=subprocess.DEVNULL, env=env | {"PORT_BASE": "17800"},
            )  # fmt: skip
            env["SLURM_CONF"] = str(started_cluster / "etc" / "slurm.conf")
        env["REXEC_CACHE_DIR"] = str(work / "cache")
        try:
            spec = trivial_spec(work, image)
            plain_sbatch(work, env, image)  # warm-up: image layers, page cache
            rexec_submit(work, env, spec)
            plain = statistics.median(plain_sbatch(work, env, image) for _ in range(args.repeat))
            ours = statistics.median(rexec_submit(work, env, spec) for _ in range(args.repeat))
            calls, seconds = polling_cost(work, env, args.jobs)
        finally:
            if started_cluster is not None:
                subprocess.run(
                    ["bash", str(REPO / "scripts" / "slurm-cluster"), "down", str(started_cluster)],
                    check=False,
                )
    print(f"median of {args.repeat} submissions each, after one warm-up")
    print(f"{'sbatch + hardened docker run (peer)':40} {plain:8.3f} s to the job's first line")
    print(f"{'rexec submit':40} {ours:8.3f} s")
    print(
        f"rexec submit adds {ours - plain:.3f} s over sbatch of the same docker run (target <= 1.5)"
    )
    print(f"status polling: {calls} Slurm commands for {args.jobs} tracked jobs in one cycle "
          f"({seconds:.3f} s; target 2)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`scripts/bench verify [--files N] [--size BYTES]`: `rexec verify` on a record with many outputs.

Makes a real record with `rexec run` (a job that writes N output files of
BYTES each), then times `rexec verify --key` on it against a peer on the same
files in the same script: `sha256sum` over every output (what verification
must at least do) and the Python start-up of the rexec command itself.
Prints medians; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import REXEC, trivial_project


def timed(cmd: Sequence[str] | str, *, env: dict[str, str], shell: bool = False) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, shell=shell)
    return time.perf_counter() - t0


def median(
    cmd: Sequence[str] | str, *, env: dict[str, str], repeat: int, shell: bool = False
) -> float:
    timed(cmd, env=env, shell=shell)
    return statistics.median(timed(cmd, env=env, shell=shell) for _ in range(repeat))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench verify")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64 << 10, help="bytes per output file")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--smoke", action="store_true", help="20 small files, one run: proves the bench still runs"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.files, args.size, args.repeat = 20, 4096, 1
    with tempfile.TemporaryDirectory(prefix="rexec-bench-verify-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "REXEC_CACHE_DIR": str(root / "cache")}
        key = root / "keys" / "k"
        subprocess.run(
            [REXEC, "keygen", "--out", str(key)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        spec = trivial_project(root / "project")
        job = (
            f"import os\nout = os.environ['REXEC_OUTPUTS']\n"
            f"for i in range({args.files}):\n"
            f"    open(f'{{out}}/part-{{i:05d}}.bin', 'wb').write(os.urandom({args.size}))\n"
        )
        (root / "project" / "code" / "job.py").write_text(job)
        runs = root / "runs"
        subprocess.run(
            [
                REXEC,
                "run",
                str(spec),
                "--quiet",
                "--allow-dirty",
                "--signing-key",
                f"{key}.key",
                "--runs-dir",
                str(runs),
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        (record,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
        verify = median(
            [REXEC, "verify", str(record), "--key", f"{key}.pub"], env=env, repeat=args.repeat
        )
        peer = median(
            f"cd {record}/outputs && sha256sum * > /dev/null",
            env=env,
            repeat=args.repeat,
            shell=True,
        )
        startup = median([REXEC, "--version"], env=env, repeat=args.repeat)
    total = args.files * args.size
    print(
        f"record with {args.files} outputs of {args.size} B ({total / 1e6:.1f} MB), "
        f"median of {args.repeat}"
    )
    print(f"rexec verify --key      {verify:7.3f} s")
    print(f"sha256sum of outputs    {peer:7.3f} s   (rexec/peer {verify / peer:.2f}×)")
    print(f"rexec start-up alone    {startup:7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

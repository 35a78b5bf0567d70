"""Generate the demo job's dataset: three 2-D Gaussian blobs, split into train and test.

The CSV files under ``data/`` are committed, and they are what rexec pins by
digest; this script only documents how they were made, so anyone can check
that the data is what it claims to be. Rerunning it must reproduce the
committed bytes exactly (fixed seed, fixed row order, fixed number format):

    python3 specs/demo/make_data.py && git diff --exit-code specs/demo/data

It uses numpy's ``Generator`` (PCG64), whose normal stream has been stable
since numpy 1.17, and writes six decimals so a last-bit difference in a
future numpy cannot reach the file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SEED = 20250520
ROWS_PER_CLASS = 500
TEST_PER_CLASS = 100
# Blob centres and spreads: close enough that the classes overlap a little,
# so accuracy stays below 100% and a training bug shows in the metrics.
CENTRES = ((0.0, 0.0), (2.5, 0.5), (1.0, 2.5))
SPREAD = 0.8
HEADER = "x0,x1,label"


def make_split(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw every class, shuffle once, and cut a stratified test split."""
    train_rows: list[np.ndarray] = []
    test_rows: list[np.ndarray] = []
    for label, centre in enumerate(CENTRES):
        points = rng.normal(loc=centre, scale=SPREAD, size=(ROWS_PER_CLASS, 2))
        labelled = np.column_stack([points, np.full(ROWS_PER_CLASS, label, dtype=np.float64)])
        test_rows.append(labelled[:TEST_PER_CLASS])
        train_rows.append(labelled[TEST_PER_CLASS:])
    train = np.concatenate(train_rows)
    test = np.concatenate(test_rows)
    return train[rng.permutation(len(train))], test[rng.permutation(len(test))]


def write_csv(path: Path, rows: np.ndarray) -> None:
    """Fixed format, "\\n" line ends: the bytes must not depend on the platform."""
    lines = [HEADER] + [f"{x0:.6f},{x1:.6f},{int(label)}" for x0, x1, label in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode("ascii"))


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    train, test = make_split(np.random.default_rng(SEED))
    write_csv(out / "train.csv", train)
    write_csv(out / "test.csv", test)
    print(f"wrote {len(train)} train and {len(test)} test rows to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

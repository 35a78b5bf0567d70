"""An ordinary training script, the kind people bring to rexec: nothing rexec-specific in it.

Hyperparameters and the seed are argparse flags; the checkpoint goes next to
the script unless ``--save-dir`` says otherwise; it seeds itself from
``--seed``. ``specs/porting.toml`` runs it unchanged (docs/porting.md walks
through it): the spec's ``[params]`` become these flags, ``{seed}`` the seed,
``{outputs}`` the save dir. Logistic regression on the demo's Gaussian blobs,
in NumPy, small enough to train in a second.
"""

from __future__ import annotations

import argparse
import json
import os
import random

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="softmax regression on 2-D blobs")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="data")
    p.add_argument("--save-dir", default=os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--verbose", action="store_true")
    return p.parse_args()


def load(path: str) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return table[:, :2], table[:, 2].astype(np.int64)


def main() -> None:
    args = parse_args()
    random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x, y = load(os.path.join(args.data, "train.csv"))
    x_test, y_test = load(os.path.join(args.data, "test.csv"))
    classes = int(y.max()) + 1
    w = rng.normal(0.0, 0.1, size=(2, classes))
    b = np.zeros(classes)
    for epoch in range(args.epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), args.batch_size):
            idx = order[start : start + args.batch_size]
            logits = x[idx] @ w + b
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1.0
            w -= args.lr * x[idx].T @ p / len(idx)
            b -= args.lr * p.mean(axis=0)
        if args.verbose and epoch % 10 == 0:
            print(f"epoch {epoch}")
    accuracy = float(((x_test @ w + b).argmax(axis=1) == y_test).mean())
    np.save(os.path.join(args.save_dir, "weights.npy"), np.concatenate([w.ravel(), b]))
    with open(os.path.join(args.save_dir, "metrics.json"), "w") as f:
        json.dump({"accuracy": accuracy, "epochs": args.epochs}, f, sort_keys=True)
        f.write("\n")
    print(f"accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()

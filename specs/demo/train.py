"""rexec's demo job: a one-hidden-layer MLP on three Gaussian blobs, in plain NumPy.

It is small on purpose (seconds on one core) but does what a real training job
does: reads pinned data, takes hyperparameters and a seed from rexec, writes
weights and metrics, and logs progress. Its outputs must be bit-identical for
the same seed and parameters, which is what ``rexec replay`` checks, so:

- all randomness comes from ``np.random.default_rng(REXEC_SEED)``;
- full-batch gradient descent in a fixed order, with matrices small enough
  that BLAS has no reason to split a sum across threads;
- ``model.npz`` is written with fixed zip timestamps (``np.savez`` stamps the
  current time into the archive, which would change its hash every run);
- ``metrics.json`` has sorted keys, and floats are Python's shortest repr.

The contract rexec provides (see docs/setup.md): data at ``/data`` (read-only),
``REXEC_SEED``, ``REXEC_PARAMS`` (a JSON file), ``REXEC_OUTPUTS`` (writable).
``DEMO_DATA_DIR`` overrides ``/data`` for running the script by hand.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

DEFAULTS: dict[str, Any] = {"learning_rate": 0.5, "epochs": 200, "hidden": 16}
CLASSES = 3
# The earliest time a zip entry can carry; any constant would do.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class JobError(Exception):
    """A problem with the job's inputs; reported on stderr with exit status 2."""


def load_params(path: str | None) -> dict[str, Any]:
    """Defaults overridden by the JSON file; unknown keys are an error, not a silent no-op."""
    params = dict(DEFAULTS)
    if path:
        try:
            given = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise JobError(f"REXEC_PARAMS={path}: cannot read a JSON object: {exc}") from exc
        if not isinstance(given, dict):
            kind = type(given).__name__
            raise JobError(f"REXEC_PARAMS={path}: expected a JSON object, got {kind}")
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            known = sorted(DEFAULTS)
            raise JobError(f"REXEC_PARAMS={path}: unknown keys {unknown}; known: {known}")
        params.update(given)
    if not isinstance(params["epochs"], int) or params["epochs"] < 1:
        raise JobError(f"epochs must be a positive integer, got {params['epochs']!r}")
    if not isinstance(params["hidden"], int) or params["hidden"] < 1:
        raise JobError(f"hidden must be a positive integer, got {params['hidden']!r}")
    if not isinstance(params["learning_rate"], int | float) or params["learning_rate"] <= 0:
        raise JobError(f"learning_rate must be a positive number, got {params['learning_rate']!r}")
    return params


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, 2) and integer labels (n,) from a make_data.py CSV."""
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except OSError as exc:
        raise JobError(f"{path}: cannot read the dataset: {exc}") from exc
    return table[:, :2], table[:, 2].astype(np.int64)


def forward(weights: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden activations and class probabilities (softmax, max-shifted for stability)."""
    hidden = np.tanh(x @ weights["w1"] + weights["b1"])
    logits = hidden @ weights["w2"] + weights["b2"]
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return hidden, exp / exp.sum(axis=1, keepdims=True)


def evaluate(weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy."""
    _, probs = forward(weights, x)
    loss = -np.log(probs[np.arange(len(y)), y]).mean()
    accuracy = (probs.argmax(axis=1) == y).mean()
    return float(loss), float(accuracy)


def train(
    x: np.ndarray, y: np.ndarray, *, params: dict[str, Any], seed: int
) -> dict[str, np.ndarray]:
    """Full-batch gradient descent; prints ten progress lines."""
    rng = np.random.default_rng(seed)
    hidden = params["hidden"]
    weights = {
        "w1": rng.normal(scale=1.0 / np.sqrt(2), size=(2, hidden)),
        "b1": np.zeros(hidden),
        "w2": rng.normal(scale=1.0 / np.sqrt(hidden), size=(hidden, CLASSES)),
        "b2": np.zeros(CLASSES),
    }
    onehot = np.eye(CLASSES)[y]
    n = len(y)
    epochs = params["epochs"]
    report_every = max(1, epochs // 10)
    for epoch in range(1, epochs + 1):
        h, probs = forward(weights, x)
        d_logits = (probs - onehot) / n
        d_hidden = (d_logits @ weights["w2"].T) * (1.0 - h * h)
        grads = {
            "w2": h.T @ d_logits,
            "b2": d_logits.sum(axis=0),
            "w1": x.T @ d_hidden,
            "b1": d_hidden.sum(axis=0),
        }
        for name in ("w1", "b1", "w2", "b2"):
            weights[name] = weights[name] - params["learning_rate"] * grads[name]
        if epoch % report_every == 0 or epoch == epochs:
            loss, accuracy = evaluate(weights, x, y)
            print(f"epoch {epoch}/{epochs} loss {loss:.6f} accuracy {accuracy:.4f}", flush=True)
    return weights


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez, but with fixed entry order and timestamps: equal weights, equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.save(buffer, arrays[name], allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def main() -> int:
    try:
        seed = int(os.environ.get("REXEC_SEED", "0"))
    except ValueError:
        given = os.environ["REXEC_SEED"]
        print(f"error: REXEC_SEED must be an integer, got {given!r}", file=sys.stderr)
        return 2
    data_dir = Path(os.environ.get("DEMO_DATA_DIR", "/data"))
    outputs = Path(os.environ.get("REXEC_OUTPUTS", "/outputs"))
    try:
        params = load_params(os.environ.get("REXEC_PARAMS"))
        x_train, y_train = load_split(data_dir / "train.csv")
        x_test, y_test = load_split(data_dir / "test.csv")
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"training on {len(y_train)} rows, testing on {len(y_test)}; seed {seed}, "
        f"params {json.dumps(params, sort_keys=True)}",
        flush=True,
    )
    weights = train(x_train, y_train, params=params, seed=seed)
    train_loss, train_accuracy = evaluate(weights, x_train, y_train)
    test_loss, test_accuracy = evaluate(weights, x_test, y_test)
    metrics = {
        "epochs": params["epochs"],
        "seed": seed,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_accuracy": train_accuracy,
        "train_loss": train_loss,
    }
    outputs.mkdir(parents=True, exist_ok=True)
    save_npz(outputs / "model.npz", weights)
    (outputs / "metrics.json").write_text(json.dumps(metrics, sort_keys=True, indent=2) + "\n")
    print(f"test accuracy {test_accuracy:.4f}, test loss {test_loss:.6f}", flush=True)
    print(f"wrote {outputs / 'model.npz'} and {outputs / 'metrics.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

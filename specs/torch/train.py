"""A tiny PyTorch (CPU) trainer: the torch counterpart of specs/demo/train.py.

It exists to show rexec's determinism switches working on a real framework:
``seed_everything()`` seeds torch and turns on
``torch.use_deterministic_algorithms``, and two runs must write bit-identical
weights. So it writes raw ``.npy`` files (no timestamps, unlike ``torch.save``
zip archives' metadata or ``np.savez``) and sorted-key JSON metrics.

Data: the demo's three Gaussian blobs (``/data/{train,test}.csv``, label last).
Params (``REXEC_PARAMS``): ``learning_rate``, ``steps``, ``hidden``, ``batch``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from rexec_runtime import seed_everything

DEFAULTS = {"learning_rate": 0.05, "steps": 60, "hidden": 16, "batch": 64}


def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    return torch.tensor(table[:, :-1], dtype=torch.float32), torch.tensor(
        table[:, -1], dtype=torch.int64
    )


def main() -> int:
    params = dict(DEFAULTS)
    params.update(json.loads(Path(os.environ["REXEC_PARAMS"]).read_text()))
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        print(f"unknown params {unknown}; known: {sorted(DEFAULTS)}", file=sys.stderr)
        return 2
    seeded = seed_everything()  # seeds torch, sets deterministic algorithms, writes the report
    data = Path(os.environ.get("DEMO_DATA_DIR", "/data"))
    x_train, y_train = load(data / "train.csv")
    x_test, y_test = load(data / "test.csv")
    model = torch.nn.Sequential(
        torch.nn.Linear(x_train.shape[1], params["hidden"]),
        torch.nn.Tanh(),
        torch.nn.Linear(params["hidden"], int(y_train.max()) + 1),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=params["learning_rate"])
    loss_fn = torch.nn.CrossEntropyLoss()
    for step in range(params["steps"]):
        # Mini-batches drawn from the seeded generator: randomness, reproducibly.
        index = torch.randint(0, len(x_train), (params["batch"],), generator=seeded.generator)
        optimiser.zero_grad()
        loss = loss_fn(model(x_train[index]), y_train[index])
        loss.backward()
        optimiser.step()
        if (step + 1) % 20 == 0:
            print(f"step {step + 1}/{params['steps']} loss {loss.item():.6f}", flush=True)
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    out = Path(os.environ["REXEC_OUTPUTS"])
    for name, tensor in model.state_dict().items():
        np.save(out / f"{name}.npy", tensor.numpy())
    metrics = {"test_accuracy": accuracy, "torch": torch.__version__, **params}
    (out / "metrics.json").write_text(json.dumps(metrics, sort_keys=True) + "\n")
    print(f"test accuracy {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

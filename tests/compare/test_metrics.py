"""Metrics across seeds: the spread that tells an improvement from noise."""

from __future__ import annotations

import argparse
import json

import pytest

from executor.cli._seeds import seed_list, seeds_value
from executor.compare import metric_spread
from executor.metrics import Series, from_json


def outputs(doc: object) -> list[Series]:
    return from_json(json.dumps(doc).encode(), "metrics.json")


def test_spread_per_numeric_leaf() -> None:
    dirs = [
        outputs({"acc": 0.8, "loss": {"final": 1.0}, "tag": "x"}),
        outputs({"acc": 0.9, "loss": {"final": 2.0}, "tag": "y"}),
        outputs({"acc": 1.0, "loss": {"final": 3.0}}),
    ]
    spread = {s.key: s for s in metric_spread(dirs)}
    assert set(spread) == {"acc", "loss.final"}
    acc = spread["acc"]
    assert acc.values == (0.8, 0.9, 1.0)
    assert acc.mean == pytest.approx(0.9)
    assert acc.stdev == pytest.approx(0.1)
    assert acc.to_json()["min"] == 0.8 and acc.to_json()["max"] == 1.0
    assert spread["loss.final"].stdev == pytest.approx(1.0)


def test_a_run_without_the_key_is_left_out_of_its_spread() -> None:
    dirs = [outputs({"acc": 0.5}), outputs({"other": 1})]
    spread = {s.key: s for s in metric_spread(dirs)}
    assert spread["acc"].values == (0.5,) and spread["acc"].stdev == 0.0


def test_seeds_option() -> None:
    assert seeds_value("3") == 3
    assert seeds_value("1, 5,9") == (1, 5, 9)
    assert seed_list(3, 41) == [41, 42, 43]
    assert seed_list((7, 2), 41) == [7, 2]
    assert seed_list(2, 2**32 - 1) == [2**32 - 1, 0]
    for bad in ("1", "x", "1,1", "1,-2", "101"):
        with pytest.raises(argparse.ArgumentTypeError):
            seeds_value(bad)

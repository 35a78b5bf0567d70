"""Variants: a matrix of params for a stage, each combination its own stage run named by its
values; a stage that reads a varied one follows each of its variants."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.errors import SpecError
from executor.pipelines import load_pipeline

IMAGE = "registry.example/demo@sha256:" + "a" * 64
DIGEST = "sha256-tree-v1:" + "b" * 64


def write(root: Path, variants: str = "[variants.train]\nlr = [0.1, 0.3]\n") -> Path:
    head = f'version = 1\n[image]\nref = "{IMAGE}"\n'
    (root / "prepare.toml").write_text(
        f'name = "prepare"\n{head}[run]\ncommand = ["p"]\nseed = 1\n'
        f'[[inputs]]\nname = "raw"\npath = "."\ndigest = "{DIGEST}"\nmount = "/raw"\n'
    )
    (root / "train.toml").write_text(
        f'name = "train"\n{head}[run]\ncommand = ["t"]\nseed = 1\n'
        '[[inputs]]\nname = "data"\nfrom = "latest:prepare:clean"\nmount = "/data"\n'
        "[params]\nlr = 0.2\nepochs = 3\n"
    )
    (root / "evaluate.toml").write_text(
        f'name = "evaluate"\n{head}[run]\ncommand = ["e"]\nseed = 1\n'
        '[[inputs]]\nname = "model"\nfrom = "latest:train:model"\nmount = "/model"\n'
    )
    stages = '["prepare.toml", "train.toml", "evaluate.toml"]'
    path = root / "pipeline.toml"
    path.write_text(f'version = 1\nname = "lm"\nstages = {stages}\n{variants}')
    return path


def test_each_combination_is_a_stage_and_downstream_follows_each(tmp_path: Path) -> None:
    pipe = load_pipeline(write(tmp_path), params=[("train.epochs", 5)])
    names = [s.name for s in pipe.stages]
    assert names == [
        "prepare",
        "train[lr=0.1]",
        "train[lr=0.3]",
        "evaluate[train[lr=0.1]]",
        "evaluate[train[lr=0.3]]",
    ]
    by = {s.name: s for s in pipe.stages}
    assert by["train[lr=0.3]"].run_spec.params == {"lr": 0.3, "epochs": 5}
    assert [(o.key, o.default, o.value) for o in by["train[lr=0.3]"].run_spec.overrides] == [
        ("lr", 0.2, 0.3),
        ("epochs", 3, 5),
    ]  # recorded as overrides, each beside the spec's default
    assert by["train[lr=0.1]"].run_spec.name == "train"  # one name: compared side by side
    assert by["evaluate[train[lr=0.3]]"].binds == {"train": "train[lr=0.3]"}
    assert by["evaluate[train[lr=0.3]]"].needs == ("train[lr=0.3]",)
    assert by["train[lr=0.1]"].needs == ("prepare",) and by["prepare"].base == "prepare"


@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        ("[variants.nope]\nlr = [1]\n", "variants.nope: no such stage"),
        ("[variants.train]\nlr = 0.1\n", "variants.train: expected KEY = [values"),
        ("[variants.train]\nbeta = [0.9]\n", "no such parameter"),
    ],
)
def test_a_bad_variant_is_refused_before_anything_runs(
    tmp_path: Path, variants: str, expected: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_pipeline(write(tmp_path, variants))
    assert expected in info.value.message + " ".join(info.value.details)

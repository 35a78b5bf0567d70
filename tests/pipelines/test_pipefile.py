"""pipeline.toml: stage order from `from` links, and every mistake named before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.errors import SpecError
from executor.pipelines import load_pipeline

SPEC = """version = 1
name = "{name}"
[image]
ref = "r@sha256:{zeros}"
[run]
command = ["true"]
seed = 1
"""


def _spec(root: Path, name: str, *reads: str) -> str:
    text = SPEC.format(name=name, zeros="0" * 64)
    for i, up in enumerate(reads):
        text += f'[[inputs]]\nname = "in{i}"\nfrom = "latest:{up}:out"\nmount = "/in{i}"\n'
    (root / f"{name}.toml").write_text(text)
    return f"{name}.toml"


def _pipeline(root: Path, body: str) -> Path:
    path = root / "pipeline.toml"
    path.write_text(body)
    return path


def test_stages_run_after_what_they_read_ties_in_file_order(tmp_path: Path) -> None:
    files = [
        _spec(tmp_path, "evaluate", "train", "prepare"),
        _spec(tmp_path, "train", "prepare", "elsewhere"),  # `elsewhere` is no stage: no edge
        _spec(tmp_path, "report"),
        _spec(tmp_path, "prepare"),
    ]
    pipe = load_pipeline(
        _pipeline(tmp_path, f"version = 1\nstages = {files!r}\n".replace("'", '"'))
    )
    assert [s.name for s in pipe.stages] == ["report", "prepare", "train", "evaluate"]
    assert {s.name: s.needs for s in pipe.stages}["evaluate"] == ("train", "prepare")
    assert pipe.name == "pipeline" and len(pipe.sha256) == 64


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('version = 1\nstages = ["a.toml", "b.toml"]\n', "cycle: "),
        ('version = 1\nstages = ["a.toml", "a2.toml"]\n', "a second stage named 'a'"),
        ("version = 1\nstages = []\n", "stages: expected a list of spec files"),
        ('version = 2\nstages = ["a.toml"]\n', "version: expected 1"),
        ('version = 1\nstages = ["a.toml"]\nparams = 1\n', "unknown key 'params'"),
        ("version = = 1\n", "not TOML"),
    ],
)
def test_a_bad_pipeline_is_refused_with_the_reason(tmp_path: Path, body: str, problem: str) -> None:
    _spec(tmp_path, "a", "b")
    _spec(tmp_path, "b", "a")
    (tmp_path / "a2.toml").write_text((tmp_path / "a.toml").read_text())
    with pytest.raises(SpecError, match=problem) as info:
        load_pipeline(_pipeline(tmp_path, body))
    assert str(tmp_path / "pipeline.toml") in info.value.message

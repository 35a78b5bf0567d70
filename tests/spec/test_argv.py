"""run.command placeholders and params_as: the argv a trainer gets, checked when the spec is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor import spec
from executor.errors import SpecError
from executor.runner.container import job_argv, job_env

IMAGE = "registry.example/demo@sha256:" + "a" * 64
DIGEST = "sha256-tree-v1:" + "b" * 64


def load(
    tmp_path: Path, run: str, params: str = "", *, code: bool = True, **kwargs: object
) -> spec.RunSpec:
    code_table = '[code]\npath = "code"\nmount = "/code"\n' if code else ""
    text = (
        f'version = 1\nname = "t"\n[image]\nref = "{IMAGE}"\n[run]\n{run}\n'
        f'[[inputs]]\nname = "mnist"\npath = "data"\ndigest = "{DIGEST}"\nmount = "/data"\n'
        f"{code_table}[params]\n{params}\n"
    )
    return spec.loads(text.encode(), source=tmp_path / "spec.toml", **kwargs)  # type: ignore[arg-type]


def problems(tmp_path: Path, run: str, params: str = "", *, code: bool = True) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(tmp_path, run, params, code=code)
    return list(info.value.details)


PARAMS = 'lr = 0.1\nepochs = 20\nwidth = 20.0\nname = "a b"\nflag = true\nopt = { beta = 0.9 }\n'


def test_placeholders_fill_whole_words_and_parts_of_words(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        'command = ["python3", "train.py", "--lr", "{params.lr}", "--epochs={params.epochs}", '
        '"--width", "{params.width}", "--name", "{params.name}", "--beta", "{params.opt.beta}", '
        '"--seed", "{seed}", "--out", "{outputs}/model.pt", "--data", "{inputs.mnist}", '
        '"--flag", "{params.flag}", "{code}/x", "{params_file}", "{reports}"]\nseed = 7',
        PARAMS,
    )
    assert job_argv(s) == [
        "python3",
        "train.py",
        "--lr",
        "0.1",
        "--epochs=20",
        "--width",
        "20.0",  # a float stays a float: argparse's type=float reads it back
        "--name",
        "a b",  # one word, no shell
        "--beta",
        "0.9",
        "--seed",
        "7",
        "--out",
        "/outputs/model.pt",
        "--data",
        "/data",
        "--flag",
        "true",
        "/code/x",
        "/rexec/params.json",
        "/rexec/reports",
    ]


def test_other_braces_are_left_alone_and_doubled_ones_are_literal(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        'command = ["python3", "-c", "print({1: 2}, \'{x}\', \'{{seed}}\')", "{{params.lr}}"]\n'
        "seed = 1",
        PARAMS,
    )
    assert job_argv(s)[2:] == ["print({1: 2}, '{x}', '{seed}')", "{params.lr}"]


def test_params_as_flags(tmp_path: Path) -> None:
    params = (
        'lr = 0.1\nepochs = 3\nverbose = true\nquiet = false\nlayers = [64, 32]\nopt = "adam"\n'
    )
    s = load(tmp_path, 'command = ["python3", "t.py"]\nseed = 1\nparams_as = "flags"', params)
    assert job_argv(s) == [
        "python3",
        "t.py",
        "--epochs",
        "3",
        "--layers",
        "64",
        "32",
        "--lr",
        "0.1",
        "--opt",
        "adam",
        "--verbose",
    ]
    s = load(tmp_path, 'command = ["t"]\nseed = 1\nparams_as = "flags="', params)
    assert job_argv(s) == [
        "t",
        "--epochs=3",
        "--layers=64",
        "--layers=32",
        "--lr=0.1",
        "--opt=adam",
        "--verbose",
    ]


def test_flags_follow_params_json_order_so_a_replay_renders_the_same(tmp_path: Path) -> None:
    s = load(tmp_path, 'command = ["t"]\nseed = 1\nparams_as = "flags"', "z = 1\na = 2.0\n")
    written = json.loads(json.dumps(s.params, sort_keys=True))  # what params.json holds
    again = spec.RunSpec(**{**s.__dict__, "params": written})
    assert job_argv(s) == job_argv(again) == ["t", "--a", "2.0", "--z", "1"]


def test_param_overrides_reach_argv(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        'command = ["t", "{params.lr}"]\nseed = 1',
        PARAMS,
        overrides=[spec.parse_override("lr=0.5")],
    )
    assert job_argv(s) == ["t", "0.5"]


def test_seed_override_is_recorded_beside_the_default(tmp_path: Path) -> None:
    s = load(tmp_path, 'command = ["t", "--seed", "{seed}"]\nseed = 1', seed=42)
    assert job_argv(s) == ["t", "--seed", "42"]
    view = spec.resolved_view(s)
    assert view["seed"] == 42
    assert view["seedOverride"] == {"default": 1, "value": 42}
    assert "seedOverride" not in spec.resolved_view(load(tmp_path, 'command = ["t"]\nseed = 1'))


@pytest.mark.parametrize(
    ("run", "params", "expected"),
    [
        (
            'command = ["{params.nope}"]',
            "lr = 1",
            "run.command[0]: {params.nope}: no such parameter",
        ),
        ('command = ["{params.opt}"]', "opt = { a = 1 }", "is a table, which is not one argv"),
        ('command = ["{params.l}"]', "l = [1]", "{params.l} is an array, which is not one"),
        ('command = ["x", "{inputs.other}"]', "", "run.command[1]: {inputs.other}: no such input"),
        ('command = ["x"]\nparams_as = "yaml"', "", "run.params_as: expected one of"),
        ('command = ["x"]\nparams_as = "flags"', "t = { a = 1 }", "params.t: a table cannot"),
        ('command = ["x"]\nparams_as = "flags"', "l = []", "params.l: run.params_as"),
    ],
)
def test_bad_placeholders_are_refused_when_the_spec_is_read(
    tmp_path: Path, run: str, params: str, expected: str
) -> None:
    found = problems(tmp_path, run + "\nseed = 1", params)
    assert any(expected in p for p in found), found


def test_code_placeholder_needs_a_code_table(tmp_path: Path) -> None:
    found = problems(tmp_path, 'command = ["{code}/t.py"]\nseed = 1', code=False)
    assert any("run.command[0]: {code}: the spec has no [code] table" in p for p in found), found


def test_env_values_take_the_commands_placeholders(tmp_path: Path) -> None:
    """`SM_MODEL_DIR = "{outputs}"` reached the job as the literal text "{outputs}"."""
    s = load(
        tmp_path,
        'command = ["train"]\nseed = 7\n[run.env]\nSM_MODEL_DIR = "{outputs}"\n'
        'DATA = "{inputs.mnist}/train"\nLR = "{params.lr}"\nLITERAL = "{{outputs}}"',
        PARAMS,
    )
    env = job_env(s, run_id="r", gpus=False)
    assert env["SM_MODEL_DIR"] == "/outputs" and env["DATA"] == "/data/train"
    assert env["LR"] == "0.1" and env["LITERAL"] == "{outputs}"
    assert spec.resolved_view(s)["env"]["SM_MODEL_DIR"] == "{outputs}"  # the spec as written
    assert env["PYTHONUNBUFFERED"] == "1"  # a killed job's log keeps what it printed


def test_a_bad_env_placeholder_is_refused_by_key_and_unbuffered_can_be_turned_off(
    tmp_path: Path,
) -> None:
    found = problems(tmp_path, 'command = ["t"]\n[run.env]\nX = "{inputs.nope}"\nY = "{params.zz}"')
    assert any(p.startswith("run.env.X: {inputs.nope}: no such input") for p in found)
    assert any(p.startswith("run.env.Y: {params.zz}: no such parameter") for p in found)
    s = load(tmp_path, 'command = ["t"]\nseed = 1\n[run.env]\nPYTHONUNBUFFERED = ""')
    assert job_env(s, run_id="r", gpus=False)["PYTHONUNBUFFERED"] == ""


def test_an_unpinned_input_is_reported_as_unpinned_not_as_unknown(tmp_path: Path) -> None:
    """`{inputs.raw}: no such input (inputs: none)` was said of an input that was only
    unpinned: the one problem is the pin."""
    text = (
        f'version = 1\nname = "t"\n[image]\nref = "{IMAGE}"\n[run]\n'
        'command = ["python3", "t.py", "{inputs.raw}"]\nseed = 1\n'
        '[[inputs]]\nname = "raw"\npath = "data"\nmount = "/data"\n'
    )
    with pytest.raises(SpecError) as info:
        spec.loads(text.encode(), source=tmp_path / "spec.toml")
    (only,) = info.value.details
    assert only.startswith("inputs[0].digest: missing: the input is not pinned")

"""Run spec v1 parsing: every key, every error path."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor import spec
from executor.errors import ExitCode, SpecError

DIGEST = "sha256-tree-v1:" + "ab" * 32
IMAGE = "127.0.0.1:5000/rexec/base@sha256:" + "cd" * 32

FULL = f"""
version = 1
name = "demo"

[image]
ref = "{IMAGE}"

[run]
command = ["python3", "/code/train.py"]
workdir = "/code"
env = {{ MODE = "fast" }}
secrets = ["WANDB_API_KEY"]
seed = 42
timeout = "10m"
user = "1000:1000"

[[inputs]]
name = "data"
path = "data"
digest = "{DIGEST}"
mount = "/data"

[code]
path = "code"
mount = "/src"

[outputs]
mount = "/out"

[params]
learning_rate = 0.5
epochs = 10
layers = [16, 8]

[resources]
cpus = 2
memory = "1g"
gpus = ["GPU-12345678-aaaa-bbbb-cccc-1234567890ab"]
pids = 128

[determinism]
frameworks = ["numpy", "torch"]
strict = false

[signing]
method = "sigstore"
key = "keys/k.pem"

[security]
allow_network = true

[[replay.tolerance]]
pattern = "*.npz"
rtol = 1e-6
atol = 0

[[replay.tolerance]]
pattern = "metrics.json"
atol = 0.01
"""


def parse(text: str, tmp_path: Path, **kwargs: object) -> spec.RunSpec:
    return spec.loads(text.encode(), source=tmp_path / "spec.toml", **kwargs)  # type: ignore[arg-type]


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse(text, tmp_path)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert str(tmp_path / "spec.toml") in info.value.message
    return list(info.value.details)


def minimal(**tables: str) -> str:
    base = {
        "top": 'version = 1\nname = "m"\n',
        "image": f'[image]\nref = "{IMAGE}"\n',
        "run": '[run]\ncommand = ["true"]\nseed = 1\n',
    }
    base.update(tables)
    return "\n".join(base.values())


def test_every_key_is_read(tmp_path: Path) -> None:
    s = parse(FULL, tmp_path)
    assert (s.version, s.name) == (1, "demo")
    assert s.image.ref == IMAGE and s.image.build is None
    assert s.run.command == ("python3", "/code/train.py")
    assert s.run.workdir == "/code"
    assert dict(s.run.env) == {"MODE": "fast"}
    assert s.run.secrets == ("WANDB_API_KEY",)
    assert s.run.seed == 42
    assert s.run.timeout_s == 600.0
    assert s.run.user == "1000:1000"
    assert s.inputs == (spec.InputSpec("data", tmp_path / "data", DIGEST, "/data"),)
    assert s.code == spec.CodeSpec(tmp_path / "code", "/src")
    assert s.outputs_mount == "/out"
    assert s.params == {"learning_rate": 0.5, "epochs": 10, "layers": [16, 8]}
    assert s.resources == spec.Resources(
        cpus=2.0,
        memory_bytes=1 << 30,
        gpus=("GPU-12345678-aaaa-bbbb-cccc-1234567890ab",),
        pids=128,
    )
    assert s.determinism == spec.Determinism(("numpy", "torch"), strict=False)
    assert s.signing == spec.Signing("sigstore", tmp_path / "keys" / "k.pem")
    assert s.security == spec.Security(allow_network=True)
    assert s.tolerances == (
        spec.Tolerance("*.npz", rtol=1e-6, atol=0.0),
        spec.Tolerance("metrics.json", rtol=0.0, atol=0.01),
    )
    assert s.base_dir == tmp_path


def test_defaults(tmp_path: Path) -> None:
    s = parse(minimal(), tmp_path)
    assert s.run.workdir == "/"
    assert s.run.timeout_s == 3600.0
    assert s.inputs == () and s.code is None
    assert s.outputs_mount == "/outputs"
    assert s.resources == spec.Resources(cpus=None, memory_bytes=None, gpus=None, pids=512)
    assert s.determinism == spec.Determinism(("numpy",), strict=True)
    assert s.signing == spec.Signing("key", None)
    assert s.security == spec.Security()


def test_build_image(tmp_path: Path) -> None:
    text = minimal(
        image='[image]\nbuild = { dockerfile = "img/Dockerfile", context = "img", '
        'args = { A = "1" }, target = "train" }\n'
    )
    s = parse(text, tmp_path)
    assert s.image.build == spec.BuildSpec(
        tmp_path / "img" / "Dockerfile", tmp_path / "img", {"A": "1"}, "train"
    )


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ({"top": 'name = "m"\n'}, "version: required key is missing"),
        ({"top": 'version = 2\nname = "m"\n'}, "version: this rexec reads spec version 1"),
        ({"top": 'version = 1\nname = "bad name!"\n'}, "name: use letters"),
        ({"top": 'version = 1\nname = "m"\ncolour = "red"\n'}, "colour: unknown key"),
        ({"image": "[image]\n"}, "image: set exactly one of"),
        ({"image": '[image]\nref = "python:3.11"\n'}, "image.ref: 'python:3.11' is not pinned"),
        (
            {"image": f'[image]\nref = "{IMAGE}"\nbuild = {{ dockerfile = "D", context = "." }}\n'},
            "image: set exactly one of",
        ),
        (
            {"image": '[image]\nbuild = { dockerfile = "D" }\n'},
            "image.build.context: required key is missing",
        ),
        (
            {"run": '[run]\ncommand = "python train.py"\nseed = 1\n'},
            "run.command: expected an array, got str",
        ),
        ({"run": "[run]\ncommand = []\nseed = 1\n"}, "run.command: must not be empty"),
        (
            {"run": '[run]\ncommand = ["x", 1]\nseed = 1\n'},
            "run.command: expected an array of strings",
        ),
        ({"run": '[run]\ncommand = ["x"]\n'}, "run.seed: required key is missing"),
        (
            {"run": '[run]\ncommand = ["x"]\nseed = true\n'},
            "run.seed: expected an integer, got a boolean",
        ),
        ({"run": '[run]\ncommand = ["x"]\nseed = -1\n'}, "run.seed: expected an integer in"),
        (
            {"run": '[run]\ncommand = ["x"]\nseed = 1\ntimeout = "soon"\n'},
            "run.timeout: expected seconds or a duration",
        ),
        (
            {"run": '[run]\ncommand = ["x"]\nseed = 1\nworkdir = "rel"\n'},
            "run.workdir: expected an absolute container path",
        ),
        (
            {"run": '[run]\ncommand = ["x"]\nseed = 1\nenv = { A = 1 }\n'},
            "run.env.A: expected a string value",
        ),
        (
            {"run": '[run]\ncommand = ["x"]\nseed = 1\nenv = { REXEC_SEED = "1" }\n'},
            "run.env.REXEC_SEED: names starting with REXEC_",
        ),
        (
            {"run": '[run]\ncommand = ["x"]\nseed = 1\nenv = { HF_TOKEN = "x" }\n'},
            "run.env.HF_TOKEN: looks like a secret",
        ),
        (
            {"run": '[run]\ncommand = ["x"]\nseed = 1\nsecrets = ["1BAD"]\n'},
            "run.secrets[0]: expected an environment variable name",
        ),
        ({"run": '[run]\ncommand = ["x"]\nseed = 1\nshell = true\n'}, "run.shell: unknown key"),
        (
            {"inputs": '[[inputs]]\nname = "d"\npath = "d"\ndigest = "sha256:00"\nmount = "/d"\n'},
            "inputs[0].digest: expected 'sha256-tree-v1:<64 hex>'",
        ),
        (
            {"inputs": f'[[inputs]]\nname = "d"\npath = "d"\ndigest = "{DIGEST}"\n'},
            "inputs[0].mount: required key is missing",
        ),
        (
            {
                "inputs": f'[[inputs]]\nname = "d"\npath = "d"\ndigest = "{DIGEST}"\nmount = "/d"\nx = 1\n'
            },
            "inputs[0].x: unknown key",
        ),
        (
            {
                "inputs": f'[[inputs]]\nname = "d"\npath = "d"\ndigest = "{DIGEST}"\nmount = "/d"\n'
                f'[[inputs]]\nname = "d"\npath = "e"\ndigest = "{DIGEST}"\nmount = "/e"\n'
            },
            "inputs[1].name: 'd' is used twice",
        ),
        (
            {
                "inputs": f'[[inputs]]\nname = "d"\npath = "d"\ndigest = "{DIGEST}"\nmount = "/outputs"\n'
            },
            "outputs.mount: /outputs is already the target of inputs[0].mount",
        ),
        (
            {"top": 'version = 1\nname = "m"\ninputs = "data"\n'},
            "inputs: expected an array of tables",
        ),
        (
            {"res": "[resources]\ncpus = 0\n"},
            "resources.cpus: expected a number of CPUs in (0, 4096]",
        ),
        ({"res": '[resources]\nmemory = "lots"\n'}, "resources.memory: expected bytes or a size"),
        ({"res": '[resources]\ngpus = "some"\n'}, 'resources.gpus: expected "all"'),
        ({"res": '[resources]\ngpus = ["0"]\n'}, "resources.gpus: expected GPU UUIDs"),
        ({"res": "[resources]\npids = 2\n"}, "resources.pids: expected from 16 to 4194304"),
        (
            {"det": '[determinism]\nframeworks = ["caffe"]\n'},
            "determinism.frameworks[0]: expected one of",
        ),
        ({"sig": '[signing]\nmethod = "gpg"\n'}, "signing.method: expected one of"),
        (
            {"sec": "[security]\nallow_everything = true\n"},
            "security.allow_everything: unknown key",
        ),
        (
            {"sec": "[security]\nallow_network = true\nallow_host_network = true\n"},
            "security.allow_host_network: both allow_network (a bridge) and allow_host_network",
        ),
        (
            {"par": "[params]\nwhen = 1979-05-27\n"},
            "params.when: date values cannot be passed as JSON",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, tables: dict[str, str], expected: str) -> None:
    details = problems(minimal(**tables), tmp_path)
    assert any(d.startswith(expected) for d in details), details


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = 'version = 3\nname = "x y"\n[image]\nref = "alpine"\n[run]\ncommand = []\n'
    details = problems(text, tmp_path)
    keys = sorted(d.split(":")[0] for d in details)
    assert keys == ["image.ref", "name", "run.command", "run.seed", "version"]


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not valid TOML"):
        parse("version = = 1", tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        spec.load(tmp_path / "nope.toml")


def test_param_overrides_keep_the_default(tmp_path: Path) -> None:
    overrides = [spec.parse_override("learning_rate=0.1"), spec.parse_override("epochs=3")]
    s = parse(FULL, tmp_path, overrides=overrides)
    assert s.params["learning_rate"] == 0.1 and s.params["epochs"] == 3
    assert s.overrides == (
        spec.ParamOverride("learning_rate", 0.5, 0.1),
        spec.ParamOverride("epochs", 10, 3),
    )
    view = spec.resolved_view(s)
    assert view["paramOverrides"] == [
        {"key": "learning_rate", "default": 0.5, "value": 0.1},
        {"key": "epochs", "default": 10, "value": 3},
    ]


def test_override_values_are_toml_with_string_fallback() -> None:
    assert spec.parse_override("a=true") == ("a", True)
    assert spec.parse_override("a=[1, 2]") == ("a", [1, 2])
    assert spec.parse_override("opt=adam") == ("opt", "adam")
    assert spec.parse_override('s="x=y"') == ("s", "x=y")
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        spec.parse_override("novalue")


def test_unknown_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        parse(FULL, tmp_path, overrides=[("lr", 0.1)])
    assert "--param lr: no such parameter in [params]" in info.value.details[0]


@pytest.mark.parametrize(
    ("value", "seconds"), [(30, 30.0), (1.5, 1.5), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0)]
)
def test_durations(value: int | float | str, seconds: float) -> None:
    assert spec.parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "size"),
    [(1024, 1024), ("512m", 512 << 20), ("2g", 2 << 30), ("2GiB", 2 << 30), ("64k", 64 << 10)],
)
def test_sizes(value: int | str, size: int) -> None:
    assert spec.parse_size(value) == size


def test_resolved_view_has_no_host_paths(tmp_path: Path) -> None:
    view = spec.resolved_view(parse(FULL, tmp_path))
    assert str(tmp_path) not in repr(view)
    assert view["inputs"] == [{"name": "data", "digest": DIGEST, "mount": "/data"}]
    assert view["security"]["allowNetwork"] is True
    assert view["replay"]["tolerance"][0] == {"pattern": "*.npz", "rtol": 1e-6, "atol": 0.0}


def test_the_engine_is_read_from_a_spec_not_yet_valid_and_checked_in_a_valid_one(
    tmp_path: Path,
) -> None:
    assert spec.engine_named({"runtime": {"engine": "podman"}}) == "podman"
    assert spec.engine_named({"runtime": "podman"}) is None  # not a table: the parser says so
    assert spec.engine_named({}) is None
    assert parse(minimal(runtime='[runtime]\nengine = "podman"\n'), tmp_path).engine == "podman"
    found = problems(minimal(runtime='[runtime]\nengine = "lxc"\n'), tmp_path)
    assert any(p.startswith("runtime.engine: expected one of") for p in found), found


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('from = "run:20261201T000000Z-a-abcdef:model"\nmount = "/m"', None),
        ('from = "latest:prepare:dataset"\nmount = "/m"', None),
        ('from = "run:x:../../etc"\nmount = "/m"', "inputs[0].from: expected"),
        ('from = "run:x:/abs"\nmount = "/m"', "inputs[0].from: expected"),
        ('from = "somewhere"\nmount = "/m"', "inputs[0].from: expected"),
        ('from = "run:x:m"\npath = "d"\nmount = "/m"', "inputs[0]: set `path` or `from`"),
    ],
)
def test_an_input_may_come_from_another_run(
    tmp_path: Path, entry: str, expected: str | None
) -> None:
    text = minimal(inputs=f'[[inputs]]\nname = "m"\n{entry}\n')
    if expected is None:
        (item,) = parse(text, tmp_path).inputs
        assert item.from_ref is not None and item.digest == spec.UNRESOLVED_DIGEST
    else:
        assert any(p.startswith(expected) for p in problems(text, tmp_path))


@pytest.mark.parametrize(
    ("table", "network"),
    [("", "none"), ("allow_network = true", "bridge"), ("allow_host_network = true", "host")],
)
def test_the_network_is_none_unless_opted_in(tmp_path: Path, table: str, network: str) -> None:
    s = parse(minimal(sec=f"[security]\n{table}\n"), tmp_path)
    assert s.security.network == network
    assert spec.resolved_view(s)["security"]["allowHostNetwork"] is (network == "host")

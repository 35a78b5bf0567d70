"""Bad and hostile spec values: each is refused at parse time, exit 2, naming the key.

Every case here once started a container (or ran as root) before failing with
the engine's raw text, or passed silently. Each row is a spec fragment and the
start of the line the error must hold, so the message names the key and says
what was expected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from executor import spec
from executor.errors import ExitCode, SpecError

IMAGE = "registry.example/train@sha256:" + "a" * 64
DIGEST = "sha256-tree-v1:" + "b" * 64
RUN = '[run]\ncommand = ["true"]\nseed = 1\n'


def _spec(run: str = RUN, extra: str = "") -> str:
    return f'version = 1\nname = "m"\n[image]\nref = "{IMAGE}"\n{run}{extra}'


def _run(line: str) -> str:
    return RUN + line + "\n"


def _input(mount: str, name: str = "d") -> str:
    return f'[[inputs]]\nname = "{name}"\npath = "{name}"\ndigest = "{DIGEST}"\nmount = "{mount}"\n'


CASES = [
    # root cause 2: root without the opt-in, and names resolved in a hostile image
    ("user-00", _spec(_run('user = "00"')), "run.user: "),
    ("user-plus0", _spec(_run('user = "+0"')), "run.user: "),
    ("user-0000:0", _spec(_run('user = "0000:0"')), "run.user: uid 0"),
    ("user-0", _spec(_run('user = "0"')), "run.user: uid 0"),
    ("user-root", _spec(_run('user = "root"')), "run.user: "),
    ("user-nobody", _spec(_run('user = "nobody"')), "run.user: expected a numeric"),
    ("user-gid0", _spec(_run('user = "1000:0"')), "run.user: gid 0"),
    ("user-space", _spec(_run('user = " 1000"')), "run.user: "),
    ("user-negative", _spec(_run('user = "-1"')), "run.user: "),
    ("user-huge", _spec(_run('user = "4294967295"')), "run.user: ids go up to"),
    ("user-three", _spec(_run('user = "1:2:3"')), "run.user: "),
    # root cause 4: names rexec sets cannot be replaced by env or secrets
    ("secret-seed", _spec(_run('secrets = ["REXEC_SEED"]')), "run.secrets[0]: REXEC_SEED"),
    ("secret-hashseed", _spec(_run('secrets = ["PYTHONHASHSEED"]')), "run.secrets[0]: PYTHON"),
    ("secret-outputs", _spec(_run('secrets = ["REXEC_OUTPUTS"]')), "run.secrets[0]: REXEC_OUT"),
    ("secret-pythonpath", _spec(_run('secrets = ["PYTHONPATH"]')), "run.secrets[0]: PYTHONPATH"),
    ("secret-home", _spec(_run('secrets = ["HOME"]')), "run.secrets[0]: HOME"),
    ("secret-cuda", _spec(_run('secrets = ["CUDA_VISIBLE_DEVICES"]')), "run.secrets[0]: CUDA"),
    ("env-omp", _spec(_run('env = { OMP_NUM_THREADS = "8" }')), "run.env.OMP_NUM_THREADS: set by"),
    ("env-hashseed", _spec(_run('env = { PYTHONHASHSEED = "1" }')), "run.env.PYTHONHASHSEED: set"),
    ("env-cublas", _spec(_run('env = { CUBLAS_WORKSPACE_CONFIG = "x" }')), "run.env.CUBLAS"),
    ("env-rexec", _spec(_run('env = { REXEC_RUN_ID = "x" }')), "run.env.REXEC_RUN_ID: names"),
    ("env-home", _spec(_run('env = { HOME = "/root" }')), "run.env.HOME: set by rexec"),
    ("env-password", _spec(_run('env = { DB_PASSWORD = "x" }')), "run.env.DB_PASSWORD: looks"),
    ("env-aws", _spec(_run('env = { AWS_SECRET_ACCESS_KEY = "x" }')), "run.env.AWS_SECRET_ACC"),
    # root cause 9: values the engine would choke on after creating a container
    ("timeout-nan", _spec(_run("timeout = nan")), "run.timeout: expected a finite"),
    ("timeout-inf", _spec(_run("timeout = inf")), "run.timeout: expected a finite"),
    ("timeout-huge", _spec(_run("timeout = 1e300")), "run.timeout: expected a positive duration"),
    ("timeout-zero", _spec(_run("timeout = 0")), "run.timeout: expected a positive duration"),
    ("timeout-negative", _spec(_run("timeout = -5")), "run.timeout: expected a positive"),
    ("timeout-31d", _spec(_run('timeout = "745h"')), "run.timeout: expected a positive duration"),
    ("cpus-nan", _spec(extra="[resources]\ncpus = nan\n"), "resources.cpus: expected a number"),
    ("cpus-inf", _spec(extra="[resources]\ncpus = inf\n"), "resources.cpus: expected a number"),
    ("cpus-1e6", _spec(extra="[resources]\ncpus = 1e6\n"), "resources.cpus: expected a number"),
    ("cpus-neg", _spec(extra="[resources]\ncpus = -1\n"), "resources.cpus: expected a number"),
    ("memory-neg", _spec(extra="[resources]\nmemory = -1\n"), "resources.memory: expected at"),
    ("memory-1k", _spec(extra='[resources]\nmemory = "1k"\n'), "resources.memory: expected at"),
    ("memory-0", _spec(extra="[resources]\nmemory = 0\n"), "resources.memory: expected at least"),
    ("memory-eb", _spec(extra='[resources]\nmemory = "9000t"\n'), "resources.memory: expected"),
    ("pids-max", _spec(extra=f"[resources]\npids = {2**63 - 1}\n"), "resources.pids: expected"),
    ("pids-1", _spec(extra="[resources]\npids = 1\n"), "resources.pids: expected from 16"),
    # mount targets the engine or rexec owns, and mounts that nest
    *(
        (
            f"mount-{target.strip('/').replace('/', '-')}",
            _spec(extra=_input(target)),
            "inputs[0].mount: ",
        )
        for target in (
            "/proc",
            "/dev",
            "/sys",
            "/etc",
            "/tmp",
            "/rexec",
            "/opt/rexec",
            "/proc/self",
            "/etc/passwd",
            "/rexec/params.json",
            "/opt/rexec/x",
        )
    ),
    ("outputs-tmp", _spec(extra='[outputs]\nmount = "/tmp/out"\n'), "outputs.mount: /tmp/out is"),
    ("code-etc", _spec(extra='[code]\npath = "c"\nmount = "/etc"\n'), "code.mount: /etc is"),
    ("nested-inputs", _spec(extra=_input("/data") + _input("/data/sub", "e")), "inputs[1].mount"),
    ("nested-outputs", _spec(extra=_input("/outputs/in")), "outputs.mount: /outputs nests"),
    ("outputs-in-input", _spec(extra=_input("/w") + '[outputs]\nmount = "/w/o"\n'), "outputs"),
    ("mount-dotdot", _spec(extra=_input("/data/../etc")), "inputs[0].mount: expected an absolute"),
    ("mount-relative", _spec(extra=_input("data")), "inputs[0].mount: expected an absolute"),
    ("mount-nul", _spec(extra=_input("/da\\u0000ta")), "inputs[0].mount: expected an absolute"),
    # NUL where no argv or environment can carry it
    ("argv-nul", _spec('[run]\ncommand = ["py\\u0000thon"]\nseed = 1\n'), "run.command[0]: holds"),
    ("env-nul", _spec(_run('env = { MODE = "a\\u0000b" }')), "run.env.MODE: holds a NUL"),
    ("workdir-nul", _spec(_run('workdir = "/co\\u0000de"')), "run.workdir: expected an absolute"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_spec_value_is_refused_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    source = tmp_path / "spec.toml"
    with pytest.raises(SpecError) as info:
        spec.loads(text.encode(), source=source)
    error = info.value
    assert error.exit_code == ExitCode.BAD_INPUT
    assert str(source) in error.message
    assert any(d.startswith(expected) for d in error.details), error.details
    assert error.hint  # says where every key is documented


def test_a_numeric_user_is_recorded_as_uid_and_gid(tmp_path: Path) -> None:
    """A lone UID gets GID = UID: the engine would give an unknown UID the group 0."""
    parsed = spec.loads(_spec(_run('user = "1000"')).encode(), source=tmp_path / "s.toml")
    assert parsed.run.user == "1000:1000"
    allowed = _spec(_run('user = "0"'), "[security]\nallow_root = true\n")
    assert spec.loads(allowed.encode(), source=tmp_path / "s.toml").run.user == "0:0"


PARAMS = _spec(extra='[params]\nlr = 20.0\nepochs = 3\nopt = "adam"\nnorm = true\n')


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("epochs=2.5", "--param epochs: expected an integer like the default 3"),
        ("opt=1", "--param opt: expected a string like the default 'adam'"),
        ("norm=1", "--param norm: expected a boolean like the default True"),
        ("lr=fast", "--param lr: expected a number like the default 20.0"),
        ("epochs=true", "--param epochs: expected an integer"),
    ],
)
def test_param_overrides_keep_the_default_type(
    tmp_path: Path, override: str, expected: str
) -> None:
    with pytest.raises(SpecError) as info:
        spec.loads(
            PARAMS.encode(), source=tmp_path / "s.toml", overrides=[spec.parse_override(override)]
        )
    assert any(d.startswith(expected) for d in info.value.details), info.value.details


def test_a_whole_number_overrides_a_float_as_a_float(tmp_path: Path) -> None:
    parsed = spec.loads(PARAMS.encode(), source=tmp_path / "s.toml", overrides=[("lr", 1)])
    assert parsed.params["lr"] == 1.0 and type(parsed.params["lr"]) is float

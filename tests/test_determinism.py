"""determinism_env: which variables, for which frameworks, and that each is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.determinism import FRAMEWORKS, REASONS, determinism_env
from executor.errors import InputError

DOC = Path(__file__).resolve().parents[1] / "docs" / "determinism.md"
ALWAYS = {
    "REXEC_SEED",
    "PYTHONHASHSEED",
    "REXEC_DETERMINISM_FRAMEWORKS",
    "REXEC_DETERMINISM_STRICT",
    "REXEC_DETERMINISM_AUTO",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_DEVICE_ORDER",
}


def test_baseline_without_frameworks() -> None:
    env = determinism_env(seed=7, frameworks=[], strict=True)
    assert set(env) == ALWAYS
    assert env["REXEC_SEED"] == env["PYTHONHASHSEED"] == "7"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["REXEC_DETERMINISM_STRICT"] == "1"
    assert env["REXEC_DETERMINISM_AUTO"] == "1"
    assert (
        determinism_env(seed=7, frameworks=[], strict=True, automatic=False)[
            "REXEC_DETERMINISM_AUTO"
        ]
        == "0"
    )


@pytest.mark.parametrize(
    ("framework", "expected"),
    [
        ("numpy", {}),
        ("torch", {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}),
        ("tensorflow", {"TF_DETERMINISTIC_OPS": "1", "TF_ENABLE_ONEDNN_OPTS": "0"}),
        ("jax", {"XLA_FLAGS": "--xla_gpu_deterministic_ops=true"}),
    ],
)
def test_each_framework_adds_its_own_switches(framework: str, expected: dict[str, str]) -> None:
    env = determinism_env(seed=1, frameworks=[framework], strict=False, cpu_threads=4)
    assert {k: v for k, v in env.items() if k not in ALWAYS} == expected
    assert env["REXEC_DETERMINISM_FRAMEWORKS"] == framework
    assert env["OMP_NUM_THREADS"] == "4"
    assert env["REXEC_DETERMINISM_STRICT"] == "0"


def test_gpus_add_cublas_and_nccl_pins() -> None:
    env = determinism_env(seed=1, frameworks=["numpy"], strict=True, gpus=True)
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (env["NCCL_ALGO"], env["NCCL_PROTO"], env["NCCL_NVLS_ENABLE"]) == ("Ring", "Simple", "0")


def test_framework_list_is_recorded_sorted_and_deduplicated() -> None:
    env = determinism_env(seed=1, frameworks=["torch", "numpy", "torch"], strict=True)
    assert env["REXEC_DETERMINISM_FRAMEWORKS"] == "numpy,torch"


def test_every_variable_ever_set_has_a_reason_and_is_documented() -> None:
    env = determinism_env(seed=1, frameworks=list(FRAMEWORKS), strict=True, gpus=True)
    assert set(env) == set(REASONS)
    text = DOC.read_text()
    missing = [k for k in env if f"`{k}`" not in text]
    assert not missing, f"docs/determinism.md does not document {missing}"


@pytest.mark.parametrize("seed", [-1, 2**32, True, "3"])
def test_seed_must_fit_pythonhashseed(seed: object) -> None:
    with pytest.raises(InputError, match="seed"):
        determinism_env(seed=seed, frameworks=[], strict=True)  # type: ignore[arg-type]


def test_unknown_framework_names_the_key_and_the_choices() -> None:
    with pytest.raises(InputError) as info:
        determinism_env(seed=1, frameworks=["pytorch"], strict=True)
    assert "[determinism] frameworks" in info.value.message and "'pytorch'" in info.value.message
    assert "torch" in (info.value.hint or "")


def test_thread_count_must_be_positive() -> None:
    with pytest.raises(InputError):
        determinism_env(seed=1, frameworks=[], strict=True, cpu_threads=0)

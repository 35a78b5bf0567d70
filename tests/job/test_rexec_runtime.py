"""seed_everything as a job sees it: imported from the helper folder in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from executor.determinism import HELPER_DIR, determinism_env

HELPER = HELPER_DIR / "rexec_runtime.py"

DRAW = """
import json, random, sys
from rexec_runtime import seed_everything
r = seed_everything()
out = {"seeded": list(r.seeded), "random": [random.random() for _ in range(3)],
       "set_order": list({"alpha", "beta", "gamma", "delta"}), "warnings": list(r.warnings),
       "generator": r.generator is not None}
if "numpy" in r.seeded:
    import numpy
    out["numpy"] = numpy.random.rand(3).tolist()
    r.worker_init_fn(2)
    out["worker_numpy"] = numpy.random.rand(1).tolist()
print(json.dumps(out))
"""


def run_job(tmp_path: Path, *, seed: int, frameworks: list[str], tag: str) -> dict[str, Any]:
    """Start a job the way rexec does: determinism env set before the interpreter starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REXEC_", "PYTHONHASHSEED"))}
    env |= determinism_env(seed=seed, frameworks=frameworks, strict=True)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HELPER_DIR), env.get("PYTHONPATH")]))
    env["REXEC_DETERMINISM_REPORT"] = str(tmp_path / tag / "determinism.json")
    proc = subprocess.run(
        [sys.executable, "-c", DRAW], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_helper_uses_only_the_standard_library() -> None:
    tree = ast.parse(HELPER.read_text())
    modules = {
        str(node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
        if not (isinstance(node, ast.ImportFrom) and node.level)
    }
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}
    assert not (HELPER_DIR / "__init__.py").exists()


def test_same_seed_same_draws_and_a_report(tmp_path: Path) -> None:
    a = run_job(tmp_path, seed=1234, frameworks=[], tag="a")
    b = run_job(tmp_path, seed=1234, frameworks=[], tag="b")
    c = run_job(tmp_path, seed=1235, frameworks=[], tag="c")
    assert a["random"] == b["random"] != c["random"]
    assert a["set_order"] == b["set_order"]  # PYTHONHASHSEED took effect
    assert a["warnings"] == []
    report = json.loads((tmp_path / "a" / "determinism.json").read_text())
    assert report["schema"] == "rexec.determinism-report/v1"
    assert report["seed"] == 1234 and report["seeded"] == ["random"] and report["strict"] is True
    assert report["environment"]["PYTHONHASHSEED"] == "1234"
    # The stdlib draw must equal a generator seeded by hand with the same seed.
    import random

    ref = random.Random(1234)
    assert a["random"] == [ref.random() for _ in range(3)]


def test_numpy_draws_repeat(tmp_path: Path) -> None:
    np = pytest.importorskip(
        "numpy", reason="numpy is not installed in this interpreter (it is no rexec dependency)"
    )
    a = run_job(tmp_path, seed=99, frameworks=["numpy"], tag="a")
    b = run_job(tmp_path, seed=99, frameworks=["numpy"], tag="b")
    assert a["seeded"] == ["random", "numpy"]
    assert a["numpy"] == b["numpy"] == np.random.RandomState(99).rand(3).tolist()
    # Without torch a worker's seed is base seed + worker id.
    assert a["worker_numpy"] == np.random.RandomState(99 + 2).rand(1).tolist()
    report = json.loads((tmp_path / "a" / "determinism.json").read_text())
    assert report["settings"]["numpy.version"] == np.__version__


def test_requested_but_missing_framework_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    out = run_job(tmp_path, seed=5, frameworks=["tensorflow", "jax"], tag="w")
    warnings = " ".join(out["warnings"])
    assert "jax has no global RNG" in warnings
    assert out["seeded"][0] == "random" and out["generator"] is False


def test_no_seed_anywhere_is_an_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
    env["PYTHONPATH"] = str(HELPER_DIR)
    proc = subprocess.run(
        [sys.executable, "-c", "from rexec_runtime import seed_everything; seed_everything()"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "REXEC_SEED is not set" in proc.stderr


def start_job(
    tmp_path: Path,
    code: str,
    *,
    seed: int = 3,
    frameworks: tuple[str, ...] = ("numpy",),
    extra_path: str = "",
    automatic: bool = True,
) -> tuple[str, dict[str, Any] | None]:
    """A job started as rexec starts one, whose code never mentions rexec."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REXEC_", "PYTHONHASHSEED"))}
    env |= determinism_env(seed=seed, frameworks=list(frameworks), strict=True, automatic=automatic)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HELPER_DIR), extra_path]))
    report = tmp_path / f"report-{seed}-{len(code)}" / "determinism.json"
    env["REXEC_DETERMINISM_REPORT"] = str(report)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout, json.loads(report.read_text()) if report.exists() else None


UNCOOPERATIVE = "import random, numpy; print(random.random(), numpy.random.rand())"


def test_a_job_that_never_seeds_is_seeded_on_import(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    first, report = start_job(tmp_path, UNCOOPERATIVE)
    again, _ = start_job(tmp_path, UNCOOPERATIVE + " ")
    other, _ = start_job(tmp_path, UNCOOPERATIVE, seed=4)
    assert first == again and first != other
    assert report is not None and report["mode"] == "automatic"
    assert report["seeded"] == ["random", "numpy"] and report["pending"] == []


def test_a_framework_the_job_never_imports_is_never_loaded(tmp_path: Path) -> None:
    out, report = start_job(tmp_path, "import sys; print('numpy' in sys.modules)")
    assert out.strip() == "False"
    assert report is not None and report["pending"] == ["numpy"]


def test_the_images_own_sitecustomize_still_runs(tmp_path: Path) -> None:
    image_site = tmp_path / "image-site"
    image_site.mkdir()
    (image_site / "sitecustomize.py").write_text("import builtins\nbuiltins.IMAGE_HOOK = 1\n")
    out, report = start_job(
        tmp_path,
        "import builtins; print(getattr(builtins, 'IMAGE_HOOK', 0))",
        extra_path=str(image_site),
    )
    assert out.strip() == "1" and report is not None


def test_a_report_from_the_helper_wins_and_children_leave_it_alone(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    code = (
        "import subprocess, sys\n"
        "from rexec_runtime import seed_everything\n"
        "seed_everything()\n"
        "import numpy\n"
        "subprocess.run([sys.executable, '-c', 'import numpy'], check=True)\n"
    )
    _, report = start_job(tmp_path, code)
    assert report is not None and report["mode"] == "helper"


def test_automatic_false_leaves_the_job_alone(tmp_path: Path) -> None:
    out, report = start_job(tmp_path, "import random; print(random.random())", automatic=False)
    again, _ = start_job(tmp_path, "import random; print(random.random()) ", automatic=False)
    assert report is None and out != again  # unseeded: two starts draw differently

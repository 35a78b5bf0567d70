"""`rexec env` through the real CLI entry point, on this (GPU-less) host."""

from __future__ import annotations

import json

import pytest

from executor.cli import main
from executor.cli.env import summary
from executor.host import capture_host
from tests.host.nvml_fixtures import replay


def test_env_json_is_one_document_with_the_host_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--json", "--no-engine"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "rexec.host/v1"
    assert doc["engine"] == {"available": False, "reason": "not queried (--no-engine)"}
    assert doc["gpu"]["available"] in (True, False)


def test_env_human_summary_mentions_each_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--no-engine"]) == 0
    out = capsys.readouterr().out
    for label in ("GPUs:", "CPU:", "Memory:", "OS:", "Engine:"):
        assert label in out


def test_summary_lists_gpus_and_mig_by_uuid() -> None:
    nvml, doc = replay("a100-mig")
    host = capture_host(nvml=nvml, engine={"available": False, "reason": "test"})
    text = summary(host)
    for key in ("gpu0", "gpu0.mig0", "gpu0.mig1", "gpu0.mig2"):
        assert doc["calls"]["nvmlDeviceGetUUID"][key]["ok"] in text
    assert doc["calls"]["nvmlSystemGetDriverVersion"][""]["ok"] in text


def test_helper_path_lets_a_job_import_the_helper_outside_its_container(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import os
    import subprocess
    import sys

    assert main(["env", "--helper-path"]) == 0
    folder = capsys.readouterr().out.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")} | {
        "PYTHONPATH": folder
    }
    out = subprocess.run(
        [sys.executable, "-c", "from rexec_runtime import seed_everything; "
         "print(seed_everything(5, report_path=None).seed)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "5"

"""Helpers for hardware tests: load an NVML fixture and read its recorded answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from executor.host import load_nvml
from executor.host.nvml_replay import ReplayNvml

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_NAMES = ("dgx-h100-8gpu-nvswitch", "workstation-rtx4090-pcie", "a100-mig")


def load_fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return doc


def answer(doc: dict[str, Any], fn: str, key: str = "") -> Any:
    """The recorded value of one call, straight from the fixture (independent of rexec)."""
    return doc["calls"][fn][key]["ok"]


def replay(name: str) -> tuple[ReplayNvml, dict[str, Any]]:
    """A fresh replay of fixture ``name`` raising real ``pynvml`` errors, and the fixture."""
    doc = load_fixture(name)
    return ReplayNvml(doc, real=load_nvml()), doc

"""Replay hand-built NVML fixtures through rexec's capture code and real pynvml errors.

Expected values are read from the fixture (what NVML answered) and converted
here by the rules NVML documents, never copied from rexec's output.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest

from executor.host import capture_gpus
from tests.host.nvml_fixtures import FIXTURE_NAMES, answer, replay

# `nvidia-smi topo -m` legend, keyed by NVML_TOPOLOGY_* level (nvml.h).
SMI_LEGEND = {10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}


def handles(doc: dict[str, Any]) -> list[str]:
    count = answer(doc, "nvmlDeviceGetCount")
    return [answer(doc, "nvmlDeviceGetHandleByIndex", str(i))["handle"] for i in range(count)]


def bits(words: list[int]) -> set[int]:
    return {w * 64 + b for w, word in enumerate(words) for b in range(64) if word >> b & 1}


def parse_cpulist(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def recorded_error(doc: dict[str, Any], fn: str, key: str) -> str | None:
    entry = doc["calls"][fn][key]
    return entry["error"]["name"] if "error" in entry else None


def camel(nvml_error_name: str) -> str:
    """NVML_ERROR_NOT_SUPPORTED → NotSupported (pynvml's class-name rule)."""
    words = nvml_error_name.removeprefix("NVML_ERROR_").split("_")
    return "".join(w.capitalize() for w in words)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_says_it_is_hand_built(name: str) -> None:
    _, doc = replay(name)
    assert doc["source"]["kind"] == "hand-built"
    assert "HAND-BUILT" in doc["source"]["note"]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_capture_matches_recorded_answers(name: str) -> None:
    nvml, doc = replay(name)
    gpu = capture_gpus(nvml)
    assert nvml.inits == nvml.shutdowns == 1 and nvml.refcount == 0
    assert gpu["available"] is True
    assert gpu["driver_version"] == answer(doc, "nvmlSystemGetDriverVersion")
    cuda = answer(doc, "nvmlSystemGetCudaDriverVersion")
    assert gpu["cuda_driver_version"] == f"{cuda // 1000}.{(cuda % 1000) // 10}"
    hs = handles(doc)
    assert gpu["count"] == len(hs)
    assert sorted(gpu["devices"]) == sorted(answer(doc, "nvmlDeviceGetUUID", h) for h in hs)
    for h in hs:
        dev = gpu["devices"][answer(doc, "nvmlDeviceGetUUID", h)]
        assert dev["name"] == answer(doc, "nvmlDeviceGetName", h)
        pci = answer(doc, "nvmlDeviceGetPciInfo", h)["fields"]
        assert dev["pci"]["bus_id"] == pci["busId"].lower()
        assert int(dev["pci"]["device_id"], 16) == pci["pciDeviceId"]
        mem = answer(doc, "nvmlDeviceGetMemoryInfo", h)["fields"]["total"]
        assert dev["memory_total_bytes"] == mem
        major, minor = answer(doc, "nvmlDeviceGetCudaComputeCapability", h)
        assert dev["compute_capability"] == f"{major}.{minor}"
        assert dev["power_limit_watts"] * 1000 == answer(
            doc, "nvmlDeviceGetPowerManagementLimit", h
        )
        for clock, code in (("graphics", 0), ("sm", 1), ("memory", 2)):
            assert dev["max_clocks_mhz"][clock] == answer(
                doc, "nvmlDeviceGetMaxClockInfo", f"{h},{code}"
            )
        words = answer(doc, "nvmlDeviceGetCpuAffinity", f"{h},16")
        assert parse_cpulist(dev["cpu_affinity"]) == bits(words)
        # Every recorded NVML error on a per-device field is reported, by pynvml's class name.
        for fn, field in (
            ("nvmlDeviceGetSerial", "serial"),
            ("nvmlDeviceGetEccMode", "ecc_mode"),
            ("nvmlDeviceGetNumaNodeId", "numa_node"),
            ("nvmlDeviceGetMigMode", "mig_mode"),
        ):
            error = recorded_error(doc, fn, h)
            if error:
                assert dev["unavailable"][field] == camel(error)
            else:
                assert field not in dev["unavailable"]


def test_consumer_gpu_lacks_serial_ecc_mig_nvlink_as_data() -> None:
    nvml, _ = replay("workstation-rtx4090-pcie")
    dev = next(iter(capture_gpus(nvml)["devices"].values()))
    assert dev["serial"] is None and dev["ecc"] is None
    assert dev["numa_node"] is None
    assert dev["unavailable"] == {
        "serial": "NotSupported",
        "ecc_mode": "NotSupported",
        "application_clock_graphics": "NotSupported",
        "application_clock_memory": "NotSupported",
        "numa_node": "FunctionNotFound",
        "mig_mode": "NotSupported",
        "nvlink": "NotSupported",
    }
    assert dev["nvlinks"] is None
    assert dev["mig"]["instances"] == []


def test_mig_instances_are_listed_with_profiles() -> None:
    nvml, doc = replay("a100-mig")
    dev = next(iter(capture_gpus(nvml)["devices"].values()))
    assert dev["mig"]["current"] == "enabled"
    slots = doc["calls"]["nvmlDeviceGetMigDeviceHandleByIndex"]
    populated = [e["ok"]["handle"] for e in slots.values() if "ok" in e]
    expected = {
        answer(doc, "nvmlDeviceGetUUID", m): answer(doc, "nvmlDeviceGetName", m).rsplit(" ", 1)[1]
        for m in populated
    }
    got = {i["uuid"]: i["profile"] for i in dev["mig"]["instances"]}
    assert got == expected
    assert all(u.startswith("MIG-") for u in got)
    for inst in dev["mig"]["instances"]:
        m = next(m for m in populated if answer(doc, "nvmlDeviceGetUUID", m) == inst["uuid"])
        assert inst["gpu_instance_id"] == answer(doc, "nvmlDeviceGetGpuInstanceId", m)
        attrs = answer(doc, "nvmlDeviceGetAttributes", m)["fields"]
        assert inst["multiprocessors"] == attrs["multiprocessorCount"]
    # Inactive NVLinks are listed but carry no remote end.
    assert dev["nvlinks"] and not any(link["active"] for link in dev["nvlinks"])


def test_nvswitch_topology_letters_and_nv_counts() -> None:
    nvml, doc = replay("dgx-h100-8gpu-nvswitch")
    gpu = capture_gpus(nvml)
    hs = handles(doc)
    uuid = {h: answer(doc, "nvmlDeviceGetUUID", h) for h in hs}

    def switch_links(h: str) -> int:
        n = 0
        for link in range(64):
            state = doc["calls"]["nvmlDeviceGetNvLinkState"].get(f"{h},{link}")
            if state is None or "error" in state:
                break
            if (
                state["ok"]
                and answer(doc, "nvmlDeviceGetNvLinkRemoteDeviceType", f"{h},{link}") == 2
            ):
                n += 1
        return n

    pairs = {tuple(p["gpus"]): p for p in gpu["topology"]}
    assert len(pairs) == len(list(combinations(hs, 2)))
    letters_seen = set()
    for a, b in combinations(hs, 2):
        p = pairs[tuple(sorted((uuid[a], uuid[b])))]
        level = answer(doc, "nvmlDeviceGetTopologyCommonAncestor", f"{a},{b}")
        assert p["pcie"] == SMI_LEGEND[level]
        letters_seen.add(p["pcie"])
        nv = min(switch_links(a), switch_links(b))
        assert p["nvlinks"] == nv and p["link"] == f"NV{nv}"
    assert letters_seen == {"PXB", "NODE", "SYS"}
    for h in hs:
        dev = gpu["devices"][uuid[h]]
        assert len(dev["nvlinks"]) == switch_links(h)
        assert {link["remote_type"] for link in dev["nvlinks"]} == {"switch"}

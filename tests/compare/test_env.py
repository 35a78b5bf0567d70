"""Host-capture differences and their classification, on hand-built captures."""

from __future__ import annotations

import copy
from typing import Any

from executor.compare.env import BREAKS, MAY_BREAK, PROVENANCE, classify


def gpu(
    uuid: str, bus: str, *, name: str = "NVIDIA H100 80GB HBM3", serial: str = "1"
) -> dict[str, Any]:
    return {
        "name": name,
        "uuid": uuid,
        "serial": serial,
        "pci": {"bus_id": bus},
        "compute_capability": "9.0",
        "max_clocks_mhz": {"sm": 1980},
        "mig": {"current": "disabled", "pending": "disabled", "instances": []},
        "nvlinks": [{"active": True, "remote_bus_id": "x"}],
    }


def host(*gpus: dict[str, Any], driver: str = "550.54.15", cuda: str = "12.4") -> dict[str, Any]:
    return {
        "schema": "rexec.host/v1",
        "gpu": {
            "available": True,
            "driver_version": driver,
            "cuda_driver_version": cuda,
            "count": len(gpus),
            "devices": {g["uuid"]: g for g in gpus},
            "topology": [],
        },
        "cpu": {"model": "AMD EPYC", "architecture": "x86_64", "flags": ["avx2"], "logical": 2},
        "os": {"hostname": "a", "kernel": "6.1"},
    }


def impacts(diff: Any) -> dict[str, str]:
    return {d.path: d.impact for d in diff.differences}


def test_same_capture_has_no_differences() -> None:
    h = host(gpu("GPU-a", "0000:01:00.0"))
    assert classify(h, copy.deepcopy(h), uses_gpu=True).differences == ()


def test_other_gpus_of_the_same_model_differ_only_in_provenance() -> None:
    before = host(gpu("GPU-a", "0000:01:00.0", serial="111"), gpu("GPU-b", "0000:02:00.0"))
    after = host(gpu("GPU-x", "0000:01:00.0", serial="999"), gpu("GPU-y", "0000:02:00.0"))
    after["os"]["hostname"] = "b"
    after["gpu"]["devices"]["GPU-x"]["max_clocks_mhz"]["sm"] = 1755
    found = impacts(classify(before, after, uses_gpu=True))
    assert found == {
        "gpu.devices[0].uuid": PROVENANCE,
        "gpu.devices[1].uuid": PROVENANCE,
        "gpu.devices[0].serial": PROVENANCE,
        "gpu.devices[0].max_clocks_mhz.sm": PROVENANCE,
        "os.hostname": PROVENANCE,
    }


def test_gpu_model_and_count_break_bitwise() -> None:
    before = host(gpu("GPU-a", "0000:01:00.0"), gpu("GPU-b", "0000:02:00.0"))
    after = host(gpu("GPU-a", "0000:01:00.0", name="NVIDIA A100-SXM4-40GB"))
    diff = classify(before, after, uses_gpu=True)
    found = impacts(diff)
    assert found["gpu.devices[0].name"] == BREAKS
    assert found["gpu.count"] == BREAKS
    assert found["gpu.devices.count"] == BREAKS
    assert found["gpu.devices[1].name"] == BREAKS  # present on one side only
    assert diff.worst == BREAKS
    # breaking differences are listed first
    assert diff.differences[0].impact == BREAKS


def test_driver_and_cuda_major_break_minor_may_break() -> None:
    g = gpu("GPU-a", "0000:01:00.0")
    minor = classify(host(g), host(g, driver="550.90.07", cuda="12.5"), uses_gpu=True)
    assert impacts(minor) == {"gpu.driver_version": MAY_BREAK, "gpu.cuda_driver_version": MAY_BREAK}
    major = classify(host(g), host(g, driver="535.104.05", cuda="11.8"), uses_gpu=True)
    assert impacts(major) == {"gpu.driver_version": BREAKS, "gpu.cuda_driver_version": BREAKS}


def test_cudnn_and_nccl_versions_follow_the_major_rule() -> None:
    before, after = host(), host()
    before["libraries"] = {"cudnn_version": "8.9.7", "nccl_version": "2.18.1"}
    after["libraries"] = {"cudnn_version": "9.0.0", "nccl_version": "2.19.3"}
    assert impacts(classify(before, after, uses_gpu=True)) == {
        "libraries.cudnn_version": BREAKS,
        "libraries.nccl_version": MAY_BREAK,
    }


def test_cpu_model_matters_for_cpu_jobs_only() -> None:
    before, after = host(), host()
    after["cpu"]["model"] = "Intel Xeon"
    after["cpu"]["flags"] = ["avx2", "avx512f"]
    assert impacts(classify(before, after, uses_gpu=False)) == {
        "cpu.model": MAY_BREAK,
        "cpu.flags": MAY_BREAK,
    }
    assert impacts(classify(before, after, uses_gpu=True)) == {
        "cpu.model": PROVENANCE,
        "cpu.flags": PROVENANCE,
    }
    after["cpu"]["architecture"] = "aarch64"
    assert impacts(classify(before, after, uses_gpu=False))["cpu.architecture"] == BREAKS


def test_mig_layout_breaks_but_mig_uuids_do_not() -> None:
    def with_mig(uuid: str, profile: str) -> dict[str, Any]:
        g = gpu("GPU-a", "0000:01:00.0")
        g["mig"] = {
            "current": "enabled",
            "pending": "enabled",
            "instances": [{"uuid": uuid, "profile": profile, "multiprocessors": 14}],
        }
        return g

    assert (
        classify(
            host(with_mig("MIG-1", "1g.10gb")), host(with_mig("MIG-2", "1g.10gb")), uses_gpu=True
        ).differences
        == ()
    )
    found = impacts(
        classify(
            host(with_mig("MIG-1", "1g.10gb")), host(with_mig("MIG-1", "2g.20gb")), uses_gpu=True
        )
    )
    assert found == {"gpu.devices[0].mig.instances": BREAKS}


def test_gpu_present_on_one_side_only_breaks() -> None:
    cpu_only = host()
    cpu_only["gpu"] = {"available": False, "reason": "NVML Shared Library Not Found"}
    found = impacts(classify(host(gpu("GPU-a", "0000:01:00.0")), cpu_only, uses_gpu=True))
    assert found["gpu.available"] == BREAKS
    assert found["gpu.reason"] == PROVENANCE


def test_to_json_counts_by_impact() -> None:
    before, after = host(), host(driver="1.0")
    after["os"]["kernel"] = "6.2"
    doc = classify(before, after, uses_gpu=True).to_json()
    assert doc["worst"] == BREAKS
    assert doc["counts"] == {BREAKS: 1, MAY_BREAK: 0, PROVENANCE: 1}
    assert [d["path"] for d in doc["differences"]] == ["gpu.driver_version", "os.kernel"]

"""The replay seam itself: real pynvml error classes, NVML's init rules, the recorder."""

from __future__ import annotations

import copy

import pytest

from executor.host import capture_gpus, gpu_inventory, load_nvml
from executor.host.nvml_replay import FIXTURE_SCHEMA, FixtureMiss, RecordingNvml, ReplayNvml
from tests.host.nvml_fixtures import FIXTURE_NAMES, load_fixture, replay

pynvml = load_nvml()


def test_recorded_error_codes_raise_pynvmls_own_classes() -> None:
    nvml, _ = replay("workstation-rtx4090-pcie")
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported) as info:
        nvml.nvmlDeviceGetSerial(handle)
    assert info.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        nvml.nvmlDeviceGetNumaNodeId(handle)
    nvml.nvmlShutdown()


def test_calls_outside_init_and_shutdown_are_uninitialized_like_real_nvml() -> None:
    nvml, _ = replay("workstation-rtx4090-pcie")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    nvml.nvmlInit()
    nvml.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()


def test_constants_come_from_the_real_module() -> None:
    nvml, _ = replay("a100-mig")
    assert nvml.NVML_NVLINK_MAX_LINKS == pynvml.NVML_NVLINK_MAX_LINKS
    assert nvml.NVMLError is pynvml.NVMLError


def test_a_call_missing_from_the_fixture_fails_loudly_and_nvml_is_still_shut_down() -> None:
    doc = load_fixture("dgx-h100-8gpu-nvswitch")
    del doc["calls"]["nvmlDeviceGetVbiosVersion"]["gpu3"]
    nvml = ReplayNvml(doc, real=pynvml)
    with pytest.raises(FixtureMiss, match=r"nvmlDeviceGetVbiosVersion\(gpu3\)"):
        capture_gpus(nvml)
    assert nvml.inits == nvml.shutdowns == 1


def test_a_lost_gpu_is_recorded_not_fatal_and_never_resolved() -> None:
    doc = load_fixture("dgx-h100-8gpu-nvswitch")
    doc["calls"]["nvmlDeviceGetHandleByIndex"]["5"] = {
        "error": {"code": pynvml.NVML_ERROR_GPU_IS_LOST, "name": "NVML_ERROR_GPU_IS_LOST"}
    }
    gpu = capture_gpus(ReplayNvml(doc, real=pynvml))
    assert gpu["unreachable"] == [{"nvml_index": 5, "error": "GpuIsLost"}]
    assert len(gpu["devices"]) == 7
    inventory = gpu_inventory(ReplayNvml(doc, real=pynvml))
    assert len(inventory.gpus) == 7


@pytest.mark.parametrize(
    ("code", "name"),
    [(9, "DriverNotLoaded"), (4, "NoPermission"), (12, "LibraryNotFound")],
)
def test_nvml_that_cannot_start_means_no_gpu_with_the_reason(code: int, name: str) -> None:
    doc = {"schema": FIXTURE_SCHEMA, "calls": {"nvmlInit": {"": {"error": {"code": code}}}}}
    nvml = ReplayNvml(doc, real=pynvml)
    gpu = capture_gpus(nvml)
    assert gpu["available"] is False and name in gpu["reason"]
    assert nvml.shutdowns == 0  # never started, so nothing to shut down


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_recording_a_replay_reproduces_the_fixture_and_the_capture(name: str) -> None:
    """The recorder, driven through the same capture code, writes back what it was fed."""
    original = load_fixture(name)
    recorder = RecordingNvml(ReplayNvml(copy.deepcopy(original), real=pynvml))
    first = capture_gpus(recorder)
    gpu_inventory(recorder)
    recorded = recorder.fixture(source={"kind": "recorded", "describes": "test"})
    for fn, calls in recorded["calls"].items():
        for key, entry in calls.items():
            expected = original["calls"][fn][key]
            if "error" in expected:
                assert entry["error"]["code"] == expected["error"]["code"]
                assert entry["error"]["name"] == expected["error"]["name"]
            elif fn != "nvmlShutdown":
                assert entry == expected, (fn, key)
    assert capture_gpus(ReplayNvml(recorded, real=pynvml)) == first

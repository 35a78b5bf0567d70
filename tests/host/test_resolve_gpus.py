"""GPU requests → UUIDs, against replayed hosts (the no-driver case is in test_hardware_nodriver)."""

from __future__ import annotations

from typing import Any

import pytest

from executor.errors import InputError
from executor.host import resolve_gpus
from tests.host.nvml_fixtures import answer, load_fixture, replay

DGX = "dgx-h100-8gpu-nvswitch"


def uuids_in_bus_order(doc: dict[str, Any]) -> list[str]:
    rows = []
    for entry in doc["calls"]["nvmlDeviceGetHandleByIndex"].values():
        h = entry["ok"]["handle"]
        bus = answer(doc, "nvmlDeviceGetPciInfo", h)["fields"]["busId"].lower()
        rows.append((bus, answer(doc, "nvmlDeviceGetUUID", h)))
    return [u for _, u in sorted(rows)]


def test_all_gives_every_gpu_in_pci_bus_order() -> None:
    nvml, doc = replay(DGX)
    assert resolve_gpus("all", nvml=nvml) == tuple(uuids_in_bus_order(doc))
    assert nvml.inits == nvml.shutdowns == 1


def test_pci_order_not_nvml_index_order() -> None:
    doc = load_fixture(DGX)
    idx = doc["calls"]["nvmlDeviceGetHandleByIndex"]
    idx["0"], idx["7"] = idx["7"], idx["0"]  # NVML enumerates in another order
    nvml, _ = replay(DGX)
    from executor.host.nvml_replay import ReplayNvml

    swapped = ReplayNvml(doc, real=nvml._real)
    assert resolve_gpus(3, nvml=swapped) == tuple(uuids_in_bus_order(doc)[:3])


def test_count_takes_the_first_n_and_refuses_more_than_present() -> None:
    nvml, doc = replay(DGX)
    assert resolve_gpus(2, nvml=nvml) == tuple(uuids_in_bus_order(doc)[:2])
    with pytest.raises(InputError, match=r"gpus = 9 but this host has 8"):
        resolve_gpus(9, nvml=replay(DGX)[0])


def test_explicit_uuids_are_checked_and_kept_in_the_given_order() -> None:
    nvml, doc = replay(DGX)
    wanted = uuids_in_bus_order(doc)[5:3:-1]
    assert resolve_gpus(wanted, nvml=nvml) == tuple(wanted)


def test_unknown_uuid_lists_the_ones_present() -> None:
    nvml, doc = replay("workstation-rtx4090-pcie")
    with pytest.raises(InputError) as info:
        resolve_gpus(["GPU-deadbeef-0000-0000-0000-000000000000"], nvml=nvml)
    assert "GPU-deadbeef" in info.value.message
    assert info.value.details == (answer(doc, "nvmlDeviceGetUUID", "gpu0"),)


def test_mig_instance_uuids_can_be_requested() -> None:
    nvml, doc = replay("a100-mig")
    mig = answer(doc, "nvmlDeviceGetUUID", "gpu0.mig1")
    assert resolve_gpus([mig], nvml=nvml) == (mig,)


@pytest.mark.parametrize("bad", ["two", -1, 1.5, True, {"n": 1}])
def test_malformed_requests_name_the_key(bad: object) -> None:
    with pytest.raises(InputError, match=r"\[resources\] gpus"):
        resolve_gpus(bad, nvml=replay(DGX)[0])  # type: ignore[arg-type]


def test_duplicate_uuid_is_refused() -> None:
    nvml, doc = replay(DGX)
    u = answer(doc, "nvmlDeviceGetUUID", "gpu0")
    with pytest.raises(InputError, match="twice"):
        resolve_gpus([u, u], nvml=nvml)

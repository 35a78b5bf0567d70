"""The real no-driver path: on these machines pynvml cannot find libnvidia-ml.

Nothing is faked here. If this host does have a driver the premise is false,
so the module skips with that reason (the replay tests cover GPU hosts).
"""

from __future__ import annotations

import pytest

from executor.errors import ExitCode, InputError
from executor.host import HOST_SCHEMA, capture_host, load_nvml, resolve_gpus

pynvml = load_nvml()


def _init_error() -> BaseException | None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        error: BaseException = exc
        return error
    pynvml.nvmlShutdown()
    return None


INIT_ERROR = _init_error()
pytestmark = pytest.mark.skipif(
    INIT_ERROR is None, reason="this host has a working NVIDIA driver; no-driver path not reachable"
)


def test_this_machine_really_has_no_nvml_library() -> None:
    assert isinstance(INIT_ERROR, pynvml.NVMLError_LibraryNotFound)


def test_capture_host_records_no_gpu_with_nvml_reason() -> None:
    host = capture_host()
    assert host["schema"] == HOST_SCHEMA
    assert host["gpu"]["available"] is False
    assert "LibraryNotFound" in host["gpu"]["reason"]
    assert str(INIT_ERROR) in host["gpu"]["reason"]
    assert {"cpu", "memory", "os", "engine"} <= host.keys()


def test_engine_mapping_is_carried_verbatim() -> None:
    engine = {"version": "20.10.24", "api_version": "1.41", "storage_driver": "overlay2"}
    assert capture_host(engine=engine)["engine"] == engine


def test_no_gpu_requested_never_needs_nvml() -> None:
    assert resolve_gpus(None) == ()
    assert resolve_gpus(0) == ()
    assert resolve_gpus([]) == ()


@pytest.mark.parametrize("request_", ["all", 1, ["GPU-00000000-0000-0000-0000-000000000000"]])
def test_gpu_request_on_a_host_without_gpus_is_a_clear_input_error(request_: object) -> None:
    with pytest.raises(InputError) as info:
        resolve_gpus(request_)  # type: ignore[arg-type]
    err = info.value
    assert err.exit_code == ExitCode.BAD_INPUT
    assert "[resources] gpus" in err.message
    assert "no NVIDIA GPU" in err.message
    assert "LibraryNotFound" in err.message
    assert err.hint

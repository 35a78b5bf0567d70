"""The NVML seam: the only module that imports ``pynvml``, imported on first use.

No GPU is the real no-GPU path (``NVMLError_LibraryNotFound``), recorded as data:
:class:`NvmlUnavailable` carries the reason the record keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class NvmlUnavailable(Exception):
    """NVML could not start; ``reason`` is the text the record carries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_nvml() -> Any:
    """The real ``pynvml`` module, imported on first use (never at import time)."""
    import pynvml

    return pynvml


def error_name(exc: BaseException) -> str:
    """``NVMLError_NotSupported`` → ``NotSupported`` (the name the record keeps)."""
    name = type(exc).__name__
    return name.removeprefix("NVMLError_") if name != "NVMLError" else "NVMLError"


def reason(exc: BaseException) -> str:
    """An NVML error as the record keeps it: message, error name and code."""
    code = getattr(exc, "value", None)
    return f"{exc} (NVML {error_name(exc)}, code {code})"


def text(value: Any) -> str:
    """NVML strings may come back as bytes; the record holds text."""
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def nvml_session(nvml: Any) -> Iterator[Any]:
    """``nvmlInit`` … ``nvmlShutdown``; raises :class:`NvmlUnavailable` if NVML cannot start."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(reason(exc)) from exc
    try:
        yield nvml
    finally:
        nvml.nvmlShutdown()

"""Record NVML on a GPU host once; replay it anywhere, through the same code.

:mod:`executor.host` reaches NVML only through an ``nvml`` object with
``pynvml``'s names. :class:`RecordingNvml` wraps the real module, passes every
``nvml*`` call through and writes down the arguments and what came back (a
value, or an NVML error code). :class:`ReplayNvml` answers the same calls from
that record and raises the *real* ``pynvml.NVMLError`` subclasses
(``pynvml.NVMLError(code)`` maps a code to ``NVMLError_NotSupported`` etc.),
so the production ``except`` clauses run unchanged.

Why this seam and not pynvml's C-function lookup (``_nvmlGetFunctionPointer``):
faking at the C level would need a ctypes out-parameter emulation per NVML
function, and a recording at that level needs library interposition. The
Python API is what rexec consumes, its values are plain (str, int, lists,
small structs), and a recording made by running rexec's own capture code
through :class:`RecordingNvml` contains exactly the calls rexec makes. The
cost, stated in ``docs/hardware.md``: pynvml's own ctypes marshalling is not
exercised by replays; the ``gpu``-marked tests and ``scripts/record-nvml`` on
a real GPU host cover it.

This module never imports ``pynvml``: the real module is passed in (from
:func:`executor.host.load_nvml`), keeping one importer.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

__all__ = [
    "FIXTURE_SCHEMA",
    "FixtureMiss",
    "RecordingNvml",
    "ReplayHandle",
    "ReplayNvml",
    "ReplayStruct",
]

FIXTURE_SCHEMA = "rexec.nvml-fixture/v1"


class FixtureMiss(LookupError):
    """rexec made an NVML call the fixture never recorded: re-record it.

    Deliberately *not* an ``NVMLError``, so production error handling cannot
    swallow it and a stale fixture fails the test that used it.
    """


class ReplayHandle:
    """Stands in for a ``c_nvmlDevice_t``; its name is how the fixture refers to it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ReplayHandle({self.name!r})"


class ReplayStruct(SimpleNamespace):
    """Stands in for a ctypes structure: its fields as attributes, and its C type's name."""

    def __init__(self, struct: str, fields: Mapping[str, Any]) -> None:
        super().__init__(**fields)
        self._struct = struct


def _is_api(real: Any, name: str) -> bool:
    return name.startswith("nvml") and callable(getattr(real, name, None))


def args_key(args: tuple[Any, ...], names: Mapping[int, str] | None = None) -> str:
    """``(handle gpu0, 3)`` → ``"gpu0,3"``: the fixture's key for one call's arguments."""
    parts: list[str] = []
    for a in args:
        if isinstance(a, ReplayHandle):
            parts.append(a.name)
        elif names is not None and _pointer(a) in names:
            parts.append(names[_pointer(a)])  # type: ignore[index]
        elif isinstance(a, (int, str)) and not isinstance(a, bool):
            parts.append(str(a))
        else:
            raise TypeError(f"cannot key NVML argument {a!r}")
    return ",".join(parts)


def _pointer(value: Any) -> int | None:
    if isinstance(value, ctypes._Pointer):
        return ctypes.cast(value, ctypes.c_void_p).value
    return None


class ReplayNvml:
    """A stand-in for the ``pynvml`` module that answers from a fixture.

    Constants and error classes come from the real module. An ``nvml*`` call
    before ``nvmlInit`` or after ``nvmlShutdown`` raises ``Uninitialized``,
    as real NVML does, so a missing init or a use-after-shutdown shows up.
    """

    def __init__(self, fixture: Mapping[str, Any], *, real: Any) -> None:
        if fixture.get("schema") != FIXTURE_SCHEMA:
            raise ValueError(f"not an NVML fixture: schema {fixture.get('schema')!r}")
        self._calls: Mapping[str, Mapping[str, Any]] = fixture["calls"]
        self._real = real
        self.refcount = 0
        self.inits = 0
        self.shutdowns = 0
        self.log: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        if _is_api(self._real, name):
            return functools.partial(self._call, name)
        return getattr(self._real, name)

    def _answer(self, name: str, key: str) -> Any:
        try:
            entry = self._calls[name][key]
        except KeyError:
            raise FixtureMiss(f"fixture has no {name}({key})") from None
        if "error" in entry:
            raise self._real.NVMLError(int(entry["error"]["code"]))
        return _decode(entry["ok"])

    def _call(self, name: str, *args: Any) -> Any:
        key = args_key(args)
        self.log.append((name, key))
        if name in ("nvmlInit", "nvmlInitWithFlags"):
            value = self._answer(name, key)
            self.refcount += 1
            self.inits += 1
            return value
        if self.refcount <= 0:
            raise self._real.NVMLError(self._real.NVML_ERROR_UNINITIALIZED)
        if name == "nvmlShutdown":
            self.refcount -= 1
            self.shutdowns += 1
            return None
        return self._answer(name, key)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "handle" in value:
            return ReplayHandle(value["handle"])
        if "struct" in value:
            fields = {k: _decode(v) for k, v in value["fields"].items()}
            return ReplayStruct(value["struct"], fields)
        raise ValueError(f"unknown fixture value {value!r}")
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _encode(value: Any, handle_name: str | None, names: dict[int, str]) -> Any:
    if isinstance(value, ReplayHandle):  # recording a replay: used to test the recorder
        return {"handle": value.name}
    if isinstance(value, ReplayStruct):
        fields = {k: _encode(v, None, names) for k, v in vars(value).items() if k != "_struct"}
        return {"struct": value._struct, "fields": fields}
    pointer = _pointer(value)
    if pointer is not None:
        name = names.setdefault(pointer, handle_name or f"h{len(names)}")
        return {"handle": name}
    if isinstance(value, ctypes.Structure):
        return {
            "struct": type(value).__name__,
            "fields": {f[0]: _encode(getattr(value, f[0]), None, names) for f in value._fields_},
        }
    if isinstance(value, ctypes.Array):
        return [_encode(v, None, names) for v in value]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (list, tuple)):
        return [_encode(v, None, names) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot record NVML value {value!r}")


def _handle_name(fn: str, key: str) -> str | None:
    """Readable names for handles: ``gpu3``; ``gpu3.mig1`` for MIG instance slot 1."""
    if fn == "nvmlDeviceGetHandleByIndex":
        return f"gpu{key}"
    if fn == "nvmlDeviceGetMigDeviceHandleByIndex":
        parent, _, index = key.partition(",")
        return f"{parent}.mig{index}"
    return None


class RecordingNvml:
    """Wraps the real ``pynvml``: every ``nvml*`` call goes through and is written down."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._names: dict[int, str] = {}
        self.calls: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        if _is_api(self._real, name):
            return functools.partial(self._call, name)
        return getattr(self._real, name)

    def _call(self, name: str, *args: Any) -> Any:
        key = args_key(args, self._names)
        slot = self.calls.setdefault(name, {})
        try:
            value = getattr(self._real, name)(*args)
        except self._real.NVMLError as exc:
            code = int(exc.value)
            slot.setdefault(key, {"error": {"code": code, "name": _code_name(exc, code)}})
            raise
        encoded = _encode(value, _handle_name(name, key), self._names)
        slot.setdefault(key, {"ok": encoded})
        return value

    def fixture(self, *, source: Mapping[str, Any]) -> dict[str, Any]:
        """The recorded answers as a fixture document, tagged with where they came from."""
        return {
            "schema": FIXTURE_SCHEMA,
            "source": dict(source),
            "calls": {fn: dict(sorted(v.items())) for fn, v in sorted(self.calls.items())},
        }


def _code_name(exc: BaseException, code: int) -> str:
    """``NVML_ERROR_NOT_SUPPORTED`` for code 3, looked up in the module that raised it."""
    module = sys.modules.get(type(exc).__module__)
    for name in dir(module):
        if name.startswith("NVML_ERROR_") and getattr(module, name) == code:
            return name
    return f"NVML_ERROR_{code}"

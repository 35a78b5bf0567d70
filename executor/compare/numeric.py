"""Numeric outputs, read without numpy: ``.npy``, ``.npz``, ``.safetensors`` and JSON
metrics as named tensors, and how far two of them are apart (docs/replay.md).

Files come from records that may have been edited: read through safeio, never
through a link, with a cap; archives are sized before they are unpacked.
"""

from __future__ import annotations

import ast
import io
import json
import math
import struct
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import safeio
from executor.canonical import StrictJSONError, strict_loads
from executor.spec import Tolerance

# Numeric files are compared in memory: larger ones are only compared by digest.
NUMERIC_CAP = 2 << 30


CHUNK_ELEMENTS = 1 << 20


# numpy dtype kind+size (and safetensors dtype names) -> struct code
_NPY_CODES = {
    "f2": "e",
    "f4": "f",
    "f8": "d",
    "i1": "b",
    "i2": "h",
    "i4": "i",
    "i8": "q",
    "u1": "B",
    "u2": "H",
    "u4": "I",
    "u8": "Q",
    "b1": "?",
}


_SAFETENSORS_CODES = {
    "F16": "e",
    "F32": "f",
    "F64": "d",
    "I8": "b",
    "I16": "h",
    "I32": "i",
    "I64": "q",
    "U8": "B",
    "U16": "H",
    "U32": "I",
    "U64": "Q",
    "BOOL": "?",
    "BF16": "bf16",
}


class NotNumeric(ValueError):
    """The file cannot be read as numbers; it is compared by digest only."""


@dataclass(frozen=True)
class Tensor:
    """One named array as raw little/big-endian bytes plus how to read them."""

    dtype: str  # struct code, or "bf16"
    byteorder: str  # "<" or ">"
    shape: tuple[int, ...]
    data: bytes
    fortran_order: bool = False

    @property
    def count(self) -> int:
        """How many elements were compared."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class NumericDiff:
    """How far two numeric files are apart; ``structure`` names a non-numeric difference."""

    elements: int
    max_abs: float
    max_rel: float
    worst: str | None  # tensor or JSON key holding the largest absolute difference
    outside: int | None  # elements outside the tolerance (None: no tolerance applied)
    structure: str | None = None  # e.g. "shape of 'w' is (3,) vs (4,)"
    worst_index: int | None = None  # its flat index, where the tensor has more than one element

    @property
    def where(self) -> str | None:
        """The largest difference's place for people: ``loss``, ``w[3]``, ``element 3``."""
        if self.worst is None:
            return None
        if self.worst_index is None:
            return self.worst or "the value"
        return f"{self.worst}[{self.worst_index}]" if self.worst else f"element {self.worst_index}"

    def within(self) -> bool:
        """True when every element lies within the tolerance."""
        return self.structure is None and self.outside == 0

    def to_json(self) -> dict[str, Any]:
        """The JSON form: counts and the largest differences, NaN-safe."""
        return {
            "elements": self.elements,
            "maxAbsDiff": json_number(self.max_abs),
            "maxRelDiff": json_number(self.max_rel),
            "worst": self.worst,
            "worstIndex": self.worst_index,
            "outsideTolerance": self.outside,
            "structure": self.structure,
        }


def json_number(value: float) -> float | str:
    """Canonical JSON has no NaN or infinity; spell those out."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def numeric_diff(original: Path, replay: Path, *, tolerance: Tolerance | None) -> NumericDiff:
    """Largest absolute and relative difference between two numeric files of one format."""
    a, b = read_numeric(original), read_numeric(replay)
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        return _structural(f"entries differ: only in original {only_a}, only in replay {only_b}")
    acc = _Accumulator(tolerance)
    for key in sorted(a):
        ta, tb = a[key], b[key]
        if ta.shape != tb.shape:
            return _structural(f"shape of {key!r} is {ta.shape} in original, {tb.shape} in replay")
        if (ta.dtype, ta.fortran_order) != (tb.dtype, tb.fortran_order):
            return _structural(f"dtype or memory order of {key!r} differs")
        offset = 0
        for xs, ys in zip(_values(ta), _values(tb), strict=True):
            acc.add(key, xs, ys, offset=offset, count=ta.count)
            offset += len(xs)
    return acc.result()


def _structural(text: str) -> NumericDiff:
    return NumericDiff(0, math.inf, math.inf, None, None, structure=text)


class _Accumulator:
    def __init__(self, tolerance: Tolerance | None) -> None:
        self.tolerance = tolerance
        self.elements = 0
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.worst: str | None = None
        self.worst_index: int | None = None
        self.outside = 0

    def add(
        self, key: str, xs: Sequence[float], ys: Sequence[float], *, offset: int, count: int
    ) -> None:
        """Compare one chunk of tensor ``key`` (``count`` elements), ``offset`` into it."""
        tol = self.tolerance
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            self.elements += 1
            if x == y or (x != x and y != y):  # equal, or NaN at the same position
                continue
            diff = abs(float(y) - float(x))
            if diff != diff:  # NaN on one side only, or inf - inf
                diff = math.inf
            rel = diff / abs(x) if x else math.inf
            if diff > self.max_abs or self.worst is None:
                self.max_abs, self.worst = max(diff, self.max_abs), key
                self.worst_index = offset + i if count > 1 else None
            self.max_rel = max(self.max_rel, rel)
            if tol is not None and not diff <= tol.atol + tol.rtol * abs(x):
                self.outside += 1

    def result(self) -> NumericDiff:
        return NumericDiff(
            elements=self.elements,
            max_abs=self.max_abs,
            max_rel=self.max_rel,
            worst=self.worst,
            outside=None if self.tolerance is None else self.outside,
            worst_index=self.worst_index,
        )


def _values(tensor: Tensor) -> Iterator[Sequence[float]]:
    """The tensor's elements as Python numbers, a chunk at a time."""
    if tensor.dtype == "bf16":
        width = 2
    elif tensor.dtype == "json":
        yield json.loads(tensor.data)
        return
    else:
        width = struct.calcsize(tensor.dtype)
    total = tensor.count
    if len(tensor.data) != total * width:
        raise NotNumeric(f"expected {total * width} data bytes, found {len(tensor.data)}")
    for start in range(0, total, CHUNK_ELEMENTS):
        n = min(CHUNK_ELEMENTS, total - start)
        raw = tensor.data[start * width : (start + n) * width]
        if tensor.dtype == "bf16":
            yield _bf16(raw, tensor.byteorder, n)
        else:
            yield struct.unpack(f"{tensor.byteorder}{n}{tensor.dtype}", raw)


def _bf16(raw: bytes, order: str, n: int) -> tuple[float, ...]:
    """bfloat16 is the top half of a float32: pad each value with two zero bytes."""
    wide = bytearray(4 * n)
    if order == "<":
        wide[2::4], wide[3::4] = raw[0::2], raw[1::2]
    else:
        wide[0::4], wide[1::4] = raw[0::2], raw[1::2]
    return struct.unpack(f"{order}{n}f", bytes(wide))


def read_numeric(path: Path) -> dict[str, Tensor]:
    """Named tensors of a numeric file; raises NotNumeric for anything else."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".safetensors", ".json"):
        raise NotNumeric(f"{path.name} is not a numeric format")
    try:
        # A record's outputs may have been edited: never through a link, never unbounded.
        data = safeio.read_capped(path, cap=NUMERIC_CAP)
    except safeio.UnsafeFile as exc:
        raise NotNumeric(f"not compared: {exc.message}") from exc
    except OSError as exc:
        raise NotNumeric(f"cannot read {path.name}: {exc.strerror}") from exc
    if suffix == ".npy":
        return {"": parse_npy(data)}
    if suffix == ".npz":
        return _parse_npz(data)
    if suffix == ".safetensors":
        return parse_safetensors(data)
    if suffix == ".json":
        return _parse_json_metrics(data)
    raise NotNumeric(f"{path.name} is not a numeric format")


def parse_npy(data: bytes) -> Tensor:
    """Version 1–3 ``.npy``: magic, header length, a Python-literal header, raw data."""
    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        raise NotNumeric("not a .npy file (bad magic)")
    major = data[6]
    if major == 1:
        (hlen,), start = struct.unpack("<H", data[8:10]), 10
    elif major in (2, 3):
        (hlen,), start = struct.unpack("<I", data[8:12]), 12
    else:
        raise NotNumeric(f".npy format version {major} is not known")
    try:
        header = ast.literal_eval(data[start : start + hlen].decode("latin1"))
        descr, shape = header["descr"], tuple(int(d) for d in header["shape"])
        fortran = bool(header["fortran_order"])
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise NotNumeric(f"unreadable .npy header ({exc})") from exc
    if not isinstance(descr, str) or len(descr) < 3 or descr[1:] not in _NPY_CODES:
        raise NotNumeric(f".npy dtype {descr!r} is not a plain number type")
    order = ">" if descr[0] == ">" else "<"
    return Tensor(_NPY_CODES[descr[1:]], order, shape, data[start + hlen :], fortran)


def _parse_npz(data: bytes) -> dict[str, Tensor]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if sum(info.file_size for info in members) > NUMERIC_CAP:
                raise NotNumeric(f"the archive unpacks to more than {NUMERIC_CAP} bytes")
            return {
                info.filename.removesuffix(".npy"): parse_npy(archive.read(info))
                for info in members
            }
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise NotNumeric(f"not a .npz archive ({exc})") from exc


def parse_safetensors(data: bytes) -> dict[str, Tensor]:
    """8-byte little-endian header length, a JSON header, then the tensors' bytes."""
    try:
        (hlen,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + hlen])
    except (struct.error, ValueError) as exc:
        raise NotNumeric(f"not a safetensors file ({exc})") from exc
    body = data[8 + hlen :]
    tensors: dict[str, Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        code = _SAFETENSORS_CODES.get(info.get("dtype"))
        if code is None:
            raise NotNumeric(f"safetensors dtype {info.get('dtype')!r} of {name!r} is not read")
        begin, end = info["data_offsets"]
        tensors[name] = Tensor(code, "<", tuple(info["shape"]), body[begin:end])
    return tensors


def _parse_json_metrics(data: bytes) -> dict[str, Tensor]:
    """JSON metrics: every numeric leaf is an element named by its key path.

    Non-numeric leaves (strings, booleans, null) must be equal, else the
    structure differs; they are folded into the tensor name so any change
    there shows up as a different set of entries.
    """
    try:
        doc = strict_loads(data)
        leaves: dict[str, Any] = {}
        flatten(doc, "", leaves)
    except (StrictJSONError, RecursionError) as exc:
        raise NotNumeric(f"not JSON rexec compares ({exc})") from exc
    out: dict[str, Tensor] = {}
    for key, value in leaves.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = Tensor("json", "<", (1,), json.dumps([value]).encode())
        else:
            out[f"{key}={json.dumps(value)}"] = Tensor("json", "<", (0,), b"[]")
    return out


def flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """Flatten nested JSON into dotted keys, so metrics compare leaf by leaf."""
    if isinstance(value, dict):
        if not value:
            out[prefix or "$"] = {}
        for key, item in value.items():
            flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list):
        if not value:
            out[prefix or "$"] = []
        for i, item in enumerate(value):
            flatten(item, f"{prefix}[{i}]", out)
    else:
        out[prefix or "$"] = value

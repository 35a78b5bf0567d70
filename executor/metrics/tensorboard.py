"""Scalars from TensorBoard event files, read without TensorFlow or protobuf.

An event file is a TFRecord stream: an 8-byte length, its 4-byte CRC, the record,
its 4-byte CRC. Each record is an ``Event`` message: ``step`` (field 2) and a
``Summary`` (field 5) of ``Value`` messages, each a ``tag`` (1) with either a
``simple_value`` (2, what PyTorch's and tensorboardX's ``add_scalar`` write) or a
scalar ``tensor`` (8, what ``tf.summary.scalar`` writes). Only those fields are
decoded, from bytes the record signs; the CRCs are not checked (the sha256 is
stronger), and a record that runs past the end stops the reading.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from executor.metrics.model import Series, Source
from executor.metrics.read import Points

# TensorProto dtypes whose one element is a scalar we read, by how it is packed.
_DTYPES = {1: "<f", 2: "<d", 3: "<i", 9: "<q", 19: "<e"}  # float, double, int32, int64, half
_MAX_RECORD = 16 << 20


class _Malformed(ValueError):
    """Bytes that are not the protobuf they should be."""


def from_events(data: bytes, source: str, rule: Source | None = None) -> list[Series]:
    """Every scalar summary in one event file, by tag."""
    points = Points(source, rule)
    add_events(data, points)
    return points.series()


def add_events(data: bytes, points: Points) -> None:
    """The scalars of one event file, added to ``points`` (a run's files share one)."""
    for record in _records(data):
        try:
            step, values = _event(record)
        except (_Malformed, struct.error, UnicodeDecodeError):
            continue
        for tag, value in values:
            points.add(tag, float(step), value)


def _records(data: bytes) -> Iterator[bytes]:
    at = 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        if length > _MAX_RECORD or at + 12 + length + 4 > len(data):
            return
        yield data[at + 12 : at + 12 + length]
        at += 12 + length + 4


def _fields(message: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field: an int, or the bytes of a
    length-delimited or fixed-width field."""
    at, end = 0, len(message)
    while at < end:
        key, at = _varint(message, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(message, at)
            yield number, wire, value
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if at + width > end:
                raise _Malformed("truncated fixed field")
            yield number, wire, message[at : at + width]
            at += width
        elif wire == 2:
            length, at = _varint(message, at)
            if at + length > end:
                raise _Malformed("truncated field")
            yield number, wire, message[at : at + length]
            at += length
        else:
            raise _Malformed(f"wire type {wire}")


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while at < len(data) and shift < 70:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    raise _Malformed("bad varint")


def _event(record: bytes) -> tuple[int, list[tuple[str, float]]]:
    step, values = 0, []
    for number, wire, value in _fields(record):
        if number == 2 and wire == 0 and isinstance(value, int):
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5 and wire == 2 and isinstance(value, bytes):
            values += [v for v in map(_value, _summary_values(value)) if v is not None]
    return step, values


def _summary_values(summary: bytes) -> Iterator[bytes]:
    for number, wire, value in _fields(summary):
        if number == 1 and wire == 2 and isinstance(value, bytes):
            yield value


def _value(message: bytes) -> tuple[str, float] | None:
    tag, number_found = None, None
    for number, wire, value in _fields(message):
        if number == 1 and wire == 2 and isinstance(value, bytes):
            tag = value.decode("utf-8")
        elif number == 2 and wire == 5 and isinstance(value, bytes):
            (number_found,) = struct.unpack("<f", value)
        elif number == 8 and wire == 2 and isinstance(value, bytes):
            number_found = _scalar_tensor(value)
    if tag is None or number_found is None:
        return None
    return tag, float(number_found)


def _scalar_tensor(message: bytes) -> float | None:
    """A TensorProto's one element: ``tensor_content`` (4) or the typed repeated field."""
    dtype, content, packed = None, None, []
    for number, wire, value in _fields(message):
        if number == 1 and wire == 0 and isinstance(value, int):
            dtype = value
        elif number == 4 and wire == 2 and isinstance(value, bytes):
            content = value
        elif number in (5, 6, 7, 10, 13) and isinstance(value, bytes | int):
            packed.append((number, wire, value))
    fmt = _DTYPES.get(dtype or 0)
    if fmt is None:
        return None
    if content is not None:
        return (
            float(struct.unpack(fmt, content)[0]) if len(content) == struct.calcsize(fmt) else None
        )
    return _typed_value(fmt, packed)


def _typed_value(fmt: str, fields: list[tuple[int, int, int | bytes]]) -> float | None:
    """float_val (5), double_val (6), int_val (7), int64_val (10), half_val (13): one element,
    packed (wire 2) or not."""
    if len(fields) != 1:
        return None
    number, wire, value = fields[0]
    if isinstance(value, int):  # a varint: int_val, int64_val, half_val (as bits)
        if number == 13:
            return float(struct.unpack("<e", struct.pack("<H", value & 0xFFFF))[0])
        return float(value - (1 << 64) if value >= 1 << 63 else value)
    width = {5: "<f", 6: "<d"}.get(number)
    if width and wire in (2, 5, 1) and len(value) == struct.calcsize(width):
        return float(struct.unpack(width, value)[0])
    if wire == 2 and number in (7, 10, 13):  # packed varints
        found, at = _varint(value, 0)
        if at != len(value):
            return None
        if number == 13:
            return float(struct.unpack("<e", struct.pack("<H", found & 0xFFFF))[0])
        return float(found - (1 << 64) if found >= 1 << 63 else found)
    return None

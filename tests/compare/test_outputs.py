"""Output comparison: statuses, numeric readers and tolerance, against hand-built files.

Every numeric file here is assembled byte by byte from its format's spec
(.npy header, zip of .npy, safetensors header), and every expected
difference is computed in the test from the values written, never copied
from the code's output.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zipfile
from pathlib import Path

import pytest

from executor.compare import (
    DIFFERENT,
    EXTRA,
    IDENTICAL,
    MISSING,
    WITHIN_TOLERANCE,
    compare_outputs,
    match_tolerance,
    metric_changes,
    numeric_diff,
    read_numeric,
)
from executor.metrics import from_json
from executor.spec import Tolerance


def npy(
    values: list[float],
    *,
    code: str = "d",
    descr: str = "<f8",
    shape: tuple[int, ...] | None = None,
) -> bytes:
    shape = shape or (len(values),)
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    order = ">" if descr.startswith(">") else "<"
    return (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", len(header))
        + header.encode("latin1")
        + struct.pack(f"{order}{len(values)}{code}", *values)
    )


def safetensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    body = b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(body), len(body) + len(data)],
        }
        body += data
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def write(root: Path, name: str, data: bytes) -> str:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return a, b


def compare(a: Path, b: Path, names: list[str], tolerances: tuple[Tolerance, ...] = ()):  # type: ignore[no-untyped-def]
    original = {
        n: hashlib.sha256((a / n).read_bytes()).hexdigest() for n in names if (a / n).exists()
    }
    replay = {
        n: hashlib.sha256((b / n).read_bytes()).hexdigest() for n in names if (b / n).exists()
    }
    return compare_outputs(
        original=original, original_dir=a, replay=replay, replay_dir=b, tolerances=tolerances
    )


def test_identical_missing_extra_and_plain_different(dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    for root in (a, b):
        write(root, "same.txt", b"x")
    write(a, "gone.txt", b"1")
    write(b, "new.txt", b"2")
    write(a, "log.txt", b"t=1")
    write(b, "log.txt", b"t=2")
    result = compare(a, b, ["same.txt", "gone.txt", "new.txt", "log.txt"])
    status = {f.name: f.status for f in result.files}
    assert status == {
        "same.txt": IDENTICAL,
        "gone.txt": MISSING,
        "new.txt": EXTRA,
        "log.txt": DIFFERENT,
    }
    assert not result.bitwise and not result.within_tolerance
    assert next(f for f in result.files if f.name == "log.txt").numeric is None


def test_npy_small_difference_is_within_tolerance_and_large_is_not(dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    base = [1.0, -2.0, 0.5, 0.0]
    small = [1.0 + 1e-9, -2.0, 0.5 - 2e-9, 0.0]
    write(a, "w.npy", npy(base))
    write(b, "w.npy", npy(small))
    tol = (Tolerance("*.npy", rtol=1e-6, atol=0.0),)
    f = compare(a, b, ["w.npy"], tol).files[0]
    assert f.status == WITHIN_TOLERANCE
    assert f.numeric is not None
    expected_abs = max(abs(y - x) for x, y in zip(base, small, strict=True))
    expected_rel = max(abs(y - x) / abs(x) for x, y in zip(base, small, strict=True) if x)
    assert f.numeric.max_abs == expected_abs
    assert f.numeric.max_rel == expected_rel
    assert f.numeric.outside == 0 and f.numeric.elements == 4

    large = [1.0 + 1e-3, -2.0, 0.5, 0.0]
    write(b, "w.npy", npy(large))
    f = compare(a, b, ["w.npy"], tol).files[0]
    assert f.status == DIFFERENT
    assert f.numeric is not None and f.numeric.outside == 1
    assert f.numeric.max_abs == abs(large[0] - base[0])


def test_zero_reference_uses_atol_and_infinite_relative_difference(dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    write(a, "z.npy", npy([0.0, 1.0]))
    write(b, "z.npy", npy([1e-12, 1.0]))
    only_rtol = compare(a, b, ["z.npy"], (Tolerance("*", rtol=1e-3, atol=0.0),)).files[0]
    assert only_rtol.status == DIFFERENT and only_rtol.numeric is not None
    assert math.isinf(only_rtol.numeric.max_rel)
    assert only_rtol.numeric.to_json()["maxRelDiff"] == "inf"  # canonical JSON has no inf
    with_atol = compare(a, b, ["z.npy"], (Tolerance("*", rtol=0.0, atol=1e-9),)).files[0]
    assert with_atol.status == WITHIN_TOLERANCE


def test_nan_equal_only_in_the_same_place(dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    nan = float("nan")
    write(a, "n.npy", npy([nan, 1.0], descr="<f4", code="f"))
    write(b, "n.npy", npy([nan, 1.0], descr=">f4", code="f"))  # same values, other byte order
    same = compare(a, b, ["n.npy"], (Tolerance("*", rtol=0.0, atol=0.0),)).files[0]
    assert (
        same.status == WITHIN_TOLERANCE and same.numeric is not None and same.numeric.max_abs == 0
    )
    write(b, "n.npy", npy([1.0, 1.0], descr="<f4", code="f"))
    moved = compare(a, b, ["n.npy"], (Tolerance("*", rtol=1.0, atol=1.0),)).files[0]
    assert moved.status == DIFFERENT


def test_no_tolerance_reports_numbers_but_stays_different(dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    write(a, "w.npy", npy([1.0]))
    write(b, "w.npy", npy([1.5]))
    f = compare(a, b, ["w.npy"]).files[0]
    assert f.status == DIFFERENT
    assert f.numeric is not None and f.numeric.max_abs == 0.5 and f.numeric.outside is None


def test_shape_change_is_structural(dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    write(a, "w.npy", npy([1.0, 2.0]))
    write(b, "w.npy", npy([1.0, 2.0, 3.0]))
    f = compare(a, b, ["w.npy"], (Tolerance("*", rtol=1.0, atol=1.0),)).files[0]
    assert f.status == DIFFERENT
    assert (
        f.numeric is not None and f.numeric.structure is not None and "shape" in f.numeric.structure
    )


def test_npz_members_are_compared_by_name(dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    for root, bias in ((a, 0.0), (b, 0.25)):
        with zipfile.ZipFile(root / "m.npz", "w") as z:
            z.writestr("w.npy", npy([1.0, 2.0]))
            z.writestr("b.npy", npy([3.0 + bias], descr="<f4", code="f"))
    f = compare(a, b, ["m.npz"], (Tolerance("*.npz", rtol=0.1, atol=0.0),)).files[0]
    assert f.numeric is not None
    assert f.numeric.worst == "b" and f.numeric.max_abs == 0.25
    assert f.status == WITHIN_TOLERANCE  # 0.25 <= 0.1 * 3.0


def test_safetensors_including_bfloat16(tmp_path: Path) -> None:
    # bfloat16 is the high half of float32: 1.5f = 0x3FC00000, so bf16 0x3FC0
    bf16 = struct.pack("<2H", 0x3FC0, 0xC000)  # 1.5, -2.0
    f32 = struct.pack("<2f", 0.25, 4.0)
    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors({"h": ("BF16", [2], bf16), "w": ("F32", [1, 2], f32)}))
    tensors = read_numeric(path)
    assert set(tensors) == {"h", "w"}
    other = tmp_path / "o.safetensors"
    other.write_bytes(
        safetensors({"h": ("BF16", [2], bf16), "w": ("F32", [1, 2], struct.pack("<2f", 0.25, 4.5))})
    )
    diff = numeric_diff(path, other, tolerance=Tolerance("*", rtol=0.2, atol=0.0))
    assert diff.worst == "w" and diff.max_abs == 0.5 and diff.max_rel == 0.5 / 4.0
    assert diff.within()
    bad = tmp_path / "b.safetensors"
    bad.write_bytes(safetensors({"h": ("BF16", [2], struct.pack("<2H", 0x3FC0, 0xC040))}))
    # 0xC040 is -3.0 in bfloat16; "w" is missing, which is structural
    assert numeric_diff(path, bad, tolerance=None).structure is not None


def test_json_metrics_numbers_with_tolerance_strings_exactly(dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    write(
        a,
        "metrics.json",
        json.dumps({"loss": 0.5, "eval": {"acc": [0.9, 0.8]}, "tag": "v1"}).encode(),
    )
    write(
        b,
        "metrics.json",
        json.dumps({"loss": 0.5000001, "eval": {"acc": [0.9, 0.8]}, "tag": "v1"}).encode(),
    )
    tol = (Tolerance("metrics.json", rtol=1e-5, atol=0.0),)
    f = compare(a, b, ["metrics.json"], tol).files[0]
    assert f.status == WITHIN_TOLERANCE and f.numeric is not None
    assert f.numeric.worst == "loss" and f.numeric.max_abs == abs(0.5000001 - 0.5)
    write(
        b,
        "metrics.json",
        json.dumps({"loss": 0.5, "eval": {"acc": [0.9, 0.8]}, "tag": "v2"}).encode(),
    )
    f = compare(a, b, ["metrics.json"], tol).files[0]
    assert f.status == DIFFERENT and f.numeric is not None and f.numeric.structure is not None


def test_tampered_original_is_not_measured(dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    signed = write(a, "w.npy", npy([1.0]))
    replay = write(b, "w.npy", npy([1.0 + 1e-12]))
    (a / "w.npy").write_bytes(
        npy([1.0 + 1e-12])
    )  # now equal to the replay, but not what was signed
    result = compare_outputs(
        original={"w.npy": signed},
        original_dir=a,
        replay={"w.npy": replay},
        replay_dir=b,
        tolerances=(Tolerance("*", rtol=1.0, atol=1.0),),
    )
    f = result.files[0]
    assert f.status == DIFFERENT and f.numeric is None and f.note and "signed digest" in f.note


def test_first_matching_tolerance_wins_and_basenames_match() -> None:
    tols = (Tolerance("eval/*.json", 1, 0), Tolerance("metrics.json", 2, 0), Tolerance("*", 3, 0))
    assert match_tolerance("eval/metrics.json", tols) == tols[0]
    assert match_tolerance("train/metrics.json", tols) == tols[1]
    assert match_tolerance("w.npy", tols) == tols[2]
    assert match_tolerance("w.npy", ()) is None


def test_metric_changes_lists_every_metric_side_by_side() -> None:
    before = from_json(b'{"acc": 0.9, "loss": {"train": 1, "val": 2}, "tag": "x"}', "m.json")
    after = from_json(b'{"acc": 0.8, "loss": {"train": 1}, "new": 5}', "m.json")
    changes = [(c.key, c.before, c.after) for c in metric_changes(before, after)]
    assert changes == [
        ("acc", 0.9, 0.8),
        ("loss.train", 1.0, 1.0),
        ("loss.val", 2.0, None),
        ("new", None, 5.0),
    ]

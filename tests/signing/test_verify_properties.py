"""Property: any single flipped byte in the payload, the signature or an output is caught."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.errors import MismatchError, VerificationError
from executor.record.verification import verify_record
from executor.signing import KeyPolicy

# make_record is a factory: each example builds its own fresh record with it, so
# sharing the function-scoped fixture across examples is safe.
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _flip(data: bytes, index: int, mask: int) -> bytes:
    out = bytearray(data)
    out[index % len(out)] ^= mask
    return bytes(out)


def _rewrite_envelope(path: Path, field: str, change: Callable[[bytes], bytes]) -> None:
    doc = json.loads(path.read_bytes())
    env = doc["dsseEnvelope"]
    holder: dict[str, Any] = env["signatures"][0] if field == "sig" else env
    holder[field] = base64.b64encode(change(base64.b64decode(holder[field]))).decode()
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("field", ["payload", "sig"])
@PROPERTY
@given(index=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_flipped_envelope_byte_is_detected(
    make_record: Callable[..., Any], field: str, index: int, mask: int
) -> None:
    """Any one byte of the signed payload or of the signature, changed in any way."""
    rec = make_record()
    bundle = rec.root / "statement.sigstore.json"
    original = bundle.read_bytes()
    try:
        _rewrite_envelope(bundle, field, lambda b: _flip(b, index, mask))
        verdict = verify_record(rec.root, KeyPolicy.from_file(rec.public_key))
        assert isinstance(verdict.error, VerificationError)
    finally:
        bundle.write_bytes(original)


@PROPERTY
@given(
    which=st.sampled_from(["model.bin", "eval/metrics.json"]),
    index=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipped_output_byte_is_detected(
    make_record: Callable[..., Any], which: str, index: int, mask: int
) -> None:
    rec = make_record()
    path = rec.root / "outputs" / which
    original = path.read_bytes()
    try:
        path.write_bytes(_flip(original, index, mask))
        verdict = verify_record(rec.root, KeyPolicy.from_file(rec.public_key))
        assert isinstance(verdict.error, MismatchError)
        assert verdict.artifacts is not None and verdict.artifacts.mismatched == (which,)
    finally:
        path.write_bytes(original)
    assert verify_record(rec.root, KeyPolicy.from_file(rec.public_key)).error is None

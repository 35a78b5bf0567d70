"""Registry references and the names a pulled artifact may write: refused unless plain."""

from __future__ import annotations

import pytest

from executor.errors import InputError, MismatchError
from executor.registry import _safe_name, parse_reference


def test_references_parse_and_bad_ones_say_the_form() -> None:
    ref = parse_reference("127.0.0.1:5000/models/churn:1.4")
    assert (ref.host, ref.repo, ref.tag, ref.digest) == (
        "127.0.0.1:5000",
        "models/churn",
        "1.4",
        None,
    )
    pinned = parse_reference("r.example/m@sha256:" + "a" * 64)
    assert pinned.digest == "sha256:" + "a" * 64 and pinned.tag is None
    for bad in ("models/churn", "r.example/M:1", "r.example/m@sha256:short", "r.example/m"):
        with pytest.raises(InputError, match="not a registry reference"):
            parse_reference(bad)


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", "", "nul\x00x"])
def test_a_layer_name_that_leaves_the_output_directory_is_refused(name: str) -> None:
    with pytest.raises(MismatchError):
        _safe_name(name)
    assert str(_safe_name("model/w.txt")) == "model/w.txt"

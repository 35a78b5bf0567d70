"""The run record is complete or absent: staging, atomic publish, listing."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from executor.errors import InputError
from executor.record import writer


def test_run_ids_sort_by_time_and_are_unique() -> None:
    a = writer.new_run_id("demo", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert a.startswith("20260102T030405Z-demo-") and len(a.rsplit("-", 1)[1]) == 6
    assert writer.new_run_id("demo") != writer.new_run_id("demo")


def test_record_is_invisible_until_committed(tmp_path: Path) -> None:
    staged = writer.RecordWriter(tmp_path, "r1")
    staged.write("statement.json", b"{}")
    staged.write_json("nested/x.json", {"b": 1, "a": 2})
    assert writer.list_records(tmp_path) == []
    assert stat.S_IMODE(staged.staging.stat().st_mode) == 0o700  # private while being written
    final = staged.commit()
    assert writer.list_records(tmp_path) == [final]
    assert (final / "statement.json").read_bytes() == b"{}"
    assert (final / "nested" / "x.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert not staged.staging.exists()
    assert not list(final.rglob("*.tmp"))


def test_discard_leaves_nothing(tmp_path: Path) -> None:
    staged = writer.RecordWriter(tmp_path, "r2")
    staged.write("a", b"1")
    staged.discard()
    assert list(tmp_path.iterdir()) == []


def test_existing_record_is_never_overwritten(tmp_path: Path) -> None:
    writer.RecordWriter(tmp_path, "r3").commit()
    with pytest.raises(InputError, match="already exists"):
        writer.RecordWriter(tmp_path, "r3")

"""A data contract: what an input's files must look like before a job may read them.

Declared in a spec under ``[inputs.contract]`` (docs/pipelines.md), parsed here
with every problem reported at once, recorded in the signed spec view (so a
changed contract is a changed stage) and checked by :mod:`.check`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FORMATS", "TYPES", "ColumnRule", "Contract", "parse_contract"]

FORMATS = ("csv", "jsonl", "parquet")
TYPES = ("int", "float", "string", "bool")
DEFAULT_MAX_FILE_BYTES = 4 << 30


@dataclass(frozen=True)
class ColumnRule:
    """One column's rules: its type, whether it must exist, nulls and range allowed."""

    name: str
    type: str | None = None
    required: bool = True
    max_null_rate: float = 0.0
    min: float | None = None
    max: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The rule as the signed spec view records it."""
        doc: dict[str, Any] = {"required": self.required, "maxNullRate": self.max_null_rate}
        for key, value in (("type", self.type), ("min", self.min), ("max", self.max)):
            if value is not None:
                doc[key] = value
        return doc


@dataclass(frozen=True)
class Contract:
    """The files of an input that must match, their format, row counts and column rules."""

    files: str
    format: str
    min_rows: int | None = None
    max_rows: int | None = None
    columns: tuple[ColumnRule, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def to_json(self) -> dict[str, Any]:
        """The contract as the signed spec view records it (``fromJson`` reads it back)."""
        doc: dict[str, Any] = {
            "files": self.files,
            "format": self.format,
            "maxFileBytes": self.max_file_bytes,
            "columns": {c.name: c.to_json() for c in self.columns},
        }
        if self.min_rows is not None:
            doc["minRows"] = self.min_rows
        if self.max_rows is not None:
            doc["maxRows"] = self.max_rows
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Contract:
        """A contract from a record's spec view (replay, rerun, regenerate)."""
        return cls(
            files=str(doc["files"]),
            format=str(doc["format"]),
            min_rows=doc.get("minRows"),
            max_rows=doc.get("maxRows"),
            max_file_bytes=int(doc.get("maxFileBytes", DEFAULT_MAX_FILE_BYTES)),
            columns=tuple(
                ColumnRule(
                    name=name,
                    type=rule.get("type"),
                    required=bool(rule.get("required", True)),
                    max_null_rate=float(rule.get("maxNullRate", 0.0)),
                    min=rule.get("min"),
                    max=rule.get("max"),
                )
                for name, rule in sorted((doc.get("columns") or {}).items())
            ),
        )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_contract(raw: Any, key: str, add_error: Any) -> Contract | None:
    """``[inputs.contract]`` as a :class:`Contract`; each problem to ``add_error(key, msg)``."""
    if not isinstance(raw, Mapping):
        add_error(key, "expected a table: files, format, min_rows, max_rows, [columns.NAME]")
        return None
    known = {"files", "format", "min_rows", "max_rows", "columns", "max_file_bytes"}
    for unknown in sorted(set(raw) - known):
        add_error(f"{key}.{unknown}", f"unknown key; expected one of {', '.join(sorted(known))}")
    files = raw.get("files")
    if not isinstance(files, str) or not files or files.startswith("/") or ".." in files.split("/"):
        add_error(f"{key}.files", 'expected a glob under the input, e.g. "*.csv" or "**/*.parquet"')
        files = None
    fmt = raw.get("format")
    if fmt is None and isinstance(files, str):
        fmt = next((f for f in FORMATS if files.endswith(f".{f}")), None)
    if fmt not in FORMATS:
        add_error(
            f"{key}.format", f"expected one of {', '.join(FORMATS)} (or a files glob ending so)"
        )
    for bound in ("min_rows", "max_rows", "max_file_bytes"):
        value = raw.get(bound)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            add_error(f"{key}.{bound}", "expected a non-negative integer")
    columns: list[ColumnRule] = []
    table = raw.get("columns", {})
    if not isinstance(table, Mapping):
        add_error(f"{key}.columns", "expected a table of columns: [inputs.contract.columns.NAME]")
        table = {}
    for name, rule in sorted(table.items()):
        where = f"{key}.columns.{name}"
        if not isinstance(rule, Mapping):
            add_error(where, "expected a table: type, required, max_null_rate, min, max")
            continue
        for unknown in sorted(set(rule) - {"type", "required", "max_null_rate", "min", "max"}):
            add_error(
                f"{where}.{unknown}",
                "unknown key; expected type, required, max_null_rate, min, max",
            )
        if rule.get("type") is not None and rule.get("type") not in TYPES:
            add_error(f"{where}.type", f"expected one of {', '.join(TYPES)}")
        rate = rule.get("max_null_rate", 0.0)
        if not _number(rate) or not 0 <= rate <= 1:
            add_error(f"{where}.max_null_rate", "expected a number from 0 to 1")
            rate = 0.0
        for bound in ("min", "max"):
            if rule.get(bound) is not None and not _number(rule.get(bound)):
                add_error(f"{where}.{bound}", "expected a number")
        if not isinstance(rule.get("required", True), bool):
            add_error(f"{where}.required", "expected true or false")
        columns.append(
            ColumnRule(
                name=str(name),
                type=rule.get("type"),
                required=bool(rule.get("required", True)),
                max_null_rate=float(rate),
                min=rule.get("min"),
                max=rule.get("max"),
            )
        )
    if files is None or fmt not in FORMATS:
        return None
    return Contract(
        files=files,
        format=str(fmt),
        min_rows=raw.get("min_rows"),
        max_rows=raw.get("max_rows"),
        columns=tuple(columns),
        max_file_bytes=int(raw.get("max_file_bytes") or DEFAULT_MAX_FILE_BYTES),
    )

"""Checking a contract against an input's files: the one importer of ``pyarrow``.

pyarrow reads CSV, JSON Lines and Parquet into typed columns (and names the row
and column a value fails to convert at), and counts nulls and takes min/max in
C: a validator of our own would be slower and cover less. It is an optional
extra (``rexec[contracts]``): a spec that declares no contract never imports it.

The files are those of the verified snapshot listing (never a glob on the file
system): each is opened without following a link, must be a regular file, and
is read only up to the contract's ``max_file_bytes``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from executor import safeio
from executor.contracts.model import Contract
from executor.errors import InfrastructureError

__all__ = ["violations"]


def _arrow() -> Any:
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
        import pyarrow.json
        import pyarrow.parquet
    except ImportError as exc:
        raise InfrastructureError(
            "this spec declares a data contract, and checking one needs pyarrow",
            hint="pip install 'rexec[contracts]' (pyarrow reads CSV, JSON Lines and Parquet)",
        ) from exc
    return pyarrow


def _types(pa: Any) -> dict[str, Any]:
    return {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "bool": pa.bool_()}


def _read(pa: Any, path: Path, contract: Contract) -> Any:
    """The file as an Arrow table; declared columns are read as their declared types."""
    fd = safeio.open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > contract.max_file_bytes:
            raise ValueError(
                f"{size} bytes, over the contract's max_file_bytes {contract.max_file_bytes}"
            )
        types = _types(pa)
        declared = {c.name: types[c.type] for c in contract.columns if c.type}
        if contract.format == "csv":
            options = pa.csv.ConvertOptions(column_types=declared, strings_can_be_null=True)
            return pa.csv.read_csv(handle, convert_options=options)
        if contract.format == "jsonl":
            schema = pa.schema(list(declared.items()))
            options = pa.json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="infer"
            )
            return pa.json.read_json(handle, parse_options=options)
        return pa.parquet.read_table(handle)


def _column(pa: Any, table: Any, rel: str, rule: Any) -> Iterable[str]:
    where = f"{rel}: column {rule.name!r}"
    if rule.name not in table.column_names:
        if rule.required:
            has = ", ".join(table.column_names) or "none"
            yield f"{where}: missing (required; the file has {has})"
        return
    column = table.column(rule.name)
    wanted = _types(pa).get(rule.type) if rule.type else None
    if wanted is not None and not column.type.equals(wanted):
        compatible = rule.type == "float" and pa.types.is_integer(column.type)
        if not compatible:
            yield f"{where}: type {column.type}, the contract says {rule.type}"
            return
    rows = len(column)
    if rows and column.null_count / rows > rule.max_null_rate:
        yield (
            f"{where}: {column.null_count} of {rows} values are null "
            f"({column.null_count / rows:.1%}), the contract allows {rule.max_null_rate:.1%}"
        )
    if (rule.min is not None or rule.max is not None) and rows > column.null_count:
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            yield f"{where}: min/max need a numeric column, found {column.type}"
            return
        bounds = pa.compute.min_max(column).as_py()
        if rule.min is not None and bounds["min"] < rule.min:
            yield f"{where}: min {rule.min}, found {bounds['min']}"
        if rule.max is not None and bounds["max"] > rule.max:
            yield f"{where}: max {rule.max}, found {bounds['max']}"


def violations(root: Path, files: Iterable[str], contract: Contract) -> list[str]:
    """Every way the matching files break ``contract``; ``files`` are the input's regular
    files as its verified listing names them, relative to ``root``."""
    matched = sorted(f for f in files if fnmatch.fnmatchcase(f, contract.files))
    if not matched:
        return [f"no file matches {contract.files!r} (the contract needs at least one)"]
    pa = _arrow()
    found: list[str] = []
    for rel in matched:
        try:
            table = _read(pa, root / rel, contract)
        except (OSError, ValueError, safeio.UnsafeFile, pa.ArrowException) as exc:
            reason = " ".join(str(exc).split())[:300]
            found.append(f"{rel}: not readable as {contract.format}: {reason}")
            continue
        if contract.min_rows is not None and table.num_rows < contract.min_rows:
            found.append(
                f"{rel}: {table.num_rows} rows, the contract needs at least {contract.min_rows}"
            )
        if contract.max_rows is not None and table.num_rows > contract.max_rows:
            found.append(
                f"{rel}: {table.num_rows} rows, the contract allows at most {contract.max_rows}"
            )
        for rule in contract.columns:
            found.extend(_column(pa, table, rel, rule))
    return found

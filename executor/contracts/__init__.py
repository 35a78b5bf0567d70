"""Data contracts: an input's files checked for format, schema and quality before a job reads them.

``model`` is the contract as a spec declares it and a record keeps it; ``check``
reads the files (pyarrow) and lists every violation. :func:`enforce` is what
preflight calls: a violation is exit 4, naming the file, the column and the rule.
"""

from __future__ import annotations

from pathlib import Path

from executor.contracts.check import violations
from executor.contracts.model import FORMATS, TYPES, ColumnRule, Contract, parse_contract
from executor.errors import MismatchError

__all__ = [
    "FORMATS",
    "TYPES",
    "ColumnRule",
    "Contract",
    "ContractViolation",
    "enforce",
    "parse_contract",
    "violations",
]


class ContractViolation(MismatchError):
    """An input's data breaks the contract its spec declares."""


def enforce(name: str, root: Path, files: list[str], contract: Contract) -> None:
    """Raise :class:`ContractViolation` listing every broken rule of input ``name``."""
    found = violations(root, files, contract)
    if found:
        raise ContractViolation(
            f"input {name!r} breaks its data contract: {found[0]}",
            details=found,
            hint="correct the data (or the contract in the spec); nothing was run",
        )

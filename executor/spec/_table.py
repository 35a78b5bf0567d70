"""Reading a decoded TOML table: typed gets, key paths, unknown keys, every problem at once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from executor.errors import SpecError


class Errors:
    """Collects every problem in a spec, then raises one SpecError."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            count = len(self.items)
            raise SpecError(
                f"{self.source}: {count} problem{'s' if count > 1 else ''} in the run spec",
                details=self.items,
                hint="see docs/spec.md for every key, its type and an example",
            )


class Table:
    """A TOML table being read: tracks which keys were consumed."""

    def __init__(self, data: Mapping[str, Any], path: str, errors: Errors) -> None:
        self.data = data
        self.path = path
        self.errors = errors
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type | tuple[type, ...], *, required: bool = False) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if required:
                self.errors.add(self.key(name), "required key is missing")
            return None
        value = self.data[name]
        # bool is an int in Python; a spec that says `seed = true` is wrong.
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            self.errors.add(self.key(name), f"expected {_kind_name(kind)}, got a boolean")
            return None
        if not isinstance(value, kind):
            self.errors.add(
                self.key(name), f"expected {_kind_name(kind)}, got {type(value).__name__}"
            )
            return None
        return value

    def table(self, name: str, *, required: bool = False) -> Table | None:
        value = self.get(name, dict, required=required)
        return None if value is None else Table(value, self.key(name), self.errors)

    def finish(self) -> None:
        for extra in sorted(set(self.data) - self.seen):
            self.errors.add(self.key(extra), "unknown key (check the spelling; see docs/spec.md)")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def container_path(
    table: Table, name: str, default: str | None = None, *, required: bool = False
) -> str | None:
    value = table.get(name, str, required=required and default is None)
    if value is None:
        return default
    if not value.startswith("/") or ".." in PurePosixPath(value).parts or "\0" in value:
        table.errors.add(table.key(name), f"expected an absolute container path, got {value!r}")
        return default
    return str(PurePosixPath(value))


def host_path(table: Table, name: str, base: Path, *, required: bool = True) -> Path | None:
    value: str | None = table.get(name, str, required=required)
    if value is None:
        return None
    return (base / value).resolve()


def declared_names(table: Table, key: str) -> list[str]:
    """The ``name`` of each entry of an array of tables, valid or not (a placeholder that
    names an unpinned input is that input's problem, not an unknown name)."""
    return [str(i.get("name")) for i in table.data.get(key) or [] if isinstance(i, dict)]

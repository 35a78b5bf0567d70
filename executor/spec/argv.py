"""The job's argv from ``run.command``: placeholders filled, params as flags if asked.

Most trainers take their hyperparameters as flags (``--lr 0.1 --seed 1``). So
``command`` may name the spec's own values, and the argv that ran is built
here, from the spec alone, in the same way on every machine and on replay:

* ``{params.lr}`` (``{params.opt.lr}`` for a nested table), ``{seed}``,
  ``{outputs}`` (the outputs mount), ``{reports}``, ``{params_file}``,
  ``{code}`` (the code mount) and ``{inputs.NAME}`` (that input's mount),
  whole words or inside one (``--lr={params.lr}``). ``{{seed}}`` is a literal
  ``{seed}``; any other brace is left as it is, so ``python -c`` code is safe;
* ``params_as = "flags"`` appends ``--key value`` for every top-level param
  in key order (the order of ``params.json``, so a replay renders the same),
  ``"flags="`` appends ``--key=value``; ``true`` is a bare ``--key``,
  ``false`` is left out, an array is ``--key a b`` (``--key=a --key=b``).

No shell: each word stays one argv element, whatever it holds. Values keep
their TOML spelling (``0.1``, ``true``), which ``argparse``'s ``float``,
``int`` and string types read back unchanged. Problems are found when the
spec is read, so a run never fails half-way for a misspelt placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "PARAMS_AS",
    "RESERVED_WORDS",
    "check_command",
    "check_words",
    "format_value",
    "render_command",
    "render_words",
]

PARAMS_AS = ("json", "flags", "flags=")
RESERVED_WORDS = ("seed", "outputs", "reports", "params_file", "code")
# {{name}} (a literal) or {name}, where name is a reserved word or a dotted path.
_PLACEHOLDER = re.compile(
    r"\{\{((?:params|inputs)\.[A-Za-z0-9_.\-]+|" + "|".join(RESERVED_WORDS) + r")\}\}"
    r"|\{((?:params|inputs)\.[A-Za-z0-9_.\-]+|" + "|".join(RESERVED_WORDS) + r")\}"
)


def format_value(value: Any) -> str:
    """One scalar as an argv word: TOML's spelling (``true``, ``0.1``, ``3``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value) if not isinstance(value, float) else repr(value)
    raise TypeError(f"{type(value).__name__} is not one word")


def _lookup(params: Mapping[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _substitute(word: str, resolve: Callable[[str], str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return "{" + match.group(1) + "}"
        return resolve(match.group(2))

    return _PLACEHOLDER.sub(one, word)


def check_command(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    params: Mapping[str, Any],
    params_as: str,
    inputs: Sequence[str],
    has_code: bool,
    add_error: Callable[[str, str], None],
) -> None:
    """Report every placeholder or param that cannot become argv words (or, in ``env``,
    values: they take the same placeholders), by key path."""
    where = [(f"run.command[{i}]", word) for i, word in enumerate(command)]
    where += [(f"run.env.{name}", value) for name, value in (env or {}).items()]
    for key, text in where:
        check_words(text, key, params=params, inputs=inputs, has_code=has_code, add_error=add_error)
    if params_as not in PARAMS_AS:
        add_error("run.params_as", f"expected one of {', '.join(map(repr, PARAMS_AS))}")
    elif params_as != "json":
        for key, value in params.items():
            if isinstance(value, dict):
                add_error(
                    f"params.{key}",
                    f'a table cannot be passed as a flag (run.params_as = "{params_as}"); '
                    f"flatten it into top-level params, or name its values as {{params.{key}.…}}",
                )
            elif isinstance(value, list) and (
                not value or any(isinstance(v, dict | list) for v in value)
            ):
                add_error(
                    f"params.{key}",
                    f'run.params_as = "{params_as}" passes an array as --{key} v1 v2 …, '
                    "which needs a non-empty array of scalars",
                )


def check_words(
    text: str,
    key: str,
    *,
    params: Mapping[str, Any],
    inputs: Sequence[str],
    has_code: bool,
    add_error: Callable[[str, str], None],
) -> None:
    """Report each placeholder in ``text`` (a command word, an env value) that cannot be
    filled, under ``key``."""
    known = ", ".join(sorted(params)) or "none"

    def resolve(name: str) -> str:
        if name.startswith("params."):
            try:
                value = _lookup(params, name.removeprefix("params."))
            except KeyError:
                add_error(
                    key, f"{{{name}}}: no such parameter in [params] (top-level keys: {known})"
                )
                return ""
            if isinstance(value, dict | list):
                add_error(
                    key,
                    f"{{{name}}} is {'a table' if isinstance(value, dict) else 'an array'}, "
                    f"which is not one {'argv word' if 'command' in key else 'value'}; "
                    "name one of its scalar values",
                )
        elif name.startswith("inputs.") and name.removeprefix("inputs.") not in inputs:
            add_error(key, f"{{{name}}}: no such input (inputs: {', '.join(inputs) or 'none'})")
        elif name == "code" and not has_code:
            add_error(key, "{code}: the spec has no [code] table")
        return ""

    _substitute(text, resolve)


def render_words(text: str, *, params: Mapping[str, Any], words: Mapping[str, str]) -> str:
    """``text`` with its placeholders filled (checked by :func:`check_words`)."""

    def resolve(name: str) -> str:
        if name.startswith("params."):
            return format_value(_lookup(params, name.removeprefix("params.")))
        return words[name]

    return _substitute(text, resolve)


def render_command(
    command: Sequence[str],
    *,
    params: Mapping[str, Any],
    params_as: str,
    words: Mapping[str, str],
) -> list[str]:
    """The argv that runs: placeholders filled from ``words`` and params, then the flags.

    ``words`` holds ``seed``, ``outputs``, ``reports``, ``params_file``, ``code``
    and ``inputs.NAME``. The spec was checked by :func:`check_command`, so every
    placeholder resolves.
    """

    argv = [render_words(word, params=params, words=words) for word in command]
    if params_as == "json":
        return argv
    joined = params_as == "flags="
    for key in sorted(params):  # the order params.json has, so a replay renders the same
        value = params[key]
        flag = f"--{key}"
        if value is True:
            argv.append(flag)
        elif value is False:
            continue
        elif isinstance(value, list):
            items = [format_value(v) for v in value]
            argv += [f"{flag}={v}" for v in items] if joined else [flag, *items]
        else:
            argv += [f"{flag}={format_value(value)}"] if joined else [flag, format_value(value)]
    return argv

"""What the diff, replay and rerun commands print, drawn once: records, environments, outputs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from executor.outputs import display_text

# rich and the comparisons are imported where text is drawn: a command that prints JSON,
# or nothing, starts without them (a twentieth of a second).
if TYPE_CHECKING:
    from rich.console import Console

    from executor.compare import EnvDiff, OutputComparison


def safe(value: object) -> str:
    """What a record holds, printed inert: control characters and rich markup escaped."""
    from rich.markup import escape

    return escape(display_text(value))


def console() -> Console:
    """Colour on a terminal only; never re-wrap lines (they may be pasted into tickets)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, no_color=not sys.stdout.isatty())


def input_lines(inputs: dict[str, Any]) -> Iterable[tuple[str, bool]]:
    """The inputs section of a diff as (line, same) pairs; every value is the records'."""
    for key in ("image", "code", "seed", "command", "argv"):
        item = inputs.get(key)
        if item is None:  # a diff made before this key existed
            continue
        if item["same"]:
            yield f"{key}: same", True
        elif key == "code":
            yield _code_line(item["a"], item["b"]), False
        elif key == "argv" and _same_length_lists(item["a"], item["b"]):
            for i, (x, y) in enumerate(zip(item["a"], item["b"], strict=True)):
                if x != y:
                    yield f"argv[{i}]: {_short(x)} → {_short(y)}", False
        else:
            yield f"{key}: {_short(item['a'])} → {_short(item['b'])}", False
        for side in ("a", "b"):
            given = (item.get("overrides") or {}).get(side)
            if isinstance(given, dict):
                yield (
                    f"  {side.upper()} overrode {key} (--seed): default {given.get('default')!r}"
                    f" → {given.get('value')!r}",
                    True,
                )
    for snap in inputs["snapshots"]["entries"]:
        if snap["status"] == "same":
            yield f"snapshot {snap['name']}: same ({snap['a']})", True
            continue
        yield f"snapshot {snap['name']}: {snap['status']} {snap['a']} → {snap['b']}", False
        for kind, paths in sorted((snap["files"] or {}).items()):
            for path in paths:
                yield f"    {kind}: {path}", False
    params = inputs["params"]
    if params["same"]:
        yield "params: same", True
    for change in params["changed"]:
        yield f"param {change['key']}: {change['a']!r} → {change['b']!r}", False
    for side in ("a", "b"):
        for o in params["overrides"][side]:
            yield (
                f"  {side.upper()} overrode {o['key']}: default {o['default']!r} → {o['value']!r}",
                True,
            )
    for change in inputs["other"]["changed"]:
        yield f"spec {change['key']}: {change['a']!r} → {change['b']!r}", False


def _same_length_lists(a: Any, b: Any) -> bool:
    return isinstance(a, list) and isinstance(b, list) and len(a) == len(b)


def _code_line(a: Any, b: Any) -> str:
    """Code that differs: "same tree, other commit" says the bytes that ran were the same."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return f"code: {_short(a)} → {_short(b)}"
    commits = f"commit {a.get('gitCommit')} → {b.get('gitCommit')}"
    if a.get("treeDigest") == b.get("treeDigest") and a.get("treeDigest") is not None:
        dirty = (
            ""
            if a.get("dirty") == b.get("dirty")
            else f", dirty {a.get('dirty')} → {b.get('dirty')}"
        )
        return f"code: same tree {a['treeDigest']}, other {commits}{dirty}"
    return f"code: tree {a.get('treeDigest')} → {b.get('treeDigest')} ({commits})"


def _short(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def print_env(out: Console, env: EnvDiff, *, indent: str = "") -> None:
    from rich.markup import escape

    from executor.compare import BREAKS, MAY_BREAK

    styles = {BREAKS: "red", MAY_BREAK: "yellow"}
    if not env.differences:
        out.print(f"{indent}[green]same host capture[/]")
        return
    for d in env.differences:
        style = styles.get(d.impact, "dim")
        out.print(
            f"{indent}[{style}]{d.impact:<17}[/] {escape(d.path)}: "
            f"{escape(_short(d.recorded))} → {escape(_short(d.current))}"
        )


def print_outputs(out: Console, comparison: OutputComparison, *, indent: str = "") -> None:
    from rich.markup import escape

    for f in comparison.files:
        style = _STATUS_STYLE.get(f.status, "")
        line = f"{indent}[{style}]{f.status:<16}[/] {escape(f.name)}"
        if f.numeric is not None:
            n = f.numeric
            if n.structure:
                line += f"  ({escape(n.structure)})"
            else:
                line += f"  max abs diff {n.max_abs:.3g}"
                if n.where is not None:
                    line += f" at {escape(n.where)}"
                line += f", max rel diff {n.max_rel:.3g}"
                if f.tolerance is not None:
                    line += (
                        f", tolerance rtol={f.tolerance.rtol:g} atol={f.tolerance.atol:g}"
                        f" ({n.outside} of {n.elements} outside)"
                    )
        if f.note:
            line += f"  ({escape(f.note)})"
        out.print(line)


_STATUS_STYLE = {
    "identical": "green",
    "within-tolerance": "yellow",
    "volatile": "cyan",
    "different": "red",
    "missing": "red",
    "extra": "red",
}

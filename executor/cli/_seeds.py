"""``rexec run --seeds``: the same spec under several seeds, and how much each metric moves.

A change that moves accuracy by 0.002 is no improvement when the seed alone
moves it by 0.01. Each seed is an ordinary signed run (its seed recorded as an
override); the spread is computed from their JSON outputs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from executor.cli._render import console, safe

if TYPE_CHECKING:
    from executor.compare import MetricSpread

MAX_SEEDS = 100


def seeds_value(text: str) -> tuple[int, ...] | int:
    """``--seeds 3`` (three seeds from the spec's, or --seed's, upwards) or ``--seeds 1,5,9``."""
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count (3) or a list of seeds (1,5,9), got {text!r}"
        ) from None
    if len(numbers) == 1:
        if not 2 <= numbers[0] <= MAX_SEEDS:
            raise argparse.ArgumentTypeError(f"expected from 2 to {MAX_SEEDS} runs, got {text}")
        return numbers[0]
    if len(set(numbers)) != len(numbers) or not all(0 <= n < 2**32 for n in numbers):
        raise argparse.ArgumentTypeError(f"expected distinct seeds from 0 to 2**32-1, got {text}")
    return tuple(numbers)


def seed_list(given: tuple[int, ...] | int, base: int) -> list[int]:
    """The seeds to run: an explicit list as given, a count upwards from ``base``."""
    if isinstance(given, tuple):
        return list(given)
    return [(base + i) % 2**32 for i in range(given)]


def print_spread(seeds: list[int], spreads: list[MetricSpread]) -> None:
    """A table: each metric's value per seed, its mean, standard deviation and range."""
    out = console()
    out.print(f"[bold]metrics over {len(seeds)} seeds[/] ({', '.join(map(str, seeds))})")
    if not spreads:
        out.print(
            "  no metrics: none in the runs' .json outputs, and the spec declares none; "
            "[[metrics]] reads them from stdout, TensorBoard, JSON Lines or CSV (docs/spec.md)"
        )
        return
    for s in spreads:
        values = " ".join(f"{v:.6g}" for v in s.values)
        out.print(
            f"  {safe(s.file)} {safe(s.key)}: mean {s.mean:.6g} ± {s.stdev:.3g} (sd), "
            f"range {min(s.values):.6g}…{max(s.values):.6g}  [dim]\\[{safe(values)}][/]"
        )
    out.print(
        "  a difference smaller than about twice the sd is within seed noise; "
        "compare another configuration with the same --seeds"
    )

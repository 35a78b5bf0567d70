"""Metrics: what a spec declares about where a run's numbers are, and the series read.

The face of the package: declarations (:class:`Source`, parsed from ``[[metrics]]``),
series (:class:`Series`), the readers of each format, and the noise reference that
says whether a change is within the spread of seeds.
"""

from executor.metrics.model import SUMMARIES, Series, Source, parse_sources
from executor.metrics.noise import Noise, noise_of
from executor.metrics.read import READERS, Points, from_json, from_log
from executor.metrics.tensorboard import add_events, from_events

__all__ = [
    "READERS",
    "SUMMARIES",
    "Noise",
    "Points",
    "Series",
    "Source",
    "add_events",
    "from_events",
    "from_json",
    "from_log",
    "noise_of",
    "parse_sources",
]

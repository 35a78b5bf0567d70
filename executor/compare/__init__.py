"""Comparing runs (the face of ``compare/``): their outputs, file by file with numeric
tolerance (``outputs``), their hosts (``env``), their metrics and the spread of a metric
over seeds (``metrics``), and two records side by side (``records``); ``numeric`` reads
tensors and JSON numbers with the standard library only.
"""

from __future__ import annotations

from executor.compare.env import BREAKS, MAY_BREAK, EnvDiff, classify
from executor.compare.metrics import (
    MetricChange,
    MetricSpread,
    metric_changes,
    metric_spread,
    series_of,
)
from executor.compare.numeric import (
    NUMERIC_CAP,
    NotNumeric,
    NumericDiff,
    Tensor,
    flatten,
    json_number,
    numeric_diff,
    parse_npy,
    parse_safetensors,
    read_numeric,
)
from executor.compare.outputs import (
    DIFFERENT,
    EXTRA,
    IDENTICAL,
    MISSING,
    NUMERIC_SUFFIXES,
    VOLATILE,
    WITHIN_TOLERANCE,
    FileComparison,
    OutputComparison,
    compare_outputs,
    match_tolerance,
)
from executor.compare.records import RecordDiff, diff_records

__all__ = [
    "BREAKS",
    "DIFFERENT",
    "EXTRA",
    "IDENTICAL",
    "MAY_BREAK",
    "MISSING",
    "NUMERIC_CAP",
    "NUMERIC_SUFFIXES",
    "VOLATILE",
    "WITHIN_TOLERANCE",
    "EnvDiff",
    "FileComparison",
    "MetricChange",
    "MetricSpread",
    "NotNumeric",
    "NumericDiff",
    "OutputComparison",
    "RecordDiff",
    "Tensor",
    "classify",
    "compare_outputs",
    "diff_records",
    "flatten",
    "json_number",
    "match_tolerance",
    "metric_changes",
    "metric_spread",
    "numeric_diff",
    "parse_npy",
    "parse_safetensors",
    "read_numeric",
    "series_of",
]

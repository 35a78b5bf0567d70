"""Pipelines of runs: stages in order with a signed stage cache, and regeneration of
everything downstream of a corrected input (the face of ``pipelines/``).

``pipefile`` reads pipeline.toml and orders its stages, ``reuse`` decides reuse
(stage key + verified record), ``run`` runs a pipeline, ``campaign`` plans a
regeneration (the current downstream closure of a corrected digest, verified) and
``regenerate`` runs it, ``ledger`` signs what was decided, ``report`` writes the
side-by-side. docs/pipelines.md walks through it.
"""

from __future__ import annotations

from executor.pipelines.campaign import SCHEMA as REGENERATION_SCHEMA
from executor.pipelines.campaign import Campaign, RegenOptions, plan_regeneration
from executor.pipelines.pipefile import Overrides, Pipeline, Stage, load_pipeline
from executor.pipelines.regenerate import regenerate
from executor.pipelines.report import regeneration_html
from executor.pipelines.run import SCHEMA as PIPELINE_SCHEMA
from executor.pipelines.run import PipelineOptions, StageOutcome, run_pipeline

__all__ = [
    "PIPELINE_SCHEMA",
    "REGENERATION_SCHEMA",
    "Campaign",
    "Overrides",
    "Pipeline",
    "PipelineOptions",
    "RegenOptions",
    "Stage",
    "StageOutcome",
    "load_pipeline",
    "plan_regeneration",
    "regenerate",
    "regeneration_html",
    "run_pipeline",
]

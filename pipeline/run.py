"""Runs the pipeline, or only its ingestion, locally with Beam (what `mura pipeline run` and `mura ingest` do)."""

from __future__ import annotations

from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from mura.config import Settings
from pipeline.definition import create_ingestion_pipeline, create_pipeline


def run_pipeline(settings: Settings) -> None:
    """Raises DataQualityError or MuraLayoutError (from ingestion) or RuntimeError (a component failed)."""
    BeamDagRunner().run(create_pipeline(settings))


def run_ingestion(settings: Settings) -> None:
    """Only ingestion and validation, for a new data drop: is it fit to train on?"""
    BeamDagRunner().run(create_ingestion_pipeline(settings))

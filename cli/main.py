"""The `mura` command: one entry point for everything a user does with the pipeline."""

from __future__ import annotations

import click

from cli.data import audit, import_dicom_command, ingest, sample
from cli.drift import drift
from cli.kubeflow import kfp
from cli.runs import pipeline, report, settings
from cli.serve import predict, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Bone X-ray abnormality detection on MURA: data, pipeline, serving.

    Start with `mura sample --out data` for a synthetic MURA-shaped data set, or point the other commands at a
    real MURA-v1.1 download (the folder that holds MURA-v1.1/). Every setting can come from a flag, `--set
    SECTION.FIELD=VALUE`, a settings file (`--settings FILE`, TOML or YAML) or a MURA_<SECTION>_<FIELD> variable:
    `mura settings` lists them with their values.
    """


for command in (sample, import_dicom_command, audit, ingest, pipeline, report, settings, serve, predict, drift, kfp):
    main.add_command(command)

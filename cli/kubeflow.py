"""Kubeflow Pipelines commands: compile the pipeline for KFP v2 and submit runs."""

from __future__ import annotations

import click

from cli.options import quiet_tensorflow, with_settings
from mura.config import Settings


@click.group()
def kfp() -> None:
    """Kubeflow Pipelines v2: compile the pipeline (Trainer on GPU nodes) and submit runs.

    Data root, pipeline root, the gate and training come from the settings (flags, --set, --settings, MURA_*);
    use object-storage URIs (gs://, s3://) or paths on the PVC named by --pvc.
    """


@kfp.command("compile")
@click.option("--output", type=click.Path(dir_okay=False), default="pipeline.yaml", show_default=True)
@with_settings(
    ("kubeflow.image", "--image"),
    ("kubeflow.trainer_gpus", "--gpus"),
    ("kubeflow.pvc_name", "--pvc"),
)
def kfp_compile(output: str, settings: Settings) -> None:
    """Compile to a KFP v2 pipeline.yaml: the Trainer asks for nvidia.com/gpu and lands on GPU nodes."""
    quiet_tensorflow(verbose=False)
    from pipeline.kubeflow_runner import compile_pipeline

    written = compile_pipeline(output, settings)
    click.echo(f"Compiled {written} ({settings.profile} profile, image {settings.kubeflow.image}).")


@kfp.command("submit")
@click.option("--host", required=True, help="The Kubeflow Pipelines API, e.g. http://localhost:8080.")
@click.option("--package", type=click.Path(exists=True, dir_okay=False), default="pipeline.yaml", show_default=True)
@click.option("--experiment", default="mura", show_default=True)
@click.option("--run-name", default=None, help="[default: the pipeline's name and the time]")
def kfp_submit(host: str, package: str, experiment: str, run_name: str | None) -> None:
    """Start a run of a compiled pipeline.yaml on Kubeflow Pipelines."""
    import kfp as kfp_sdk

    try:
        client = kfp_sdk.Client(host=host)
        run = client.create_run_from_pipeline_package(
            package, arguments={}, run_name=run_name, experiment_name=experiment
        )
    except Exception as error:  # kfp raises plain exceptions and urllib3 errors alike
        raise click.ClickException(f"could not submit to {host}: {error}") from None
    click.echo(f"Run {run.run_id} started: {host.rstrip('/')}/#/runs/details/{run.run_id}")

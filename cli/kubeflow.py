"""Kubeflow Pipelines commands: compile the pipeline for KFP v2 and submit runs of it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.options import parse_assignments, quiet_tensorflow, with_settings
from mura.config import Settings

if TYPE_CHECKING:
    import kfp as kfp_sdk

FINAL_STATES = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


@click.group()
def kfp() -> None:
    """Kubeflow Pipelines v2: compile the pipeline (Trainer on GPU nodes) and submit runs.

    Data root, serving root, the gate and training come from the settings (flags, --set, --settings, MURA_*);
    with --pvc they default to the volume's layout. A run can change them again with `submit --param`.
    """


@kfp.command("compile")
@click.option("--output", type=click.Path(dir_okay=False), default="pipeline.yaml", show_default=True)
@with_settings(
    ("kubeflow.image", "--image"),
    ("kubeflow.trainer_gpus", "--gpus"),
    ("kubeflow.pvc_name", "--pvc"),
)
def kfp_compile(output: str, settings: Settings) -> None:
    """Compile to a KFP v2 pipeline.yaml: the Trainer asks for nvidia.com/gpu and lands on GPU nodes; data root,
    serving root, gate and training settings are run parameters."""
    quiet_tensorflow(verbose=False)
    from pipeline.kubeflow_runner import KubeflowSettingsError, compile_pipeline

    try:
        written, parameters = compile_pipeline(output, settings)
    except KubeflowSettingsError as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"Compiled {written} ({settings.profile} profile, image {settings.kubeflow.image}).")
    click.echo("Run parameters (change them per run with `mura kfp submit --param SECTION.FIELD=VALUE`):")
    for name, value in parameters.items():
        shown = value if len(str(value)) <= 60 else f"{str(value)[:57]}..."
        click.echo(f"  {name} = {shown}")


@kfp.command("submit")
@click.option("--host", required=True, help="The Kubeflow Pipelines API, e.g. http://localhost:8080.")
@click.option("--package", type=click.Path(exists=True, dir_okay=False), default="pipeline.yaml", show_default=True)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="SECTION.FIELD=VALUE",
    help="Change a run parameter through its setting, repeatable: --param gate.auc_floor=0.8 "
    "--param run.data_root=gs://bucket/mura-2026-12 --param train.finetune_epochs=30.",
)
@click.option("--run-name", default=None, help="[default: the pipeline's name and the time]")
@click.option("--experiment", default="mura", show_default=True, help="The experiment the run is filed under.")
@click.option("--namespace", default=None, help="The Kubeflow profile namespace (multi-user Kubeflow).")
@click.option("--wait", is_flag=True, help="Follow the run, print each step's state, exit non-zero if it fails.")
@click.option("--timeout", type=click.IntRange(1), default=24 * 3600, show_default=True, help="Seconds, with --wait.")
def kfp_submit(
    host: str,
    package: str,
    params: tuple[str, ...],
    run_name: str | None,
    experiment: str,
    namespace: str | None,
    wait: bool,
    timeout: int,
) -> None:
    """Start a run of a compiled pipeline.yaml on Kubeflow Pipelines."""
    import kfp as kfp_sdk

    from pipeline.kubeflow_runner import KubeflowSettingsError, run_arguments_for

    try:
        arguments = run_arguments_for(Path(package), parse_assignments(params, "--param"))
    except KubeflowSettingsError as error:
        raise click.UsageError(str(error)) from None
    name = run_name or f"mura {time.strftime('%Y-%m-%d %H:%M:%S')}"
    try:
        client = kfp_sdk.Client(host=host, namespace=namespace)
        run = client.create_run_from_pipeline_package(
            package, arguments=arguments, run_name=name, experiment_name=experiment, namespace=namespace
        )
    except Exception as error:  # kfp raises plain exceptions, ApiExceptions and urllib3 errors alike
        raise click.ClickException(f"could not submit to {host}: {_reason(error)}") from None
    click.echo(f"Run {run.run_id} ({name}) started: {host.rstrip('/')}/#/runs/details/{run.run_id}")
    for key, value in arguments.items():
        click.echo(f"  {key} = {value if len(str(value)) <= 60 else str(value)[:57] + '...'}")
    if wait:
        _follow(client, run.run_id, timeout)


def _reason(error: Exception) -> str:
    """One sentence for the usual failures: no server there, a refused token, anything else as it is."""
    status = getattr(error, "status", None)
    if status in (401, 403):
        return f"the server refused the credentials ({status} {getattr(error, 'reason', '')}); check your token"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "Connection refused" in str(error) or "Max retries exceeded" in str(error):
        return f"no Kubeflow Pipelines API answers there ({text})"
    return text


def _follow(client: kfp_sdk.Client, run_id: str, timeout: int) -> None:
    """Prints each step's state as it changes; exits non-zero unless the run succeeds."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        try:
            run = client.get_run(run_id)
        except Exception as error:  # a dropped connection while following is worth saying, not a traceback
            raise click.ClickException(f"lost the run {run_id}: {_reason(error)}") from None
        for task in getattr(run.run_details, "task_details", None) or []:
            state = str(task.state)
            if task.display_name and seen.get(task.display_name) != state:
                seen[task.display_name] = state
                click.echo(f"  {time.strftime('%H:%M:%S')}  {task.display_name}: {state}")
        state = str(run.state)
        if state in FINAL_STATES:
            click.echo(f"Run {run_id}: {state}")
            if state != "SUCCEEDED":
                raise SystemExit(1)
            return
        if time.monotonic() > deadline:
            raise click.ClickException(f"run {run_id} still {state} after {timeout} s")
        time.sleep(10)

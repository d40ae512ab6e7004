"""TFX's own CLI with the Beam engine: `tfx pipeline create` + `tfx run create` on the tiny sample, a run
killed during the Trainer, and a re-run that reuses what had finished and pushes exactly one version. Settings reach
it only through MURA_* variables and the settings file MURA_SETTINGS names; the Trainer trains with both."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2

from analysis.metadata import open_store
from tests.conftest import TINY_TRAIN
from tests.run_records import latest_trainer, trained_epochs

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
RUNNING, COMPLETE, CACHED = (
    metadata_store_pb2.Execution.RUNNING,
    metadata_store_pb2.Execution.COMPLETE,
    metadata_store_pb2.Execution.CACHED,
)


def states(metadata: Path) -> dict[str, list[int]]:
    """Component type -> states of its executions, oldest first."""
    if not metadata.exists():
        return {}
    found: dict[str, list[int]] = {}
    for execution in sorted(open_store(str(metadata)).get_executions(), key=lambda e: e.id):
        found.setdefault(execution.type.rsplit(".", 1)[-1], []).append(execution.last_known_state)
    return found


@pytest.fixture(scope="module")
def environment(sample_root, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    settings = home / "settings.toml"
    settings.write_text("[train]\nsteps_per_epoch = 2\n")  # the smoke profile's is 3
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "HOME": str(home),  # where the tfx CLI keeps its pipeline registry
        "PATH": f"{venv_bin}:{os.environ['PATH']}",  # the CLI runs `pip freeze` from PATH
        "MURA_RUN_DATA_ROOT": str(sample_root),
        "MURA_PROFILE": "smoke",
        "MURA_RUN_PIPELINE_NAME": "mura-cli",
        "MURA_RUN_PIPELINE_ROOT": str(home / "pipeline"),
        "MURA_GATE_STUDY_KAPPA_FLOOR": "-1",
        "MURA_GATE_AUC_FLOOR": "0",
        "MURA_TRAIN_FINETUNE_EPOCHS": "2",  # the smoke profile's is 1
        "MURA_SETTINGS": str(settings),
    }


def tfx(environment: dict[str, str], *args: str, **kwargs) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "tfx"), *args]
    return subprocess.run(command, env=environment, cwd=ROOT, capture_output=True, text=True, **kwargs)


def test_tfx_cli_run_interrupted_in_the_trainer_then_rerun_pushes_one_version_trained_as_the_settings_say(
    environment,
) -> None:
    created = tfx(
        environment,
        "pipeline",
        "create",
        "--engine",
        "beam",
        "--pipeline_path",
        "pipeline/local_runner.py",
        timeout=600,
    )
    assert created.returncode == 0, created.stderr
    assert 'Pipeline "mura-cli" created successfully.' in created.stdout

    metadata = Path(environment["MURA_RUN_PIPELINE_ROOT"]) / "metadata.sqlite"
    command = [
        str(Path(sys.executable).parent / "tfx"),
        "run",
        "create",
        "--engine",
        "beam",
        "--pipeline_name",
        "mura-cli",
    ]
    first = subprocess.Popen(
        command, env=environment, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 900
    while RUNNING not in states(metadata).get("Trainer", []):
        assert first.poll() is None, "the run ended before its Trainer started"
        assert time.monotonic() < deadline, "the Trainer never started"
        time.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)  # as a lost node or a Ctrl-C would: no clean-up
    first.wait(timeout=60)
    interrupted = states(metadata)
    assert COMPLETE in interrupted["Transform"] and COMPLETE not in interrupted["Trainer"]
    assert not (Path(environment["MURA_RUN_PIPELINE_ROOT"]) / "serving").exists()

    rerun = tfx(environment, "run", "create", "--engine", "beam", "--pipeline_name", "mura-cli", timeout=1500)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = states(metadata)
    for finished in ("MuraExampleGen", "StatisticsGen", "Transform"):
        assert after[finished] == [COMPLETE, CACHED], finished
    assert after["Trainer"][-1] == COMPLETE and after["Trainer"].count(COMPLETE) == 1
    assert after["VersionedPusher"] == [COMPLETE]
    served = Path(environment["MURA_RUN_PIPELINE_ROOT"]) / "serving" / "mura"
    assert sorted(os.listdir(served)) == ["1"]
    assert (served / "1" / "saved_model.pb").exists()
    # What the variables and the settings file said is what the Trainer ran with (the profile gave the rest).
    config, model_run = latest_trainer(str(metadata))
    assert (config["finetune_epochs"], config["steps_per_epoch"]) == (2, 2)
    assert (config["image_size"], config["base_weights"]) == (TINY_TRAIN.image_size, TINY_TRAIN.base_weights)
    assert trained_epochs(model_run) == 2

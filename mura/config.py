"""Every setting of the project: one frozen dataclass per section, each field with its default and its meaning.

`mura.settings` builds flags, settings files, `MURA_*` variables and Kubeflow parameters from these fields; nothing
else lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from mura.filesystem import absolute

# The choices of train.calibration and train.operating_point (mura/calibration.py, mura/operating_points.py), here so
# that reading the settings does not load scipy and sklearn.
CALIBRATION_METHODS = ("temperature", "platt", "none")
CALIBRATION_SETTINGS = (*CALIBRATION_METHODS, "auto")
OPERATING_POINT_RULES = ("kappa", "youden", "sensitivity", "fixed")


def setting(default: Any, help: str) -> Any:
    """A field with the sentence that `--help`, `mura settings` and the README show for it."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    """Where a pipeline run reads and writes, and how Beam runs its components."""

    data_root: str = setting("data", "the folder that holds MURA-v1.1/ (or MURA-v1.1/ itself); a path or a URI")
    pipeline_root: str = setting("runs/pipeline", "TFX artifacts; re-runs reuse unchanged steps (TFX cache)")
    pipeline_name: str = setting("mura", "the pipeline's name in TFX and ML Metadata")
    metadata_path: str = setting("", "ML Metadata SQLite file; empty: <pipeline_root>/metadata.sqlite")
    serving_root: str = setting("", "where blessed models are pushed; empty: <pipeline_root>/serving")
    # One DirectRunner worker: measured faster than two processes on two cores (README, "Locally, through TFX's CLI").
    beam_args: tuple[str, ...] = setting(("--direct_num_workers=1",), "Beam pipeline arguments")

    def __post_init__(self) -> None:
        for name in ("data_root", "pipeline_root", "metadata_path", "serving_root"):
            object.__setattr__(self, name, absolute(getattr(self, name)))

    @property
    def metadata(self) -> str:
        return metadata_location(self.pipeline_root, self.metadata_path)

    @property
    def serving(self) -> str:
        return self.serving_root or f"{self.pipeline_root.rstrip('/')}/serving"


def metadata_location(pipeline_root: str, metadata_path: str = "") -> str:
    """A run's ML Metadata store: the file given, or metadata.sqlite in its pipeline root."""
    return metadata_path or os.path.join(pipeline_root, "metadata.sqlite")


@dataclass(frozen=True)
class DataConfig:
    """How a MURA root becomes the pipeline's train/eval/test splits, and how much bad input is tolerated."""

    eval_fraction: float = setting(0.1, "share of train patients moved to the eval split")
    split_salt: str = setting("mura-eval", "changes which patients land in eval, deterministically")
    max_rejected_fraction: float = setting(0.01, "above this share of rejected image rows, ingestion fails")
    drift_is_fatal: bool = setting(False, "train/test drift beyond the schema's thresholds stops the run")

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if not 0.0 <= self.max_rejected_fraction <= 1.0:
            raise ValueError(f"max_rejected_fraction must be in [0, 1], got {self.max_rejected_fraction}")


@dataclass(frozen=True)
class SampleConfig:
    """Shape of the synthetic MURA-like data set."""

    studies_per_part: int = setting(40, "train studies per body part; valid gets a quarter (at least 2)")
    seed: int = setting(0, "same seed, same pixels")
    max_side: int = setting(512, "longest image side in pixels, as in MURA")
    rgb_fraction: float = setting(0.06, "share of images stored as 3-channel PNGs, like a few of MURA's")

    def __post_init__(self) -> None:
        if self.studies_per_part < 1:
            raise ValueError(f"studies_per_part must be at least 1, got {self.studies_per_part}")
        if self.max_side < 32:
            raise ValueError(f"max_side must be at least 32 pixels, got {self.max_side}")
        if not 0.0 <= self.rgb_fraction <= 1.0:
            raise ValueError(f"rgb_fraction must be in [0, 1], got {self.rgb_fraction}")


@dataclass(frozen=True)
class DicomConfig:
    """How DICOM radiographs become PNGs, in `mura import-dicom` and in `mura predict` before they are sent."""

    max_side: int = setting(512, "longest side of a converted radiograph in pixels (MURA's); larger: shrunk; 0: kept")

    def __post_init__(self) -> None:
        if self.max_side and self.max_side < 32:
            raise ValueError(f"max_side must be 0 (kept) or at least 32 pixels, got {self.max_side}")


@dataclass(frozen=True)
class TrainConfig:
    """The seed's recipe as settings: ResNet50V2 + Dense(512) + Dropout(0.5), class weights, frozen then tuned."""

    image_size: int = setting(224, "square side after aspect-preserving resize and padding")
    batch_size: int = setting(32, "global batch (split across GPUs)")
    base_weights: str = setting(
        "imagenet", "'imagenet' (downloaded), 'none' (random), or a local Keras weights file of ResNet50V2 (no top)"
    )
    head_epochs: int = setting(3, "phase 1: base frozen, head trained (skipped when base_weights is 'none')")
    finetune_epochs: int = setting(10, "phase 2: top of the base unfrozen (or, with 'none', the whole network)")
    head_learning_rate: float = setting(1e-3, "learning rate of phase 1")
    finetune_learning_rate: float = setting(1e-4, "learning rate of phase 2")
    unfreeze_top_layers: int = setting(40, "ResNet50V2 layers trained in phase 2; BatchNorm stays in inference mode")
    steps_per_epoch: int = setting(0, "0: one pass over the train split")
    eval_steps: int = setting(0, "0: one pass over the eval split")
    class_weights: str = setting("balanced", "sklearn's 'balanced' (the seed), or 'per_body_part' (the MURA paper)")
    threshold: float = setting(0.5, "the 'fixed' operating point, and the global one when the eval split cannot choose")
    rotation: float = setting(0.05, "augmentation: rotation as a fraction of a full turn; 0 leaves the layer out")
    zoom: float = setting(0.1, "augmentation: zoom as a fraction of the side; 0 leaves the layer out")
    brightness: float = setting(0.15, "augmentation: brightness as a fraction of the pixel range; 0 leaves it out")
    contrast: float = setting(0.15, "augmentation: contrast as a fraction of the pixel range; 0 leaves it out")
    dense_units: int = setting(512, "units of the head's Dense layer")
    dropout: float = setting(0.5, "dropout before the output")
    early_stopping_patience: int = setting(4, "epochs without a lower eval loss before training stops (best kept)")
    reduce_lr_patience: int = setting(2, "epochs without a lower eval loss before the learning rate drops tenfold")
    learning_rate_schedule: str = setting(
        "plateau",
        "'plateau': each phase's rate, dropped tenfold when the eval loss stalls (reduce_lr_patience); 'cosine': a "
        "linear warm-up to it over warmup_epochs, then a cosine decay to 0 at the phase's last epoch",
    )
    warmup_epochs: float = setting(1.0, "'cosine' schedule: epochs of linear warm-up at the start of each phase")
    shuffle_buffer: int = setting(2048, "examples in the shuffle buffer")
    xla: bool = setting(False, "jit-compile the training step (GPU nodes)")
    # Keras' 0.99 makes the inference-mode statistics lag far behind the weights in a short from-scratch run:
    # measured, test predictions collapsed to one value (std 0.005).
    scratch_batchnorm_momentum: float = setting(0.9, "BatchNorm momentum of a randomly initialised base")
    # After training, on the eval split (mura/calibration.py, mura/operating_points.py; README, "Calibration").
    calibration: str = setting(
        "auto",
        "maps the probability to the true frequency of abnormal images, fitted on the eval split: 'temperature', "
        "'platt', 'none', or 'auto' (the one of lowest cross-validated log loss)",
    )
    operating_point: str = setting(
        "kappa",
        "how each body part's threshold is chosen on the eval split's studies: 'kappa' (highest Cohen's kappa), "
        "'youden' (highest sensitivity + specificity - 1), 'sensitivity' (the highest threshold reaching "
        "target_sensitivity), 'fixed' (the threshold setting everywhere)",
    )
    target_sensitivity: float = setting(0.9, "the study-level sensitivity the 'sensitivity' rule reaches")
    min_operating_point_studies: int = setting(
        10, "a body part with fewer eval studies, or with one class only, takes the global threshold"
    )

    def __post_init__(self) -> None:
        if self.base_weights not in ("imagenet", "none"):
            object.__setattr__(self, "base_weights", absolute(self.base_weights))
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 (ResNet50V2's minimum), got {self.image_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if min(self.head_epochs, self.finetune_epochs, self.steps_per_epoch, self.eval_steps) < 0:
            raise ValueError("head_epochs, finetune_epochs, steps_per_epoch and eval_steps cannot be negative")
        if self.learning_rate_schedule not in ("plateau", "cosine"):
            raise ValueError(
                f"learning_rate_schedule must be 'plateau' or 'cosine', got {self.learning_rate_schedule!r}"
            )
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs cannot be negative, got {self.warmup_epochs}")
        if self.class_weights not in ("balanced", "per_body_part"):
            raise ValueError(f"class_weights must be 'balanced' or 'per_body_part', got {self.class_weights!r}")
        if not 0.0 <= self.rotation <= 0.5:
            raise ValueError(f"rotation is a fraction of a full turn in [0, 0.5], got {self.rotation}")
        if not 0.0 <= self.zoom < 1.0:
            raise ValueError(f"zoom is a fraction of the image side in [0, 1), got {self.zoom}")
        if not (0.0 <= self.brightness <= 1.0 and 0.0 <= self.contrast <= 1.0):
            raise ValueError(f"brightness and contrast must be in [0, 1], got {self.brightness}, {self.contrast}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.calibration not in CALIBRATION_SETTINGS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATION_SETTINGS)}, got {self.calibration!r}")
        if self.operating_point not in OPERATING_POINT_RULES:
            raise ValueError(
                f"operating_point must be one of {', '.join(OPERATING_POINT_RULES)}, got {self.operating_point!r}"
            )
        if not 0.0 < self.target_sensitivity <= 1.0:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {self.target_sensitivity}")
        if self.min_operating_point_studies < 1:
            raise ValueError(f"min_operating_point_studies must be at least 1, got {self.min_operating_point_studies}")


MIN_BOOTSTRAP_SAMPLES = 100


@dataclass(frozen=True)
class GateConfig:
    """What a candidate model must reach to be pushed."""

    study_kappa_floor: float = setting(
        0.0,
        "overall study-level Cohen's kappa on the test split must be above it (see gate_on_lower_bound)",
    )
    auc_floor: float = setting(0.7, "TFMA: overall image-level ROC AUC on the test split must reach it")
    body_part_auc_floor: float | None = setting(None, "TFMA: every body part's AUC must reach it; none: no floor")
    auc_min_change: float = setting(-0.01, "TFMA: candidate AUC minus the baseline's must reach it")
    bootstrap_samples: int = setting(
        1000, "resamples of the test studies behind each study-level figure's 95 % interval; 0: no intervals"
    )
    bootstrap_seed: int = setting(0, "seeds the resampling: the same seed, the same intervals")
    gate_on_lower_bound: bool = setting(
        False, "hold the lower bound of the overall study kappa's 95 % interval against the floor, not the point"
    )

    def __post_init__(self) -> None:
        # Fewer resamples cannot place the 2.5th and 97.5th percentiles of a 95 % interval.
        if self.bootstrap_samples != 0 and self.bootstrap_samples < MIN_BOOTSTRAP_SAMPLES:
            raise ValueError(
                f"bootstrap_samples must be 0 (no intervals) or at least {MIN_BOOTSTRAP_SAMPLES}, "
                f"got {self.bootstrap_samples}"
            )
        if self.bootstrap_seed < 0:
            raise ValueError(f"bootstrap_seed must not be negative, got {self.bootstrap_seed}")
        if self.gate_on_lower_bound and not self.bootstrap_samples:
            raise ValueError("gate_on_lower_bound needs an interval: set bootstrap_samples above 0")


@dataclass(frozen=True)
class ServingConfig:
    """How models are served: TF Serving's ports and model name, its batching parameters, and request limits."""

    model_name: str = setting("mura", "the model's folder under the serving root, and its name in TF Serving")
    host: str = setting("127.0.0.1", "address the server listens on (0.0.0.0: every interface)")
    grpc_port: int = setting(8500, "gRPC port (TF Serving's default)")
    rest_port: int = setting(8501, "REST port (TF Serving's default)")
    poll_seconds: float = setting(1.0, "how often the model folder is checked for a new version")
    max_batch_size: int = setting(32, "server-side batching of concurrent requests; 1: off")
    batch_timeout_micros: int = setting(5000, "how long a batch waits to fill")
    max_request_bytes: int = setting(64 * 1024 * 1024, "larger requests are refused (413)")
    max_image_pixels: int = setting(40_000_000, "images that decode to more are refused (decompression bombs)")
    model_config_file: str = setting(
        "",
        "a TF Serving ModelServerConfig text file (several models, version policies, labels); when set, the model "
        "name, base path, version policy and labels settings are not used (--model_config_file)",
    )
    model_config_file_poll_wait_seconds: float = setting(
        5.0, "how often that file is re-read and a change applied; 0: read once (--model_config_file_poll_wait_seconds)"
    )
    version_policy: str = setting(
        "latest:1", "versions served: latest:N (the N newest), all, or specific:V1,V2 (model_version_policy)"
    )
    version_labels: tuple[str, ...] = setting(
        (), "labels naming versions, LABEL=VERSION each, e.g. stable=3 canary=4 (version_labels)"
    )
    allow_version_labels_for_unavailable_models: bool = setting(
        False, "a new label may name a version that is not loaded yet, as at startup (TF Serving's flag)"
    )
    monitoring_path: str = setting(
        "/monitoring/prometheus/metrics", "Prometheus metrics on the REST port at this path; empty: none"
    )
    shutdown_grace_seconds: float = setting(
        20.0, "on SIGTERM, how long requests in flight have to finish (under Kubernetes' 30 s grace period)"
    )
    rest_backlog: int = setting(2048, "REST connections the system holds before the server accepts them")
    max_concurrent_requests: int = setting(64, "REST requests run at once; the next ones wait")
    max_queued_requests: int = setting(1024, "REST requests waiting to run; past them: 503 with Retry-After")
    max_json_depth: int = setting(64, "REST bodies nesting deeper are refused (400) before parsing")
    max_json_values: int = setting(10_000_000, "REST bodies holding more values are refused (400) before parsing")
    grpc_max_workers: int = setting(16, "gRPC calls run at once (the server's thread pool)")
    grpc_max_concurrent_rpcs: int = setting(
        0, "gRPC calls in the server at once, queued ones included; past them RESOURCE_EXHAUSTED; 0: no limit"
    )
    request_log_dir: str = setting(
        "",
        "a sample of the requests is logged here, each image a tf.Example with what the request said about it "
        "(`mura drift` reads them); empty: no logging (TF Serving's logging_config)",
    )
    request_log_sampling_rate: float = setting(0.1, "the fraction of requests logged, 0 to 1 (sampling_rate)")
    request_log_records_per_file: int = setting(1000, "images per log file before the next file starts")
    request_log_max_files: int = setting(100, "log files kept: past them the oldest is deleted, so the log is bounded")

    def __post_init__(self) -> None:
        import re

        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {self.poll_seconds}")
        limits = (self.rest_backlog, self.max_concurrent_requests, self.max_json_depth, self.max_json_values)
        if min(*limits, self.grpc_max_workers) < 1 or min(self.max_queued_requests, self.grpc_max_concurrent_rpcs) < 0:
            raise ValueError(
                "the request limits must be positive (max_queued_requests and grpc_max_concurrent_rpcs: 0 or more)"
            )
        if min(self.model_config_file_poll_wait_seconds, self.shutdown_grace_seconds) < 0:
            raise ValueError("model_config_file_poll_wait_seconds and shutdown_grace_seconds cannot be negative")
        if not re.fullmatch(r"latest(:[1-9][0-9]*)?|all|specific:[0-9]+(,[0-9]+)*", self.version_policy):
            raise ValueError(f"version_policy must be latest:N, all or specific:V1,V2, got {self.version_policy!r}")
        for label in self.version_labels:
            if not re.fullmatch(r"\w+=[0-9]+", label):
                raise ValueError(f"a version label is LABEL=VERSION (LABEL of word characters), got {label!r}")
        if self.monitoring_path and not self.monitoring_path.startswith("/"):
            raise ValueError(f"monitoring_path must start with /, got {self.monitoring_path!r}")
        if not 0 <= self.request_log_sampling_rate <= 1:
            raise ValueError(f"request_log_sampling_rate must be in [0, 1], got {self.request_log_sampling_rate}")
        if min(self.request_log_records_per_file, self.request_log_max_files) < 1:
            raise ValueError("request_log_records_per_file and request_log_max_files must be at least 1")


@dataclass(frozen=True)
class DriftConfig:
    """`mura drift`: how far what is served may stray from the training split, in TFDV's skew comparators."""

    schema_file: str = setting(
        "",
        "a curated schema of the drift features (TFDV text format) whose skew comparators hold the thresholds; "
        "empty: inferred from the training split, with the two thresholds below",
    )
    numeric_threshold: float = setting(
        0.1, "Jensen-Shannon divergence allowed on numeric features (size, intensities), 0 to 1"
    )
    categorical_threshold: float = setting(0.2, "L-infinity distance allowed on categorical ones (body part, channels)")
    train_sample: int = setting(2000, "training images sampled (uniformly, seeded) to describe what was trained on")
    min_requests: int = setting(200, "fewer logged images than this are too few to judge: the check refuses")

    def __post_init__(self) -> None:
        if not (0 < self.numeric_threshold <= 1 and 0 < self.categorical_threshold <= 1):
            raise ValueError("numeric_threshold and categorical_threshold must be in (0, 1]")
        if min(self.train_sample, self.min_requests) < 1:
            raise ValueError("train_sample and min_requests must be at least 1")


@dataclass(frozen=True)
class KubeflowConfig:
    """Where the pipeline runs on Kubeflow Pipelines: its image, and the GPU nodes the Trainer lands on."""

    image: str = setting("mura-tfx:1.16", "the pipeline image, built from the Dockerfile")
    project_dir: str = setting("/mura", "where the Dockerfile puts this project in the image")
    trainer_gpus: int = setting(1, "nvidia.com/gpu requested by the Trainer; 0: train on CPU")
    trainer_cpu: float = setting(8.0, "CPU limit of the Trainer")
    trainer_memory_gb: float = setting(32.0, "memory limit of the Trainer, in GB")
    gpu_node_selector: tuple[tuple[str, str], ...] = setting(
        (("nvidia.com/gpu.present", "true"),), "node labels the Trainer's node must have: [[key, value], ...]"
    )
    gpu_tolerations: tuple[tuple[str, str, str], ...] = setting(
        (("nvidia.com/gpu", "Exists", "NoSchedule"),), "taints the Trainer tolerates: [[key, operator, effect], ...]"
    )
    pvc_name: str = setting("", "a PVC mounted in every step (data and pipeline root on it); empty: object storage")
    pvc_mount_path: str = setting("/mnt/mura", "where that PVC is mounted")


PROFILES = {
    # Proves an install end to end in minutes: every component runs for real, the model learns nothing.
    "smoke": TrainConfig(
        image_size=32,
        batch_size=8,
        base_weights="none",
        head_epochs=0,
        finetune_epochs=1,
        steps_per_epoch=3,
        eval_steps=2,
        dense_units=16,
    ),
    # Two CPU cores, the synthetic MURA, no network: random initialisation, small images, the whole net trained.
    # Flips only (brightness and contrast cost 0.16 of test AUROC), and, for make demo's 15 minutes, 10 epochs on a
    # warmed-up cosine at twice the old rate: make demo (250 studies) took 14 minutes for test AUROC 0.842, where the
    # constant rate with tenfold drops took 26 minutes for 0.734 on 100. The levers: README, "The demo profile".
    "demo": TrainConfig(
        image_size=64,
        batch_size=32,
        base_weights="none",
        head_epochs=0,
        finetune_epochs=10,
        finetune_learning_rate=2e-3,
        learning_rate_schedule="cosine",
        warmup_epochs=1.0,
        early_stopping_patience=8,
        reduce_lr_patience=4,
        rotation=0.0,
        zoom=0.0,
        brightness=0.0,
        contrast=0.0,
    ),
    # MURA on GPU nodes: ImageNet weights, the paper's resolution range, frozen then fine-tuned.
    "full": TrainConfig(image_size=320, batch_size=64, base_weights="imagenet", head_epochs=3, finetune_epochs=20),
}


@dataclass(frozen=True)
class Settings:
    """All of the project's settings, one section per dataclass; `profile` names the train section's defaults."""

    profile: str = "demo"
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    dicom: DicomConfig = field(default_factory=DicomConfig)
    train: TrainConfig = field(default_factory=lambda: PROFILES["demo"])
    gate: GateConfig = field(default_factory=GateConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    kubeflow: KubeflowConfig = field(default_factory=KubeflowConfig)

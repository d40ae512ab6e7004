"""Every tunable of the project, in one place, with its default."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataConfig:
    """How a MURA root becomes the pipeline's train/eval/test splits, and how much bad input is tolerated."""

    eval_fraction: float = 0.1  # share of train patients moved to the eval split
    split_salt: str = "mura-eval"  # changes which patients land in eval, deterministically
    max_rejected_fraction: float = 0.01  # above this share of rejected image rows, ingestion fails
    drift_is_fatal: bool = False  # train/test drift beyond the schema's thresholds stops the run

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if not 0.0 <= self.max_rejected_fraction <= 1.0:
            raise ValueError(f"max_rejected_fraction must be in [0, 1], got {self.max_rejected_fraction}")


@dataclass(frozen=True)
class SampleConfig:
    """Shape of the synthetic MURA-like data set."""

    studies_per_part: int = 40  # train studies per body part; valid gets a quarter (at least 2)
    seed: int = 0
    max_side: int = 512  # longest image side in pixels, as in MURA
    rgb_fraction: float = 0.06  # images stored as 3-channel PNGs, like a few of MURA's

    def __post_init__(self) -> None:
        if self.studies_per_part < 1:
            raise ValueError(f"studies_per_part must be at least 1, got {self.studies_per_part}")
        if self.max_side < 32:
            raise ValueError(f"max_side must be at least 32 pixels, got {self.max_side}")


@dataclass(frozen=True)
class GateConfig:
    """What a candidate model must reach to be pushed."""

    study_kappa_floor: float = 0.0  # overall study-level Cohen's kappa on the test split must be above it
    auc_floor: float = 0.7  # image-level ROC AUC on the test split, overall, must reach it (TFMA)
    body_part_auc_floor: float | None = None  # the same, for every body part; None = no per-part floor
    auc_min_change: float = -0.01  # candidate AUC minus the latest blessed model's must reach it (TFMA)
    model_name: str = "mura"  # the folder under the serving root, and TF Serving's model name


@dataclass(frozen=True)
class ServingConfig:
    """How models are served: TF Serving's ports and model name, its batching parameters, and request limits."""

    model_name: str = "mura"
    host: str = "127.0.0.1"  # only this machine, unless told otherwise
    grpc_port: int = 8500  # TF Serving's defaults
    rest_port: int = 8501
    poll_seconds: float = 1.0  # how often the model folder is checked for a new version
    max_batch_size: int = 32  # server-side batching of concurrent requests; 1 = off
    batch_timeout_micros: int = 5000  # how long a batch waits to fill
    max_request_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 40_000_000  # images that decode to more are refused (decompression bombs)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {self.poll_seconds}")


@dataclass(frozen=True)
class KubeflowConfig:
    """Where the pipeline runs on Kubeflow Pipelines: its image, and the GPU nodes the Trainer lands on."""

    image: str = "mura-tfx:1.16"  # built from the Dockerfile, pushed to the cluster's registry
    project_dir: str = "/mura"  # where the Dockerfile puts this project in the image
    trainer_gpus: int = 1  # nvidia.com/gpu requested by the Trainer; 0 = train on CPU
    trainer_cpu: float = 8.0
    trainer_memory_gb: float = 32.0
    gpu_node_selector: tuple[tuple[str, str], ...] = (("nvidia.com/gpu.present", "true"),)
    gpu_tolerations: tuple[tuple[str, str, str], ...] = (("nvidia.com/gpu", "Exists", "NoSchedule"),)  # key, op, effect
    pvc_name: str = ""  # mount this PVC in every step (data and pipeline root on it); empty = object storage URIs
    pvc_mount_path: str = "/mnt/mura"


# One DirectRunner worker: measured faster than two processes on two cores (README, "Locally, through TFX's own CLI").
DIRECT_RUNNER_ARGS = ("--direct_num_workers=1",)


def metadata_location(pipeline_root: str, metadata_path: str = "") -> str:
    """A run's ML Metadata store: the file given, or metadata.sqlite in its pipeline root."""
    return metadata_path or f"{pipeline_root.rstrip('/')}/metadata.sqlite"


@dataclass(frozen=True)
class RunConfig:
    """Where a pipeline run reads and writes, and how Beam runs its components."""

    data_root: str  # the folder that holds MURA-v1.1/ (or MURA-v1.1/ itself); a local path or a URI
    pipeline_root: str  # TFX artifacts
    pipeline_name: str = "mura"
    metadata_path: str = ""  # ML Metadata SQLite file; empty = <pipeline_root>/metadata.sqlite
    serving_root: str = ""  # where blessed models are pushed; empty = <pipeline_root>/serving
    beam_pipeline_args: tuple[str, ...] = DIRECT_RUNNER_ARGS

    @property
    def metadata(self) -> str:
        return metadata_location(self.pipeline_root, self.metadata_path)

    @property
    def serving(self) -> str:
        return self.serving_root or f"{self.pipeline_root.rstrip('/')}/serving"


@dataclass(frozen=True)
class TrainConfig:
    """The seed's recipe as settings: ResNet50V2 + Dense(512) + Dropout(0.5), class weights, frozen then tuned."""

    image_size: int = 224  # square side after aspect-preserving resize and padding
    batch_size: int = 32  # global batch (split across GPUs)
    base_weights: str = "imagenet"  # "imagenet" (downloaded), "none" (random), or a path to a Keras weights file
    head_epochs: int = 3  # phase 1: base frozen, head trained (skipped when base_weights is "none")
    finetune_epochs: int = 10  # phase 2: top of the base unfrozen (or, with "none", the whole network)
    head_learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    unfreeze_top_layers: int = 40  # of ResNet50V2's layers; BatchNorm layers stay in inference mode
    steps_per_epoch: int = 0  # 0 = one pass over the train split
    eval_steps: int = 0  # 0 = one pass over the eval split
    class_weights: str = "balanced"  # sklearn's 'balanced' (the seed), or "per_body_part" (the MURA paper)
    threshold: float = 0.5  # probability above which an image (and a study) is abnormal
    # Augmentation strengths, 0 leaves the layer out (horizontal flips are always on): rotation as a fraction of a
    # full turn, zoom as a fraction of the side, brightness and contrast as fractions of the pixel range.
    rotation: float = 0.05
    zoom: float = 0.1
    brightness: float = 0.15
    contrast: float = 0.15
    dense_units: int = 512
    dropout: float = 0.5
    early_stopping_patience: int = 4  # epochs without a lower eval loss before training stops (best restored)
    reduce_lr_patience: int = 2  # epochs without a lower eval loss before the learning rate drops tenfold
    shuffle_buffer: int = 2048
    xla: bool = False  # jit-compile the training step (GPU nodes)
    # BatchNorm momentum of a randomly initialised base. Keras' 0.99 makes the inference-mode statistics lag far
    # behind the weights in a short from-scratch run: measured, test predictions collapsed to one value (std 0.005).
    scratch_batchnorm_momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 (ResNet50V2's minimum), got {self.image_size}")
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
    # Flips only, and patient callbacks: on 2,606 images at 64 px a from-scratch ResNet50V2 reached test AUROC 0.84
    # in 12 epochs with flips only, 0.68 with flips, brightness and contrast; its eval loss jumps about early on,
    # and a patience of 2 cut the learning rate after epoch 5. The numbers: README, "The demo profile".
    "demo": TrainConfig(
        image_size=64,
        batch_size=32,
        base_weights="none",
        head_epochs=0,
        finetune_epochs=25,
        finetune_learning_rate=1e-3,
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

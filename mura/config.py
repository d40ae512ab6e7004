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
class RunConfig:
    """Where a pipeline run reads and writes, and how Beam runs its components."""

    data_root: str  # the folder that holds MURA-v1.1/ (or MURA-v1.1/ itself); a local path or a URI
    pipeline_root: str  # TFX artifacts
    pipeline_name: str = "mura"
    metadata_path: str = ""  # ML Metadata SQLite file; empty = <pipeline_root>/metadata.sqlite
    beam_pipeline_args: tuple[str, ...] = ("--direct_num_workers=1",)

    @property
    def metadata(self) -> str:
        return self.metadata_path or f"{self.pipeline_root.rstrip('/')}/metadata.sqlite"

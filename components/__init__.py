"""What runs inside the pipeline's containers: custom components and the module files of Transform, Trainer and
the Evaluator. Imports only the domain (`mura`), never serving, analysis or the CLI, so the pipeline image carries
nothing else."""

import mura  # noqa: F401  (Keras 2 before TensorFlow loads)
from components.artifacts import DataValidationReport, ModelCard, RejectedImages, StudyEvaluation

__all__ = ["DataValidationReport", "ModelCard", "RejectedImages", "StudyEvaluation"]

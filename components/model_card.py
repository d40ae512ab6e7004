"""The candidate's model card (mura/model_card.py), gathered from what the run's steps wrote: ExampleGen's images per
split, Transform's train counts per body part and label, the study evaluation (its gate's decision included),
TFMA's thresholds and blessing, the baseline served and the model's own facts.

It runs for every candidate, blessed or not, so a refused model's card says why; the VersionedPusher copies a
blessed one's into the version it pushes.
"""

import tensorflow_transform as tft
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, ModelEvaluation, TransformGraph
from tfx.utils import path_utils

from components.artifacts import ModelCard, StudyEvaluation
from components.modules.export import read_model_facts
from components.modules.trainer import label_counts
from components.served_baseline import SERVED_VERSION
from components.study_evaluator import read_image_predictions, read_study_report
from components.tfma_gate import failures, thresholds
from mura.model_card import TfmaGate, build_card, write_card
from mura.splits import PIPELINE_SPLITS


@component
def ModelCardWriter(
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    transform_graph: InputArtifact[TransformGraph],
    evaluation: InputArtifact[ModelEvaluation],
    model_blessing: InputArtifact[ModelBlessing],
    study_evaluation: InputArtifact[StudyEvaluation],
    baseline: InputArtifact[Model],
    model_card: OutputArtifact[ModelCard],
    model_name: Parameter[str],
    data_root: Parameter[str],
) -> None:
    """Writes model_card.json and model_card.html into `model_card`."""
    model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    tfma_blessed = bool(model_blessing.get_int_custom_property("blessed"))
    card = build_card(
        model_name=model_name,
        data_root=data_root,
        split_images={split: examples.get_int_custom_property(f"{split}_images") for split in PIPELINE_SPLITS},
        train_counts=label_counts(tft.TFTransformOutput(transform_graph.uri)),
        study=read_study_report(study_evaluation.uri),
        facts=read_model_facts(model_dir),
        tfma=TfmaGate(tfma_blessed, thresholds(evaluation.uri), [] if tfma_blessed else failures(evaluation.uri)),
        served_version=baseline.get_int_custom_property(SERVED_VERSION),
        images=read_image_predictions(study_evaluation.uri),
    )
    write_card(model_card.uri, card)
    model_card.set_int_custom_property("blessed", int(card["gate"]["blessed"]))

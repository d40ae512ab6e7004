"""Pushes a model into TF Serving's folder layout as the next integer version, atomically, when both halves of
the gate (TFMA's Evaluator and MURA's study-level evaluation) blessed it.

An unblessed model is never pushed, and whatever version is being served stays in place; a model already
served (a re-run whose baseline is itself) is not pushed twice. A pushed version carries its model card in
`assets.extra/`.
"""

import os

import tensorflow as tf
from absl import logging
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model, ModelBlessing, PushedModel
from tfx.utils import path_utils

from components.artifacts import ModelCard
from components.push import push
from mura.model_card import CARD_DIR, CARD_HTML, read_card
from mura.model_versions import served_version_of


@component
def VersionedPusher(
    model: InputArtifact[Model],
    model_blessing: InputArtifact[ModelBlessing],
    study_blessing: InputArtifact[ModelBlessing],
    model_card: InputArtifact[ModelCard],
    pushed_model: OutputArtifact[PushedModel],
    serving_root: Parameter[str],
    model_name: Parameter[str],
) -> None:
    """Writes <serving_root>/<model_name>/<version>/ when TFMA and the study-level evaluation both blessed it."""
    refusals = [
        reason
        for blessing, reason in (
            (model_blessing, "TFMA's thresholds"),
            (study_blessing, "the study-level kappa floor"),
        )
        if not blessing.get_int_custom_property("blessed")
    ]
    if refusals:
        pushed_model.set_int_custom_property("pushed", 0)
        pushed_model.set_string_custom_property("not_pushed_because", " and ".join(refusals))
        logging.warning("Model %s failed %s: not pushed.", model.uri, " and ".join(refusals))
        return
    destination = os.path.join(serving_root, model_name)
    source = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    version = served_version_of(source, destination)
    if version is None:
        version = push(source, destination, model_name, read_card(model_card.uri))
        logging.info("Pushed %s as version %d of %s", model.uri, version, destination)
    else:
        logging.info("Model %s is already served as version %d of %s: nothing pushed.", model.uri, version, destination)
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_int_custom_property("pushed_version", version)
    pushed_to = os.path.join(destination, str(version))
    pushed_model.set_string_custom_property("pushed_destination", pushed_to)
    card = os.path.join(pushed_to, CARD_DIR, CARD_HTML)
    if tf.io.gfile.exists(card):  # a version pushed before model cards has none
        pushed_model.set_string_custom_property("model_card", card)

"""Pushes a blessed model into TF Serving's folder layout as the next integer version, atomically.

An unblessed model is never pushed, and whatever version is being served stays in place.
"""

import os

from absl import logging
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model, ModelBlessing, PushedModel

from serving.versions import push


@component
def VersionedPusher(
    model: InputArtifact[Model],
    study_blessing: InputArtifact[ModelBlessing],
    pushed_model: OutputArtifact[PushedModel],
    serving_root: Parameter[str],
    model_name: Parameter[str] = "mura",
) -> None:
    """Writes <serving_root>/<model_name>/<version>/ when the study-level evaluation blessed the model."""
    if not study_blessing.get_int_custom_property("blessed"):
        pushed_model.set_int_custom_property("pushed", 0)
        logging.warning("Model %s was not blessed by the study-level evaluation: not pushed.", model.uri)
        return
    destination = os.path.join(serving_root, model_name)
    version = push(os.path.join(model.uri, "Format-Serving"), destination)
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_int_custom_property("pushed_version", version)
    pushed_model.set_string_custom_property("pushed_destination", os.path.join(destination, str(version)))
    logging.info("Pushed %s as version %d of %s", model.uri, version, destination)

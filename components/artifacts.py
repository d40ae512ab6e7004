"""Artifact types of the project's own components.

Each TYPE_NAME is `components.<Class>`: TFX's Kubeflow compiler takes only `<namespace>.<Title>`, and its container
entrypoint imports the class from that name, so `components/__init__.py` exports these classes.
"""

from tfx.types.artifact import Artifact


class RejectedImages(Artifact):
    """`rejected.csv` (path,reason,detail,csv_file,line): every CSV row ingestion did not turn into an example."""

    TYPE_NAME = "components.RejectedImages"


class DataValidationReport(Artifact):
    """`report.json`: the anomalies per split and the train/test drift of body part and label."""

    TYPE_NAME = "components.DataValidationReport"


class StudyEvaluation(Artifact):
    """study_metrics.json/csv (kappa and AUROC per body part, the paper's values beside) and predictions.csv."""

    TYPE_NAME = "components.StudyEvaluation"


class ModelCard(Artifact):
    """model_card.json and model_card.html: a candidate's card, written whether or not the gate blessed it."""

    TYPE_NAME = "components.ModelCard"

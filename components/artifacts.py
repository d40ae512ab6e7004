"""Artifact types of the project's own components."""

from tfx.types.artifact import Artifact


class RejectedImages(Artifact):
    """`rejected.csv` (path,reason,detail,csv_file,line): every CSV row ingestion did not turn into an example."""

    TYPE_NAME = "mura.RejectedImages"  # <namespace>.<Type>: the form Kubeflow v2 requires


class DataValidationReport(Artifact):
    """`report.json`: the anomalies per split and the train/test drift of body part and label."""

    TYPE_NAME = "mura.DataValidationReport"


class StudyEvaluation(Artifact):
    """study_metrics.json/csv (kappa and AUROC per body part, the paper's values beside) and predictions.csv."""

    TYPE_NAME = "mura.StudyEvaluation"

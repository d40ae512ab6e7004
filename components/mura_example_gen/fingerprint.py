"""What identifies a data drop: the four CSVs and every image file (names, sizes, modification times).

Two steps compute it: MuraExampleGen's driver, for TFX's own cache (local runs), and `DataFingerprint`, a step
that open-source Kubeflow Pipelines runs uncached ahead of MuraExampleGen, whose parameter it becomes: KFP keys its
cache on a step's parameters, and runs no driver.
"""

import posixpath

from tfx.dsl.component.experimental.annotations import OutputDict, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.utils import io_utils

from mura.filesystem import filesystem_for
from mura.reader import find_dataset_dir


def data_fingerprint(data_root: str) -> str:
    dataset_dir = find_dataset_dir(data_root, filesystem_for(data_root))
    return "\n".join(
        io_utils.generate_fingerprint(name, posixpath.join(dataset_dir, pattern))
        for name, pattern in (("csv", "*.csv"), ("images", "*/*/*/*/*"))
    )


@component
def DataFingerprint(data_root: Parameter[str]) -> OutputDict(fingerprint=str):
    """The data drop's fingerprint, as an output parameter of the step."""
    return {"fingerprint": data_fingerprint(data_root)}

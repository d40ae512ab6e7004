"""Where a component's report survives a failed run.

TFX deletes a failed execution's output folders, which would take away the very report that says why it
failed. Such reports are written beside them instead: <pipeline root>/<component>/failed/<execution>/<file>.
"""

import os


def failure_report_path(artifact_uri: str, filename: str) -> str:
    execution = os.path.basename(artifact_uri.rstrip("/"))
    component_dir = os.path.dirname(os.path.dirname(artifact_uri.rstrip("/")))
    return os.path.join(component_dir, "failed", execution, filename)

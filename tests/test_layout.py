"""The layout's import direction: cli -> pipeline, analysis, serving -> components -> mura, and nothing back."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mura", "components", "pipeline", "analysis", "serving", "cli")
# What each package may import of the project (itself included).
ALLOWED = {
    "mura": {"mura"},
    "components": {"mura", "components"},
    "pipeline": {"mura", "components", "pipeline"},
    "analysis": {"mura", "components", "analysis"},
    "serving": {"mura", "serving"},
    "cli": set(PACKAGES),
    "bench": {"mura", "components", "pipeline", "analysis", "serving", "bench"},
}


def project_imports(path: Path) -> set[str]:
    """The project packages a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & {*PACKAGES, "bench"}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_lies_below_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported - ALLOWED[package])
        for path in files
        if (imported := project_imports(path)) - ALLOWED[package]
    }
    assert wrong == {}, f"{package}/ may import only {sorted(ALLOWED[package])}"


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import os\n\ndef f():\n    from serving.client import RestClient\n    import cli.main\n")
    assert project_imports(sample) == {"serving", "cli"}


def test_only_mura_sets_the_keras_version() -> None:
    files = [path for folder in (*ALLOWED, "tests") for path in (ROOT / folder).rglob("*.py")]
    setters = [
        str(path.relative_to(ROOT))
        for path in files
        if path != Path(__file__).resolve() and "TF_USE_LEGACY_KERAS" in path.read_text()
    ]
    assert setters == ["mura/__init__.py"]


def test_every_artifact_type_name_is_its_import_path() -> None:
    """TFX's Kubeflow entrypoint imports a custom artifact's class from its type name."""
    from tfx.types.artifact import Artifact
    from tfx.utils import import_utils

    from components import artifacts

    types = [
        v for v in vars(artifacts).values() if isinstance(v, type) and issubclass(v, Artifact) and v is not Artifact
    ]
    assert types
    for artifact_type in types:
        assert import_utils.import_class_by_path(artifact_type.TYPE_NAME) is artifact_type

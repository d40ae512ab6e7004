"""Renders this project's kustomizations where `kubectl kustomize` is missing: resources, namespace,
configMapGenerator (files, with a content-hash suffix that the Deployment's references follow) and strategic-merge
patches (lists of named items merged by name). The subset the manifests in kubernetes/ use, no more. The suffix is
a hash of the data, as kustomize's is, but not kustomize's own encoding of it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "patches"}


def _merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in patch):
        merged, by_name = list(base), {item.get("name"): index for index, item in enumerate(base)}
        for item in patch:
            if item["name"] in by_name:
                merged[by_name[item["name"]]] = _merge(merged[by_name[item["name"]]], item)
            else:
                merged.append(item)
        return merged
    return patch


def _key(document: dict) -> tuple[str, str]:
    return document["kind"], document["metadata"]["name"]


def render(folder: Path) -> list[dict]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise ValueError(f"{folder}: fields {sorted(unknown)} need `kubectl kustomize`")
    documents: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        documents += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(name).name: (folder / name).read_text() for name in generator["files"]}
        suffix = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{generator['name']}-{suffix}"
        documents.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
        for document in documents:
            for volume in document.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
                if volume.get("configMap", {}).get("name") == generator["name"]:
                    volume["configMap"]["name"] = name
    for patch in kustomization.get("patches", []):
        change = yaml.safe_load((folder / patch["path"]).read_text())
        [index] = [i for i, d in enumerate(documents) if _key(d) == _key(change)]
        documents[index] = _merge(documents[index], change)
    if "namespace" in kustomization:
        for document in documents:
            document["metadata"]["namespace"] = kustomization["namespace"]
    return documents

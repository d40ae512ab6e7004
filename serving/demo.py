"""The end of `make demo`: serve the pushed model, ask it about one test study over REST and over gRPC, and
show the commands a user runs next. Uses the project's server in this process (TF Serving is not needed)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from mura.config import ServingConfig
from mura.model_versions import versions
from mura.reader import read_mura
from mura.signatures import SERVING_STUDY
from serving.client import GrpcClient, RestClient, ask_about_study
from serving.server import start


def first_test_study(data_root: str) -> tuple[str, str, int, list[str]]:
    """(study, body part, label, image paths) of the first study of the test split, as the reader accepted it."""
    images = [record for record in read_mura(data_root, progress=False).images if record.split == "test"]
    first = min(images, key=lambda record: (record.study_id, record.image_index)).study_id
    study = sorted((r for r in images if r.study_id == first), key=lambda record: record.image_index)
    return first, study[0].body_part, study[0].label, [record.path for record in study]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-base-path", required=True)
    parser.add_argument("--data-root", required=True)
    args = parser.parse_args()
    if not versions(args.model_base_path):
        print(f"No model was pushed to {args.model_base_path}: the gate refused it (see above), nothing to serve.")
        return 0
    config = dataclasses.replace(ServingConfig(), grpc_port=0, rest_port=0)  # free ports: never clash
    server = start(args.model_base_path, config)
    try:
        folder, body_part, label, images = first_test_study(args.data_root)
        payload = [Path(path).read_bytes() for path in images]
        rest = RestClient(f"http://{config.host}:{server.rest_port}").predict(payload)
        with GrpcClient(f"{config.host}:{server.grpc_port}") as client:
            grpc = client.predict(payload)
        print(f"\nServing version {server.store.current_version()} of {args.model_base_path}")
        print(f"Study {folder} (label: {'abnormal' if label else 'normal'}), {len(images)} images:")
        for path, over_rest, over_grpc in zip(images, rest, grpc, strict=True):
            print(
                f"  {os.path.basename(path)}: probability {over_rest.probability:.3f} over REST, "
                f"{over_grpc.probability:.3f} over gRPC"
            )
        study, note, _ = ask_about_study(RestClient(f"http://{config.host}:{server.rest_port}"), payload, body_part)
        print(note or f"  study (the model's {SERVING_STUDY} signature, at {body_part}'s operating point):")
        verdict = "abnormal" if study.abnormal else "normal"
        print(f"  mean probability {study.probability:.3f} -> {verdict} (threshold {study.threshold:.3f})")
    finally:
        server.stop()
    print("\nNext, serve it and ask it yourself:")
    print(f"  .venv/bin/mura serve --model-base-path {args.model_base_path}")
    print(f"  .venv/bin/mura predict {' '.join(images)} --study")
    return 0


if __name__ == "__main__":
    sys.exit(main())

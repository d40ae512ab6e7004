"""MURA ExampleGen's executor: the reader in the driver process, reading and decoding images in Beam.

The reader settles every CSV row (accepted or rejected with a reason) from CSVs and image headers; Beam then
reads each accepted image's bytes, decodes them once to prove they decode, and writes them undecoded. Images that
fail to decode join the rejected rows, so accepted + rejected is always every image row.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from components.report_files import failure_report_path
from mura.audit import format_rejections
from mura.config import DataConfig
from mura.examples import decoded_shape, to_example
from mura.filesystem import filesystem_for
from mura.layout import image_paths_csv
from mura.quality import DataQualityError, check_rejected_fraction, check_splits_not_empty
from mura.reader import ImageRecord, MuraIndex, Rejection, read_mura
from mura.splits import PIPELINE_SPLITS

EVAL_FRACTION_KEY = "eval_fraction"
SPLIT_SALT_KEY = "split_salt"
MAX_REJECTED_FRACTION_KEY = "max_rejected_fraction"
REJECTED_KEY = "rejected"
REPORT_FILE = "rejected.csv"
_UNDECODABLE_PREFIX = "undecodable"
_REJECTED_TAG = "rejected"


class _ReadAndEncode(beam.DoFn):
    """Reads one accepted image, checks that it decodes to the header's size, emits (split, serialized Example)."""

    def process(self, record: ImageRecord):
        try:
            with filesystem_for(record.path).open(record.path) as handle:
                image = handle.read()
            height, width, _ = decoded_shape(image)
            if (height, width) != (record.height, record.width):
                raise ValueError(f"decodes to {width}x{height}, header says {record.width}x{record.height}")
        except (OSError, ValueError, tf.errors.OpError) as error:
            rejection = Rejection(
                csv_file=image_paths_csv(record.source_split),
                line=record.csv_line,
                path=record.source_path,
                reason="undecodable",
                detail=str(error),
                body_part=record.body_part,
            )
            yield beam.pvalue.TaggedOutput(_REJECTED_TAG, json.dumps(dataclasses.asdict(rejection)))
            return
        yield record.split, to_example(record, image).SerializeToString()


class Executor(BaseExampleGenExecutor):
    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        raise NotImplementedError("MURA ExampleGen splits by patient itself: see GenerateExamplesByBeam")

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]):
        config = DataConfig(
            eval_fraction=float(exec_properties[EVAL_FRACTION_KEY]),
            split_salt=str(exec_properties[SPLIT_SALT_KEY]),
            max_rejected_fraction=float(exec_properties[MAX_REJECTED_FRACTION_KEY]),
        )
        self._index = read_mura(exec_properties[standard_component_specs.INPUT_BASE_KEY], config, progress=False)
        self._rejected_dir = artifact_utils.get_single_uri(output_dict[REJECTED_KEY])
        self._settle(self._index.rejected, exec_properties, config)  # fail fast, before reading any pixels

        super().Do(input_dict, output_dict, exec_properties)

        undecodable = self._undecodable()
        rejected = self._index.rejected + undecodable
        counts = self._settle(rejected, exec_properties, config)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        for split, count in counts.items():
            examples.set_int_custom_property(f"{split}_images", count)
        artifact = artifact_utils.get_single_instance(output_dict[REJECTED_KEY])
        artifact.set_int_custom_property("rejected_rows", len(rejected))
        artifact.set_int_custom_property("undecodable_images", len(undecodable))

    def _settle(self, rejected: list[Rejection], exec_properties: dict[str, Any], config: DataConfig) -> dict[str, int]:
        """Records the counts as execution properties, enforces the bounds and writes the report where it lasts."""
        index = self._index
        undecodable = {r.path for r in rejected if r.reason == "undecodable"}
        accepted = [r for r in index.images if r.source_path not in undecodable]
        rejected_images = sum(1 for r in rejected if r.is_image_row)
        counts = Counter(r.split for r in accepted)
        split_counts = {split: counts[split] for split in PIPELINE_SPLITS}
        exec_properties.update(
            image_rows=index.image_rows,
            accepted_images=len(accepted),
            rejected_images=rejected_images,
            **{f"{split}_images": n for split, n in split_counts.items()},
        )
        report = format_rejections(rejected)
        kept = failure_report_path(self._rejected_dir, REPORT_FILE)
        try:
            check_rejected_fraction(
                len(accepted), rejected_images, index.image_rows, config.max_rejected_fraction, kept
            )
            check_splits_not_empty(split_counts)
        except DataQualityError:
            io_utils.write_string_file(kept, report)
            raise
        io_utils.write_string_file(os.path.join(self._rejected_dir, REPORT_FILE), report)
        return split_counts

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        index: MuraIndex = self._index
        encoded = (
            pipeline
            | "AcceptedImages" >> beam.Create(index.images, reshuffle=True)
            | "ReadAndEncode" >> beam.ParDo(_ReadAndEncode()).with_outputs(_REJECTED_TAG, main="examples")
        )
        _ = encoded[_REJECTED_TAG] | "WriteUndecodable" >> beam.io.WriteToText(
            os.path.join(self._rejected_dir, _UNDECODABLE_PREFIX), file_name_suffix=".jsonl"
        )
        by_split = encoded.examples | "BySplit" >> beam.Partition(
            lambda item, _: PIPELINE_SPLITS.index(item[0]), len(PIPELINE_SPLITS)
        )
        return {split: by_split[i] | f"Drop key[{split}]" >> beam.Values() for i, split in enumerate(PIPELINE_SPLITS)}

    def _undecodable(self) -> list[Rejection]:
        pattern = os.path.join(self._rejected_dir, f"{_UNDECODABLE_PREFIX}*.jsonl")
        rejected = []
        for path in sorted(tf.io.gfile.glob(pattern)):
            with tf.io.gfile.GFile(path) as handle:
                rejected += [Rejection(**json.loads(line)) for line in handle if line.strip()]
            tf.io.gfile.remove(path)
        return rejected

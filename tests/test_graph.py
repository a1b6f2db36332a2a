"""The record path stays one fused chain: nothing on it makes a runner hold the dataset.

A Flatten, a GroupByKey or a side input on a PCollection of records stops runners from fusing
the steps around it, and the local runners then keep every record in memory (a 1,000,000-line
run grew from 0.85 GB to several GB when statistics flattened records with dead letters). This
test walks the built graph instead of measuring memory: from the records the writers get,
back to the shard reader, every consumer of every record PCollection must be a plain ParDo.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.pipeline import PipelineVisitor

from pipelines import runners
from pipelines.normalize_manifests import build
from pipelines.options import parse_launch

REPO = Path(__file__).resolve().parents[1]


class _Consumers(PipelineVisitor):
    def __init__(self):
        self.consumers = defaultdict(list)

    def visit_transform(self, node):
        for pcoll in node.main_inputs.values():
            self.consumers[pcoll].append(node)
        for side in node.side_inputs:
            self.consumers[side.pvalue].append(node)


def _record_chain(records):
    pcoll = records
    while pcoll.producer is not None and isinstance(pcoll.producer.transform, beam.ParDo):
        yield pcoll
        inputs = list(pcoll.producer.main_inputs.values())
        if len(inputs) != 1:
            break
        pcoll = inputs[0]


SPLIT_AND_PARTITION_OPTIONS = [
    "--split_by=group", "--split_group=attribute:scene", "--keep_input_split",
    "--partition_by=split,source_format,label_job", "--manifest_partition_by=label_job",
]


@pytest.mark.parametrize("extra", [[], SPLIT_AND_PARTITION_OPTIONS], ids=["defaults", "split_and_partition_options"])
def test_every_consumer_of_the_record_path_is_a_fusable_pardo(tmp_path, extra):
    launch = parse_launch([
        "--input", str(REPO / "samples" / "*" / "*.manifest"), "--output", str(tmp_path / "out"), "--runner=FnApiRunner",
        "--output_format=azure_automl", "--output_format=label_studio", "--output_format=jsonl",
        "--output_format=sagemaker", "--output_format=coco",  # these number classes without a pinned list
        *extra,
    ])
    pipeline = runners.new_pipeline(launch.pipeline_options)
    graph = build(pipeline, launch.job, str(tmp_path / "staging"))
    visitor = _Consumers()
    pipeline.visit(visitor)
    chain = list(_record_chain(graph["records"]))
    assert len(chain) >= 5  # split <- check files <- validate <- normalize <- read shards
    for pcoll in chain:
        for node in visitor.consumers[pcoll]:
            assert isinstance(node.transform, beam.ParDo), f"{node.full_label} consumes records: {type(node.transform).__name__}"
            assert not node.side_inputs or pcoll not in [s.pvalue for s in node.side_inputs], node.full_label
            assert not node.transform.side_inputs, f"{node.full_label} reads a side input on the record path"


def _group_by_keys(pipeline) -> list[str]:
    found = []

    class _Visitor(PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.GroupByKey):
                found.append(node.full_label)

    pipeline.visit(_Visitor())
    return found


def test_only_a_named_duplicate_policy_groups_records_by_image(tmp_path):
    """The default graph has no duplicate stage; --on_duplicate adds exactly one GroupByKey."""
    base = ["--input", str(REPO / "samples" / "*" / "*.manifest"), "--output", str(tmp_path / "out"), "--runner=FnApiRunner"]
    labels = {}
    for name, extra in (("default", []), ("first", ["--on_duplicate=first"])):
        launch = parse_launch(base + extra)
        pipeline = runners.new_pipeline(launch.pipeline_options)
        graph = build(pipeline, launch.job, str(tmp_path / name))
        labels[name] = [label for label in _group_by_keys(pipeline) if label.startswith("ResolveDuplicates")]
        stages = graph["record_stages"]
    assert labels["default"] == []
    assert labels["first"] == ["ResolveDuplicates/GroupByImage"]
    assert stages == ("validate", "check_files", "dedupe", "split")

"""The typed, nested configuration: YAML layers and flags merged in one place, checked at launch."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipelines import config
from pipelines.options import ConfigError, help_text, parse_launch
from transforms.settings import SettingError, parse_size

REPO = Path(__file__).resolve().parents[1]
SAMPLE = str(REPO / "samples" / "sagemaker" / "lookout-for-vision.manifest")


def _launch(tmp_path, *layers: str, flags: tuple[str, ...] = ()):
    files = []
    for i, text in enumerate(layers):
        path = tmp_path / f"layer{i}.yaml"
        path.write_text(text)
        files += ["--config", str(path)]
    return parse_launch([*files, "--input", SAMPLE, "--output", str(tmp_path / "out"), *flags])


def test_the_json_schema_file_is_generated_from_the_types():
    committed = json.loads((REPO / "configs" / "labelbeam.schema.json").read_text())
    assert committed == config.schema(), "python -m pipelines.config > configs/labelbeam.schema.json"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_matches_the_schema(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), config.schema())


def test_the_schema_rejects_what_the_loader_rejects(tmp_path):
    bad = {"job": {"read": {"shard_sise": "4KB"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, config.schema())
    with pytest.raises(ConfigError, match="shard_sise"):
        _launch(tmp_path, yaml.safe_dump(bad))


def test_layers_deep_merge_per_leaf_and_flags_win(tmp_path):
    launch = _launch(
        tmp_path,
        "job:\n  read: {shard_size: 4MB, batch_size: 50}\n  validate: {mask: {alpha_threshold: 10}}\n",
        "job:\n  read: {batch_size: 70}\n  validate: {mask: {color_tolerance: 3}}\n",
        flags=("--shard_size=1MB",),
    )
    job = launch.job
    assert job.read.shard_size == 1 << 20  # the flag
    assert job.read.batch_size == 70  # the later file
    assert (job.validate.mask.alpha_threshold, job.validate.mask.color_tolerance) == (10, 3)  # both files, merged
    assert job.read.max_line_bytes == 32 << 20  # the default


def test_format_options_are_typed_by_their_format(tmp_path):
    job = _launch(tmp_path, flags=("--format_option", "label_studio.annotations=latest", "--sagemaker_classes=cat,dog")).job
    options = job.format_options()
    assert options["label_studio"].annotations == "latest"
    assert list(options["sagemaker"].classes) == ["cat", "dog"]
    with pytest.raises(ConfigError, match="annotations"):
        _launch(tmp_path, flags=("--format_option", "label_studio.annotations=sometimes"))
    with pytest.raises(ConfigError, match="unknown format"):
        _launch(tmp_path, "job:\n  formats: {coco_but_not_really: {}}\n")


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--max_error_rate=1.5",), "max_error_rate"),
        (("--mask_alpha_threshold=-1",), "alpha_threshold"),
        (("--shard_size=lots",), "shard_size"),
        (("--validation_profile=strictest",), "validation_profile|profile"),
        (("--storage_options={not json",), "storage"),
        (("--no_such_flag=1",), "no_such_flag"),
        (("--partition_by=split,owner",), "partition_by"),
        (("--partition_by=split,none",), "partition_by"),
        (("--split_by=random",), "split_by"),
        (("--split_by=group", "--split_group=job"), "split_group"),
        (("--split_group=folder",), "split_by group"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_setting(tmp_path, flags, message):
    with pytest.raises(ConfigError) as raised:
        _launch(tmp_path, flags=flags)
    text = str(raised.value)
    assert "\n" not in text
    assert any(m in text for m in message.split("|"))


def test_booleans_and_sizes_parse_the_usual_spellings(tmp_path):
    assert _launch(tmp_path, flags=("--validate_masks=false",)).job.validate.masks is False
    assert _launch(tmp_path, "job:\n  validate: {masks: no}\n").job.validate.masks is False
    assert _launch(tmp_path, flags=("--validate_masks",)).job.validate.masks is True
    assert [parse_size(s) for s in ("64MB", "1KB", "2gb", 123)] == [64 << 20, 1 << 10, 2 << 30, 123]
    with pytest.raises(SettingError):
        parse_size("-1MB")


def test_help_lists_every_flag_with_its_default():
    text = help_text()
    for flag in config.flags():
        assert f"--{flag.name} " in text or f"--{flag.name}[=true|false]" in text
    assert "default 64MB" in text and "67108864" not in text


def test_split_and_partition_settings_from_yaml_and_flags(tmp_path):
    job = _launch(tmp_path, "job: {split: {by: group, group: 'attribute:scene'}, write: {partition_by: []}}").job
    assert (job.split.by, job.split.group_key(), job.split.keep_input) == ("group", "attribute:scene", False)
    assert job.write.records_partitions() == () and job.write.manifest_partitions() == ()
    job = _launch(tmp_path, flags=("--split_by=group", "--keep_input_split", "--manifest_partition_by=label_job")).job
    assert (job.split.group_key(), job.split.keep_input) == ("folder", True)
    assert job.write.records_partitions() == ("split", "task") and job.write.manifest_partitions() == ("label_job",)
    defaults = _launch(tmp_path).job
    assert defaults.split.by == "image" and defaults.write.manifest_partitions() is None

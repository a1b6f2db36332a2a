"""Split rules without a pipeline: groups, splits given in the input, and their precedence."""

from __future__ import annotations

from collections import defaultdict

import pytest

from transforms.formats.base import ParseContext, get_format
from transforms.split_assigner import SplitAssigner
from transforms.split_rules import InputSplits, folder_of, parse_group, source_fields, split_key

RATIOS = {"train": 0.6, "validation": 0.2, "test": 0.2}
CTX = ParseContext(uri="s3://b/m.manifest", base_uri="s3://b")


def test_input_split_names_map_onto_the_configured_ones():
    usual = InputSplits(list(RATIOS))
    assert [usual.from_field(v) for v in ("val", "Validation", "TRAINING", "test", "holdout", "../x", "", 3, None)] == [
        "validation", "validation", "train", "test", "holdout", None, None, None, None
    ]
    short = InputSplits(["train", "val", "test"])
    assert short.from_field("validation") == short.from_folders("s3://b/validation/x.jpg") == "val"


def test_the_nearest_split_folder_counts_never_the_bucket_or_the_file():
    splits = InputSplits(list(RATIOS))
    assert splits.from_folders(split_key("s3://test/data/val/images/x.jpg")) == "validation"
    assert splits.from_folders(split_key("s3://b/train/sub/test/x.jpg")) == "test"
    assert splits.from_folders(split_key("s3://test/x.jpg")) is None
    assert splits.from_folders(split_key("/data/imgs/test.jpg")) is None
    assert splits.from_folders(split_key("/data/Train/x.jpg")) == "train"


def test_groups_are_checked():
    assert parse_group(None) == "folder" and parse_group(" attribute: scene ") == "attribute:scene"
    for bad in ("attribute:", "folders", "job"):
        with pytest.raises(ValueError):
            parse_group(bad)
    assert folder_of(split_key("https://b.s3.amazonaws.com/cats/1.jpg?sig=x")) == "s3://b/cats"


def test_group_by_folder_keeps_a_folder_together_and_still_spreads_folders():
    assigner = SplitAssigner(RATIOS, by="group", group="folder")
    by_folder = defaultdict(set)
    for folder in range(30):
        for image in range(6):
            by_folder[folder].add(assigner.split_of(f"s3://b/scene-{folder}/frame-{image}.jpg", "r", {}))
    assert all(len(splits) == 1 for splits in by_folder.values())
    assert {s for splits in by_folder.values() for s in splits} == set(RATIOS)


def test_group_by_attribute_falls_back_to_the_image():
    assigner = SplitAssigner(RATIOS, by="group", group="attribute:scene")
    image_only = SplitAssigner(RATIOS)
    grouped = {assigner.split_of(f"s3://b/{i}.jpg", "r", {"scene": "kitchen"}) for i in range(40)}
    assert len(grouped) == 1
    assert [assigner.split_of(f"s3://b/{i}.jpg", "r", {}) for i in range(40)] == [image_only.split_of(f"s3://b/{i}.jpg", "r", {}) for i in range(40)]


def test_a_given_split_wins_field_first_then_folder_then_hash():
    keep = SplitAssigner(RATIOS, keep_input=True)
    assert keep.split_of("s3://b/train/x.jpg", "r", {"split": "test"}) == "test"
    assert keep.split_of("s3://b/val/x.jpg", "r", {}) == "validation"
    assert keep.split_of("s3://b/val/x.jpg", "r", {"split": "../escape"}) == "validation"
    hashed = SplitAssigner(RATIOS)
    assert keep.split_of("s3://b/imgs/x.jpg", "r", {"split": 7}) == hashed.split_of("s3://b/imgs/x.jpg", "r", {})
    assert hashed.split_of("s3://b/train/x.jpg", "r", {"split": "test"}) == hashed.split_of("s3://b/train/x.jpg", "r", {})


def test_every_readable_format_gives_its_own_fields():
    sagemaker = get_format("sagemaker").parse({"source-ref": "s3://b/x.jpg", "split": "val", "label": 0, "label-metadata": {"class-name": "cat"}}, CTX).rows[0]
    azure = get_format("azure_automl").parse({"image_url": "s3://b/x.jpg", "label": "cat", "split": "val"}, CTX).rows[0]
    task = get_format("label_studio").parse({"id": 1, "meta": {"a": 1}, "data": {"image": "s3://b/x.jpg", "split": "val"}, "annotations": []}, CTX).rows[0]
    for row, name in ((sagemaker, "sagemaker"), (azure, "azure_automl"), (task, "label_studio")):
        assert source_fields(name, row["extra"])["split"] == "val", name
    assert source_fields("label_studio", task["extra"])["id"] == 1
    assert source_fields("sagemaker", None) == {} and source_fields("nope", '{"a": 1}') == {}


def test_the_input_file_name_gives_a_split_when_one_of_its_words_names_one():
    splits = InputSplits(list(RATIOS))
    names = {
        "s3://b/data/train_annotations.jsonl": "train",
        "/data/validation_annotations.jsonl": "validation",
        "val.manifest": "validation",
        "az://c/x/Test-2024.json.gz": "test",
        "/data/latest.json": None,  # a word, not a part of one
        "/data/train_val.jsonl": None,  # two splits: ambiguous
        "/data/validation/annotations.jsonl": None,  # a folder is not the file's name
        "": None,
        None: None,
    }
    assert {name: splits.from_file_name(name) for name in names} == names


def test_a_given_split_wins_field_then_file_name_then_image_folder():
    keep = SplitAssigner(RATIOS, keep_input=True)
    source = "s3://b/validation_annotations.jsonl"
    assert keep.split_of("s3://b/train/x.jpg", "r", {"split": "test"}, source) == "test"
    assert keep.split_of("s3://b/train/x.jpg", "r", {}, source) == "validation"
    assert keep.split_of("s3://b/train/x.jpg", "r", {}, "s3://b/annotations.jsonl") == "train"
    hashed = SplitAssigner(RATIOS)
    assert hashed.split_of("s3://b/imgs/x.jpg", "r", {}, source) == hashed.split_of("s3://b/imgs/x.jpg", "r", {})

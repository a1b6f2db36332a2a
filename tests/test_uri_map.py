"""Image and mask references as manifests write them: --uri_map and --relative_output, the
same in every output format; and --keep_input_split reading the input file's name."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest

from benchmarks.coco_write import detection_line
from pipelines.normalize_manifests import run
from transforms.settings import SettingError
from transforms.uri_map import References, UriMap, parse_uri_map

FORMATS = ("sagemaker", "azure_automl", "label_studio", "coco", "jsonl")


def test_the_longest_prefix_wins_on_whole_segments():
    uri_map = UriMap(["/data=s3://b/data", "/data/images=gs://g/img", "s3://=az://acct/"])
    assert uri_map.rewrite("/data/images/a.jpg") == "gs://g/img/a.jpg"
    assert uri_map.rewrite("/data/masks/a.png") == "s3://b/data/masks/a.png"
    assert uri_map.rewrite("/database/a.jpg") == "/database/a.jpg"  # not a whole segment
    assert uri_map.rewrite("s3://other/a.jpg") == "az://acct/other/a.jpg"


def test_references_map_first_then_become_relative_to_the_base(tmp_path):
    references = References(["s3://b/raw=/mnt/raw"], str(tmp_path))
    rows = [
        {"image": {"uri": f"{tmp_path}/training-images/a.jpg"}, "mask": {"uri": f"file://{tmp_path}/masks/a.png"}},
        {"image": {"uri": "s3://b/raw/x.jpg"}, "mask": None},
        {"image": {"uri": "https://host/y.jpg"}, "mask": {"uri": None}},
    ]
    references.apply(rows)
    assert [r["image"]["uri"] for r in rows] == ["training-images/a.jpg", "/mnt/raw/x.jpg", "https://host/y.jpg"]
    assert rows[0]["mask"]["uri"] == "masks/a.png"
    assert not References() and References(relative_to=".")
    assert References(relative_to=".").base == str(Path.cwd())


def test_a_uri_map_entry_is_from_equals_to():
    assert parse_uri_map(["a=b=c"]) == ["a=b=c"]  # the first '=' separates
    assert parse_uri_map({"s3://b": "/mnt/b"}) == ["s3://b=/mnt/b"]
    for bad in ("nothing", "=to", "from="):
        with pytest.raises(SettingError):
            parse_uri_map(bad)


@pytest.fixture()
def relative_manifest(tmp_path) -> Path:
    """A Ground Truth manifest whose images are relative to its folder (as Lookout for Vision's
    getting-started manifests are)."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    rng = random.Random(1)
    lines = [detection_line(i, rng, prefix="training-images") for i in range(6)]
    path = folder / "train.manifest"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    return path


def _written(out: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((out / "manifests").rglob("*")) if p.is_file())


def _job(manifest: Path, out: Path, *extra: str) -> None:
    argv = ["--input", str(manifest), "--output", str(out), "--runner=FnApiRunner", "--validate_masks=false", "--quiet"]
    assert run(argv + [f"--output_format={name}" for name in FORMATS] + list(extra)) == 0


@pytest.mark.e2e
def test_every_format_writes_references_relative_to_the_base_or_mapped(relative_manifest, tmp_path):
    folder = relative_manifest.parent
    plain, relative = tmp_path / "plain", tmp_path / "relative"
    _job(relative_manifest, plain)
    _job(relative_manifest, relative, "--relative_output", str(folder), "--uri_map", f"{folder}/training-images/img-0000003.jpg=s3://x/three.jpg")
    assert f"{folder}/training-images/img-0000001.jpg" in _written(plain)  # absolute by default
    text = _written(relative)
    assert str(folder) + "/training" not in text
    for name in FORMATS:
        own = "\n".join(p.read_text() for p in (relative / "manifests" / name).rglob("*") if p.is_file())
        assert "training-images/img-0000001.jpg" in own and "s3://x/three.jpg" in own, name
    # records/ keep the references as read: the files the workers checked
    uris = ds.dataset(relative / "records", format="parquet", partitioning="hive").to_table(columns=["image"]).column("image").to_pylist()
    assert {u["uri"] for u in uris} == {f"{folder}/training-images/img-{i:07d}.jpg" for i in range(6)}


@pytest.mark.e2e
def test_keep_input_split_keeps_the_split_azure_file_names_give(tmp_path):
    lines = [orjson.loads(line) for line in (Path(__file__).parents[1] / "samples" / "azure_automl" / "object_detection.jsonl").read_bytes().splitlines() if line.strip()]
    (tmp_path / "train_annotations.jsonl").write_bytes(b"\n".join(orjson.dumps({**line, "image_url": f"s3://b/images/t{i}.jpg"}) for i, line in enumerate(lines)) + b"\n")
    (tmp_path / "validation_annotations.jsonl").write_bytes(b"\n".join(orjson.dumps({**line, "image_url": f"s3://b/images/v{i}.jpg"}) for i, line in enumerate(lines)) + b"\n")
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "*_annotations.jsonl"), "--output", str(out), "--runner=FnApiRunner", "--validate_masks=false",
            "--quiet", "--keep_input_split"]  # fmt: skip
    assert run(argv) == 0
    table = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table(columns=["image", "split", "source"]).to_pylist()
    assert {row["split"] for row in table} == {"train", "validation"}
    for row in table:
        expected = "validation" if row["source"]["uri"].endswith("validation_annotations.jsonl") else "train"
        assert row["split"] == expected, row["image"]["uri"]


@pytest.mark.e2e
def test_lookout_for_vision_references_come_back_as_the_manifest_wrote_them(tmp_path):
    """The Lookout for Vision getting-started manifest (references relative to its dataset
    folder) through the job and back to Ground Truth: with --relative_output the folder, every
    image and mask reference is written as the manifest wrote it, not as a path of this machine."""
    lfv = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "lookout-for-vision-getting-started"
    manifest = lfv / "manifests" / "template.manifest"
    if not manifest.exists():
        pytest.skip("shared realdata is not beside the repository")
    out = tmp_path / "out"
    argv = ["--input", str(manifest), "--relative_to", str(lfv), "--relative_output", str(lfv), "--output", str(out),
            "--runner=FnApiRunner", "--quiet", "--output_format=sagemaker"]  # fmt: skip
    assert run(argv) == 0

    def references(lines) -> set[tuple]:
        return {(line["source-ref"], line.get("anomaly-mask-ref")) for line in lines}

    given = [orjson.loads(line) for line in manifest.read_bytes().splitlines() if line.strip()]
    written = [orjson.loads(line) for path in (out / "manifests" / "sagemaker").rglob("*.manifest") for line in path.read_bytes().splitlines()]
    assert len(written) == len(given) and references(written) == references(given)

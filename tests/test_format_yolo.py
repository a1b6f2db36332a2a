"""The YOLO output: label lines per task, refusals, stable names and class ids, what run.json
counts, and the folder read back by independent readers (panlabel for boxes, supervision for
polygons and oriented boxes) against the records it was written from."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import yaml
from PIL import Image

from pipelines.normalize_manifests import run
from transforms import errors
from transforms.formats import yolo
from transforms.formats.base import WriteContext, get_format

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def _box(x0, y0, x1, y1, label="car", **extra):
    return {"label": label, "bbox": {"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1}, **extra}


def _row(record_id: str, uri: str, objects: list[dict], labels: list[dict] | None = None, origin: str = "ground_truth") -> dict:
    return {"record_id": record_id, "image": {"uri": uri, "width": 200, "height": 100}, "objects": objects, "labels": labels or [], "origin": origin}


def _assemble(parts_by_partition: dict[str, list[list[dict]]], options: yolo.YoloOptions) -> tuple[dict[str, bytes], WriteContext]:
    """Rows, bundle by bundle -> the files the finalize step would publish (name -> bytes)."""
    ctx = WriteContext(options=options)
    documents = []
    for partition, bundles in parts_by_partition.items():
        parts = []
        for rows in bundles:
            handle = io.BytesIO()
            part = yolo.YoloPart(handle, options)
            part.write(rows, ctx)
            summary = part.close()
            content = handle.getvalue()
            parts.append((lambda content=content: io.BytesIO(content), summary))
        documents.append((partition, parts))
    files: dict[str, bytes] = {}

    @contextlib.contextmanager
    def open_output(partition, name=None):
        out = io.BytesIO()
        yield out
        files[name] = out.getvalue()

    yolo.assemble(documents, options, open_output)
    return files, ctx


def test_each_task_writes_its_own_line_and_refuses_what_it_cannot_hold():
    rotated = {"label": "car", "rotation": 30.0, "polygon": [[0.2, 0.1, 0.6, 0.2, 0.5, 0.6, 0.1, 0.5]], "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.6, "y_max": 0.6}}
    triangle = {"label": "person", "polygon": [[0.1, 0.1, 0.3, 0.1, 0.2, 0.4]], "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.3, "y_max": 0.4}}
    two_rings = {"label": "person", "polygon": [[0.1, 0.1, 0.3, 0.1, 0.2, 0.4], [0.5, 0.5, 0.7, 0.5, 0.6, 0.8]]}
    point = {"label": "nose", "keypoints": [{"label": "nose", "x": 0.5, "y": 0.5, "visible": True}]}
    rows = [_row("r1", "s3://b/img/a.jpg", [_box(0.1, 0.2, 0.5, 0.6), rotated, triangle, two_rings, point])]
    lines = {}
    for task in yolo.LABEL_TASKS:
        files, ctx = _assemble({"split=train/origin=ground_truth": [rows]}, yolo.YoloOptions(task=task))
        lines[task] = files["labels/train/a.txt"].decode().splitlines()
        lines[task + "-refused"] = sorted((index, code) for _, index, code, _ in ctx.rejected_objects)
    # names sorted over the output: car 0, nose never written, person 1
    assert lines["detect"] == ["0 0.3 0.4 0.4 0.4", "0 0.35 0.35 0.5 0.5", "1 0.2 0.25 0.2 0.3", "1 0.4 0.45 0.6 0.7"]
    assert lines["detect-refused"] == [(4, errors.OBJECT_UNREPRESENTABLE)]
    assert lines["segment"] == ["0 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6", "0 0.2 0.1 0.6 0.2 0.5 0.6 0.1 0.5", "1 0.1 0.1 0.3 0.1 0.2 0.4"]
    assert lines["segment-refused"] == [(3, errors.YOLO_TASK_MISMATCH), (4, errors.OBJECT_UNREPRESENTABLE)]
    assert lines["obb"] == ["0 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6", "0 0.2 0.1 0.6 0.2 0.5 0.6 0.1 0.5"]
    assert lines["obb-refused"] == [(2, errors.YOLO_TASK_MISMATCH), (3, errors.YOLO_TASK_MISMATCH), (4, errors.OBJECT_UNREPRESENTABLE)]


def test_image_labels_alone_are_refused_and_an_empty_record_is_a_background_image():
    rows = [_row("r1", "a.jpg", [], labels=[{"name": "day"}]), _row("r2", "b.jpg", [])]
    files, ctx = _assemble({"split=train/origin=ground_truth": [rows]}, yolo.YoloOptions())
    assert [(row["record_id"], code) for row, code, _ in ctx.rejected] == [("r1", errors.YOLO_IMAGE_LABELS_ONLY)]
    assert files["labels/train/b.txt"] == b"" and "labels/train/a.txt" not in files
    assert files["train.txt"] == b"b.jpg\n"


def test_class_ids_are_equal_across_splits_and_a_pinned_list_wins():
    parts = {
        "split=train/origin=ground_truth": [[_row("r1", "a.jpg", [_box(0, 0, 1, 1, "zebra")])], [_row("r2", "b.jpg", [_box(0, 0, 1, 1, "ant")])]],
        "split=validation/origin=ground_truth": [[_row("r3", "c.jpg", [_box(0, 0, 1, 1, "zebra")])]],
    }
    files, _ = _assemble(parts, yolo.YoloOptions())
    data = yaml.safe_load(files["data.yaml"])
    assert data["names"] == {0: "ant", 1: "zebra"} and data["train"] == "images/train" and data["val"] == "images/validation"
    assert files["labels/train/a.txt"].split()[0] == files["labels/validation/c.txt"].split()[0] == b"1"
    pinned, ctx = _assemble(parts, yolo.YoloOptions(names=["zebra"]))
    assert yaml.safe_load(pinned["data.yaml"])["names"] == {0: "zebra"}
    assert pinned["labels/validation/c.txt"].split()[0] == b"0" and pinned["labels/train/b.txt"] == b""
    assert [(row["record_id"], code) for row, _, code, _ in ctx.rejected_objects] == [("r2", errors.OBJECT_UNREPRESENTABLE)]


def test_one_stem_twice_in_a_split_gets_names_that_do_not_depend_on_the_order():
    first = [_row("r1", "s3://b/day1/cam.jpg", [_box(0, 0, 0.5, 0.5)])]
    second = [_row("r2", "s3://b/day2/cam.png", [_box(0.5, 0.5, 1, 1)])]
    one, _ = _assemble({"split=train": [first, second]}, yolo.YoloOptions())
    other, _ = _assemble({"split=train": [second, first]}, yolo.YoloOptions())
    labels = {name: content for name, content in one.items() if name.startswith("labels/")}
    assert labels == {name: content for name, content in other.items() if name.startswith("labels/")}
    assert sorted(labels) == sorted([f"labels/train/{yolo.unique_stem('cam', 's3://b/day1/cam.jpg', 'r1')}.txt", f"labels/train/{yolo.unique_stem('cam', 's3://b/day2/cam.png', 'r2')}.txt"])
    assert len(set(labels.values())) == 2


@pytest.mark.parametrize(
    ("uri", "stem"),
    [
        ("s3://b/x/0001.jpg", "0001"),
        ("https://h/img/a.b.png?sig=x/y", "a.b"),
        ("C:\\data\\cam.jpg", "cam"),
        ("images/..", "image"),
        ("a/.hidden", ".hidden"),
        ("a/tab\there.jpg", "tab_here"),
        ("a/" + "n" * 300 + ".jpg", "n" * 100 + "__" + __import__("hashlib").blake2b(("n" * 300).encode(), digest_size=5).hexdigest()),
    ],
)
def test_a_label_file_is_named_after_its_image_and_stays_one_safe_file_name(uri, stem):
    assert yolo.image_stem(uri) == stem


def test_a_line_break_in_an_image_reference_refuses_the_record():
    files, ctx = _assemble({"split=train": [[_row("r1", "a\nb.jpg", [_box(0, 0, 1, 1)]), _row("r2", "c.jpg", [_box(0, 0, 1, 1)])]]}, yolo.YoloOptions())
    assert [(row["record_id"], code) for row, code, _ in ctx.rejected] == [("r1", errors.OUTPUT_UNREPRESENTABLE)]
    assert files["train.txt"] == b"c.jpg\n"


def test_the_finalize_step_writes_the_folder_once_and_a_retry_counts_it_again(tmp_path):
    """The write stage's finalize step on two bundles' parts: the label files, the list and
    data.yaml, each counted; run again after the parts are gone (a retried finalize), it counts
    the same files instead of failing or writing them twice."""
    import pyarrow as pa

    from transforms import storage
    from transforms.finalize import finalize
    from transforms.output_files import _ManifestFile
    from transforms.schema import SCHEMA
    from transforms.writing import TMP_DIR, OutputPlan

    root = str(tmp_path / "yolo")
    written = []
    bundles = ([_row("r1", "a.jpg", [_box(0, 0, 0.5, 0.5, "b")]), _row("r2", "x/c.jpg", [_box(0, 0, 1, 1, "a")])], [_row("r3", "y/c.jpg", [_box(0.5, 0.5, 1, 1, "a"), _box(0, 0, 1, 1, "b")])])
    for bundle, rows in enumerate(bundles):
        temp = tmp_path / "yolo" / TMP_DIR / f"part-{bundle}"
        temp.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "wb") as handle:
            part = _ManifestFile(handle, "yolo", yolo.YoloOptions())
            full = [{name: row.get(name) for name in SCHEMA.names} | {"split": "train"} for row in rows]
            part.write(pa.RecordBatch.from_pylist(full, schema=SCHEMA))
            part.close()
        written.append(("split=train/origin=ground_truth", str(temp), ".txt", part.count, part.summary))
    plan = OutputPlan("manifests/yolo", root, storage.Storage(), layout="folder", document=("yolo", yolo.YoloOptions()))
    runs = [finalize(plan, written)[0].drain() for _ in range(2)]
    for outputs in runs:
        ledger = dict(outputs)["__outputs__"]["manifests/yolo"]
        assert (ledger["landed"], ledger["files"], ledger["objects_landed"]) == (3, 5, 4)
        assert {name: entry["rows"] for name, entry in ledger["published"].items()} == {
            "data.yaml": 0, "train.txt": 3, "labels/train/a.txt": 0,  # records: the lines of the split's image list
            f"labels/train/{yolo.unique_stem('c', 'x/c.jpg', 'r2')}.txt": 0, f"labels/train/{yolo.unique_stem('c', 'y/c.jpg', 'r3')}.txt": 0,
        }
    assert (tmp_path / "yolo" / "labels" / "train" / "a.txt").read_text() == "1 0.25 0.25 0.5 0.5\n"
    assert sorted(p.relative_to(tmp_path / "yolo").as_posix() for p in (tmp_path / "yolo").rglob("*") if p.is_file()) == sorted(ledger["published"])


def test_predictions_go_to_their_own_folder_with_their_confidence():
    files, _ = _assemble({"split=train/origin=prediction": [[_row("p", "a.jpg", [_box(0, 0, 0.5, 0.5, score=0.9)], origin="prediction")]]}, yolo.YoloOptions())
    assert files["predictions/train/a.txt"] == b"0 0.25 0.25 0.5 0.5 0.9\n"
    assert "train" not in yaml.safe_load(files["data.yaml"]) and "predictions_train.txt" in files


def test_file_counts_count_records_in_the_image_lists_and_objects_in_the_label_files():
    fmt = get_format("yolo")
    assert fmt.file_counts("labels/train/a.txt", 2) == (0, 2)
    assert fmt.file_counts("predictions/train/b.txt", 0) == (0, 0)
    assert fmt.file_counts("train.txt", 2) == (2, 0)  # one line per record, label files or classify copies
    assert fmt.file_counts("predictions_train.txt", 3) == (3, 0)
    assert fmt.file_counts("data.yaml", 5) == (0, 0)


# -- the job, read back ------------------------------------------------------------------------

WIDTH, HEIGHT = 160, 120
ONE_SPLIT = ("--split_ratios", "train=1")  # both scene.png in one split: their label files told apart


def _label_studio_export(folder: Path) -> Path:
    """Tasks on real PNGs: rectangles, rotated rectangles and polygons, one image name twice."""
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    tasks = []
    for i, name in enumerate(["a/scene.png", "b/scene.png", "a/road.png", "a/yard.png"]):
        Image.new("RGB", (WIDTH, HEIGHT), (i * 40, 80, 120)).save(folder / name)
        result = [
            {"type": "rectanglelabels", "value": {"x": 10 + i, "y": 20, "width": 30, "height": 25, "rotation": 0, "rectanglelabels": ["car"]}},
            {"type": "rectanglelabels", "value": {"x": 50, "y": 30 + i, "width": 20, "height": 15, "rotation": 25 + i, "rectanglelabels": ["truck"]}},
            {"type": "polygonlabels", "value": {"points": [[60, 60], [90, 62], [80, 90 - i]], "polygonlabels": ["person"]}},
        ]
        for n, item in enumerate(result):
            item.update({"id": f"r{i}{n}", "from_name": "label", "to_name": "image", "original_width": WIDTH, "original_height": HEIGHT})
        tasks.append({"id": i + 1, "data": {"image": name}, "annotations": [{"id": 100 + i, "result": result}]})
    path = folder / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def _job(manifest: Path, out: Path, *extra: str) -> dict:
    assert run(["--input", str(manifest), "--output", str(out), "--output_format", "yolo", "--quiet", *extra]) == 0
    return json.loads((out / "run.json").read_text())


def _records(out: Path) -> list[dict]:
    return ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()


def _label_stems(records: list[dict]) -> dict[tuple[str, str], dict]:
    """(split, label file stem) -> its record: an image's stem, made unique in its split."""
    found = {}
    for split in {r["split"] for r in records}:
        items = [r for r in records if r["split"] == split]
        stems = [yolo.image_stem(r["image"]["uri"]) for r in items]
        for record, stem in zip(items, stems):
            if stems.count(stem) > 1:
                stem = yolo.unique_stem(stem, record["image"]["uri"], record["record_id"])
            found[(split, stem)] = record
    return found


def _dataset_with_images(out: Path, into: Path, records: list[dict], base: Path) -> Path:
    """The YOLO folder with each record's image (a reference relative to `base`) copied to
    images/<split>/<label stem><ext>, where YOLO readers look for it."""
    folder = into / "yolo"
    shutil.copytree(out / "manifests" / "yolo", folder)
    for (split, stem), record in _label_stems(records).items():
        source = base / record["image"]["uri"]
        target = folder / "images" / split / f"{stem}{source.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return folder


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return _label_studio_export(tmp_path_factory.mktemp("yolo-input"))


@pytest.mark.e2e
def test_panlabel_reads_the_boxes_labelbeam_wrote(export, tmp_path):
    panlabel = shutil.which("panlabel") or shutil.which("panlabel", path=str(Path(sys.executable).parent))
    if panlabel is None:
        pytest.skip("panlabel is not installed (pip install panlabel==0.7.0)")
    report = _job(export, tmp_path / "out", *ONE_SPLIT)
    written = report["outputs"]["manifests/yolo"]
    assert written["landed"] == written["given"] - written["refused"] == 4 and written["objects"]["landed"] == 12
    records = _records(tmp_path / "out")
    folder = _dataset_with_images(tmp_path / "out", tmp_path, records, export.parent)
    data = yaml.safe_load((folder / "data.yaml").read_text())
    for key in [k for k in data if k not in ("path", "task", "names")]:
        del data[key]  # panlabel follows an image folder of data.yaml through Ultralytics' rule; it walks images/ itself
    (folder / "data.yaml").write_text(yaml.safe_dump(data))
    done = subprocess.run([panlabel, "convert", "--from", "yolo", "--to", "coco", "-i", str(folder), "-o", str(tmp_path / "coco.json"), "--allow-lossy"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    coco = json.loads((tmp_path / "coco.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names.values()) == ["car", "person", "truck"]
    found: dict[str, list] = {}
    by_id = {image["id"]: image for image in coco["images"]}
    for annotation in coco["annotations"]:
        image = by_id[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        key = (Path(image["file_name"]).parent.name, Path(image["file_name"]).stem)
        found.setdefault(key, []).append((names[annotation["category_id"]], x / image["width"], y / image["height"], (x + w) / image["width"], (y + h) / image["height"]))
    expected = {key: [(o["label"], o["bbox"]["x_min"], o["bbox"]["y_min"], o["bbox"]["x_max"], o["bbox"]["y_max"]) for o in record["objects"]] for key, record in _label_stems(records).items()}
    assert sorted(found) == sorted(expected) and sum(map(len, found.values())) == 12
    assert len({stem for _, stem in expected}) == 4  # the two scene.png of one split were told apart
    for key, boxes in expected.items():
        got = sorted(found[key])
        for want, seen in zip(sorted(boxes), got):
            assert want[0] == seen[0]
            assert np.allclose(want[1:], seen[1:], atol=1e-6), (key, want, seen)


def _supervision_dataset(folder: Path, split: str, is_obb: bool):
    sv = pytest.importorskip("supervision")
    return sv.DetectionDataset.from_yolo(str(folder / "images" / split), str(folder / "labels" / split), str(folder / "data.yaml"), is_obb=is_obb)


@pytest.mark.e2e
def test_supervision_reads_the_oriented_boxes_as_the_rotated_rectangles_corners(export, tmp_path):
    pytest.importorskip("supervision")
    report = _job(export, tmp_path / "out", *ONE_SPLIT, "--format_option", "yolo.task=obb")
    written = report["outputs"]["manifests/yolo"]
    # each record: a box, a rotated box (its four corners) and a polygon (refused: no OBB of it)
    assert (written["landed"], written["objects"]["landed"], written["refused_objects"]) == (4, 8, 4)
    refused = [json.loads(line) for path in (tmp_path / "out" / "refused" / "yolo").glob("*.jsonl") for line in path.read_text().splitlines()]
    assert sorted((r["code"], r["object_index"]) for r in refused) == [(errors.YOLO_TASK_MISMATCH, 2)] * 4
    records = _records(tmp_path / "out")
    folder = _dataset_with_images(tmp_path / "out", tmp_path, records, export.parent)
    dataset = _supervision_dataset(folder, "train", is_obb=True)
    names = list(dataset.classes)
    assert names == ["car", "truck"]  # the polygons were refused: their class is in no file
    corners_by_stem = {Path(path).stem: detections for path, _, detections in dataset}
    for (_, stem), record in _label_stems(records).items():
        detections = corners_by_stem[stem]
        seen = {names[c]: np.asarray(corners) / [WIDTH, HEIGHT] for c, corners in zip(detections.class_id, detections.data["xyxyxyxy"])}
        rotated = next(o for o in record["objects"] if o["label"] == "truck")
        assert np.allclose(seen["truck"].ravel(), rotated["polygon"][0], atol=1e-6)
        box = next(o for o in record["objects"] if o["label"] == "car")["bbox"]
        assert np.allclose(seen["car"].ravel(), [box["x_min"], box["y_min"], box["x_max"], box["y_min"], box["x_max"], box["y_max"], box["x_min"], box["y_max"]], atol=1e-6)


@pytest.mark.e2e
def test_supervision_reads_the_polygons_of_a_segment_folder(export, tmp_path):
    pytest.importorskip("supervision")
    report = _job(export, tmp_path / "out", *ONE_SPLIT, "--format_option", "yolo.task=segment")
    assert report["outputs"]["manifests/yolo"]["objects"]["landed"] == 12
    records = _records(tmp_path / "out")
    folder = _dataset_with_images(tmp_path / "out", tmp_path, records, export.parent)
    dataset = _supervision_dataset(folder, "train", is_obb=False)
    names = list(dataset.classes)
    boxes = {}
    for path, _, detections in dataset:
        boxes[Path(path).stem] = {names[c]: np.asarray(xyxy) / [WIDTH, HEIGHT, WIDTH, HEIGHT] for c, xyxy in zip(detections.class_id, detections.xyxy)}
        assert detections.mask is not None and detections.mask.any(axis=(1, 2)).all()  # every line a polygon mask
    assert len(boxes) == 4
    for (_, stem), record in _label_stems(records).items():
        for obj in record["objects"]:
            ring = (obj["polygon"] or [None])[0]
            want = [min(ring[0::2]), min(ring[1::2]), max(ring[0::2]), max(ring[1::2])] if ring else [obj["bbox"][k] for k in ("x_min", "y_min", "x_max", "y_max")]
            assert np.allclose(boxes[stem][obj["label"]], want, atol=1e-6), (stem, obj["label"])


@pytest.mark.e2e
@pytest.mark.parametrize("sample", ["label_studio/export.json", "sagemaker/ground-truth.jsonl"])
def test_the_samples_land_as_given_less_refused(sample, tmp_path):
    report = _job(SAMPLES / sample, tmp_path / "out")
    written = report["outputs"]["manifests/yolo"]
    assert written["problems"] == [] and written["landed"] == written["given"] - written["refused"] > 0
    assert written["objects"]["landed"] == written["objects"]["written"]
    folder = tmp_path / "out" / "manifests" / "yolo"
    label_files = sorted(folder.glob("labels/*/*.txt")) + sorted(folder.glob("predictions/*/*.txt"))
    assert len(label_files) == written["landed"]
    assert sum(len(p.read_text().splitlines()) for p in label_files) == written["objects"]["landed"]
    data = yaml.safe_load((folder / "data.yaml").read_text())
    for line in (text for p in label_files for text in p.read_text().splitlines()):
        values = line.split()
        assert int(values[0]) in data["names"] and len(values) in (5, 6) and all(0 <= float(v) <= 1 for v in values[1:])
    every_file = json.loads((tmp_path / "out" / ".labelbeam" / "published.json").read_text())["outputs"]["manifests/yolo"]
    assert set(every_file) == {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert written["published_totals"]["files"] == len(every_file)

"""The whole job reading COCO: counts reconciled and equal to pycocotools' on the same file,
COCO -> labelbeam -> COCO equal (ids aside) as pycocotools reads both, and COCO -> Ground
Truth / Rekognition and Azure AutoML JSONL in the shapes AWS's and Azure's own COCO
converters produce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from pipelines.normalize_manifests import run
from tests.coco_fixtures import FAULTS, RESULTS, clean_document, faulty_document, write
from tests.conftest import need_shared_data

pytestmark = pytest.mark.e2e

RUNNER = "--runner=FnApiRunner"
ONE_SPLIT = "--split_ratios=train=1"


def _run(inputs, out: Path, *extra) -> dict:
    args = [arg for path in inputs for arg in ("--input", str(path))]
    assert run([*args, "--output", str(out), RUNNER, ONE_SPLIT, "--shard_size=1KB", *extra]) == 0
    return json.loads((out / "run.json").read_text())


def _quiet_coco(path: Path) -> COCO:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _annotations_by_image(coco: COCO) -> dict:
    """image file name -> sorted (category, box, area, iscrowd, mask pixels, keypoints by name, score)."""
    found = {}
    for image_id, image in coco.imgs.items():
        entries = []
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            if annotation["category_id"] not in coco.cats:
                continue  # a dead letter of labelbeam's (COCO_CATEGORY_UNKNOWN), counted apart
            category = coco.cats[annotation["category_id"]]
            names = category.get("keypoints") or []
            flat = annotation.get("keypoints") or []
            points = {names[i // 3] if names else str(i // 3 + 1): (round(flat[i], 3), round(flat[i + 1], 3), flat[i + 2]) for i in range(0, len(flat), 3) if flat[i + 2] > 0}
            segmented = bool(annotation.get("segmentation"))
            pixels = int(coco.annToMask(annotation).sum()) if segmented else None
            entries.append((
                category["name"], tuple(round(v, 3) for v in annotation["bbox"]), round(annotation["area"], 3),
                int(annotation.get("iscrowd", 0)), pixels, tuple(sorted(points.items())), annotation.get("score"),
            ))  # fmt: skip
        found[Path(image["file_name"]).name] = sorted(entries, key=repr)
    return found


def _written(out: Path, stem: str) -> list[Path]:
    return sorted((out / "manifests" / "coco").rglob(f"{stem}_*.json"))


def test_faults_are_coded_dead_letters_and_every_element_is_accounted_for(tmp_path):
    instances = write(tmp_path / "in" / "instances_all.json", faulty_document(), indent=2)
    results = write(tmp_path / "in" / "results_all.json", RESULTS)
    summary = _run([instances, results], tmp_path / "out")
    doc = faulty_document()
    totals = summary["totals"]
    assert totals["reconciled"]
    assert totals["lines"] == len(doc["images"]) + len(doc["annotations"]) + len(doc["categories"]) + len(RESULTS)
    codes = {}
    for entry in summary["files"]:
        for code, n in (entry.get("dead_letter_codes") or {}).get("normalize", {}).items():
            codes[code] = codes.get(code, 0) + n
    assert codes == FAULTS
    assert totals["records"] == 5 + 2  # five images (one id given twice), two with predictions
    letters = [json.loads(line) for path in (tmp_path / "out" / "errors").rglob("*.jsonl") for line in path.read_text().splitlines()]
    assert sorted(letter["code"] for letter in letters) == sorted(code for code, n in FAULTS.items() for _ in range(n))


def test_coco_to_labelbeam_to_coco_is_equal_as_pycocotools_reads_both(tmp_path):
    instances = write(tmp_path / "in" / "instances_all.json", clean_document())
    results = write(tmp_path / "in" / "results_all.json", RESULTS)
    summary = _run([instances, results], tmp_path / "out", "--output_format=coco")
    assert summary["totals"]["dead_letters"] == 0 and summary["totals"]["reconciled"]
    (written,) = _written(tmp_path / "out", "instances")
    source, back = _quiet_coco(instances), _quiet_coco(written)
    assert len(back.imgs) == len(source.imgs) and len(back.anns) == len(source.anns)
    assert _annotations_by_image(back) == _annotations_by_image(source)
    (results_back,) = _written(tmp_path / "out", "results")
    predictions = source.loadRes(json.loads(results.read_text()))
    # loadRes gives a box-only result a rectangle segmentation, unless it has one (labelbeam
    # writes `segmentation: []`): results are compared by box, area, category and score
    boxes_only = lambda found: {image: [e[:4] + e[5:] for e in entries] for image, entries in found.items()}  # noqa: E731
    assert boxes_only(_annotations_by_image(back.loadRes(str(results_back)))) == boxes_only(_annotations_by_image(predictions))


@pytest.mark.parametrize("name", ["instances_train.json", "instances_val.json", "person_keypoints_train.json"])
def test_real_coco_files_give_pycocotools_counts_and_come_back_equal(tmp_path, name):
    path = need_shared_data("realdata", "datumaro-coco-tests", name)
    summary = _run([path], tmp_path / "out", "--format=coco", "--output_format=coco")
    coco = _quiet_coco(path)
    totals = summary["totals"]
    assert totals["reconciled"] and totals["records"] == len(coco.imgs)
    unknown = [a for a in coco.anns.values() if a["category_id"] not in coco.cats]  # datumaro's keypoints file has two
    assert totals["dead_letters"] == len(unknown)
    assert totals["lines"] == len(coco.imgs) + len(coco.anns) + len(coco.cats)
    (written,) = _written(tmp_path / "out", "instances")
    back = _quiet_coco(written)
    assert len(back.anns) == len(coco.anns) - len(unknown)
    assert _annotations_by_image(back) == _annotations_by_image(coco)


def _aws_rekognition_lines(coco: COCO) -> dict:
    """What AWS's COCO -> Custom Labels transform makes of each image (its documented mapping:
    source-ref from file_name, image_size width/height/depth 3, per annotation class_id from
    category_id with left/top/width/height the COCO bbox in pixels, class-map id -> name)."""
    lines = {}
    for image_id, image in coco.imgs.items():
        boxes = sorted(
            (coco.cats[a["category_id"]]["name"], *(round(v, 3) for v in a["bbox"])) for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        )
        lines[Path(image["file_name"]).name] = {"image_size": [{"width": image["width"], "height": image["height"], "depth": 3}], "boxes": boxes}
    return lines


def _azure_jsonl_lines(coco: COCO) -> dict:
    """What Azure's coco-to-jsonl helper (COCOJSONLConverter) makes of each image: image_url from
    the file name, image_details width/height, per annotation a label with topX/topY/bottomX/
    bottomY (its box normalized) when its segmentation is empty, else its polygons normalized;
    isCrowd from iscrowd. RLE segmentations it traces with AutoML's own masktools: left out."""
    lines = {}
    for image_id, image in coco.imgs.items():
        width, height = image["width"], image["height"]
        labels = []
        for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            label = {"label": coco.cats[a["category_id"]]["name"], "isCrowd": a.get("iscrowd", 0)}
            if not a.get("segmentation"):
                x, y, w, h = a["bbox"]
                label.update(topX=x / width, topY=y / height, bottomX=(x + w) / width, bottomY=(y + h) / height)
            elif isinstance(a["segmentation"], list):
                label["polygon"] = [[v / (width if i % 2 == 0 else height) for i, v in enumerate(ring)] for ring in a["segmentation"]]
            else:
                continue
            labels.append(label)
        lines[Path(image["file_name"]).name] = {"image_details": {"width": width, "height": height}, "label": labels}
    return lines


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() <= b.keys() and all(_close(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) < 1e-9
    return a == b


def _as_polygon(label: dict) -> dict:
    """A box label as the rectangle an instance-segmentation file holds it as (AutoML reads one
    task per file: labelbeam writes a box beside polygons as its four corners)."""
    if "topX" not in label:
        return label
    x0, y0, x1, y1 = label["topX"], label["topY"], label["bottomX"], label["bottomY"]
    return {"label": label["label"], "isCrowd": label["isCrowd"], "polygon": [[x0, y0, x1, y0, x1, y1, x0, y1]]}


def test_coco_goes_to_ground_truth_and_azure_in_the_shapes_aws_and_azure_convert_it_to(tmp_path):
    instances = write(tmp_path / "in" / "instances_all.json", clean_document())
    _run([instances], tmp_path / "out", "--output_format=sagemaker", "--output_format=azure_automl")
    coco = _quiet_coco(instances)
    expected = _aws_rekognition_lines(coco)
    (manifest,) = (tmp_path / "out" / "manifests" / "sagemaker").rglob("*.manifest")
    seen = 0
    for line in manifest.read_text().splitlines():
        written = json.loads(line)
        want = expected[Path(written["source-ref"]).name]
        if not want["boxes"]:
            continue  # a negative example: labelbeam writes the image alone
        box = written["bounding-box"]
        class_map = written["bounding-box-metadata"]["class-map"]
        assert box["image_size"] == want["image_size"]
        got = sorted((class_map[str(a["class_id"])], *(round(a[k], 3) for k in ("left", "top", "width", "height"))) for a in box["annotations"])
        assert got == want["boxes"]
        assert written["bounding-box-metadata"]["type"] == "groundtruth/object-detection"
        seen += 1
    assert seen == 3
    expected = _azure_jsonl_lines(coco)
    lines = [json.loads(line) for path in (tmp_path / "out" / "manifests" / "azure_automl").rglob("*.jsonl") for line in path.read_text().splitlines()]
    assert len(lines) == len(coco.imgs)
    for written in lines:
        want = expected[Path(written["image_url"]).name]
        assert written["image_details"] == want["image_details"]
        for label in want["label"]:  # each of the helper's labels is among ours, equal
            assert any(_close(label, mine) or _close(_as_polygon(label), mine) for mine in written["label"]), (label, written["label"])
    assert sum(len(e["label"]) for e in expected.values()) == 4  # two boxes, two polygons (the two RLEs left out)


@pytest.mark.parametrize("runner", [["--runner=PrismRunner"], ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]], ids=["prism", "two_processes"])
def test_the_join_gives_the_same_records_on_runners_with_several_worker_processes(tmp_path, runner):
    """Spill files written by one worker process are read by another."""
    instances = write(tmp_path / "in" / "instances_all.json", faulty_document())
    results = write(tmp_path / "in" / "results_all.json", RESULTS)
    args = ["--input", str(instances), "--input", str(results), "--output", str(tmp_path / "out"), ONE_SPLIT, "--shard_size=1KB", *runner]
    assert run(args) == 0
    totals = json.loads((tmp_path / "out" / "run.json").read_text())["totals"]
    assert totals["reconciled"] and totals["records"] == 7 and totals["dead_letters"] == sum(FAULTS.values())
    assert not list((tmp_path / "out").rglob("*.spill"))  # the spill files went with the staging folder


def test_a_run_that_is_not_published_keeps_no_spill_file(tmp_path):
    """A COCO file cut short is one READ_FAILED and the run is incomplete: its staging folder is
    kept for a look (under .labelbeam/failed/), without the join's spill files."""
    good = write(tmp_path / "in" / "instances_a.json", clean_document())
    cut = tmp_path / "in" / "instances_b.json"
    cut.write_bytes(json.dumps(clean_document()).encode()[:-40])
    args = ["--input", str(good), "--input", str(cut), "--output", str(tmp_path / "out"), RUNNER, ONE_SPLIT]
    assert run(args) != 0
    (failed,) = (tmp_path / "out" / ".labelbeam" / "failed").iterdir()
    summary = json.loads((failed / "run.json").read_text())
    codes = {code for entry in summary["files"] for stage in (entry.get("dead_letter_codes") or {}).values() for code in stage}
    assert "READ_FAILED" in codes and summary["totals"]["records"] == 5
    assert list(failed.rglob("*")) and not list((tmp_path / "out").rglob("*.spill"))

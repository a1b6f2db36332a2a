"""COCO as one document per split: parts assembled at finalize, read back by pycocotools and
datumaro, the same on every runner and every run."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from benchmarks.coco_write import CLASSES, write_detection_manifest
from pipelines.normalize_manifests import run
from transforms.formats.base import WriteContext
from transforms.formats.coco import (
    CocoDocument,
    CocoOptions,
    assemble,
    document_name,
    output_categories,
    records_in_file,
)

coco_api = pytest.importorskip("pycocotools.coco")


def _row(i: int, labels: list[str], uri: str | None = None, origin: str = "ground_truth") -> dict:
    objects = [{"label": name, "bbox": {"x_min": 0.1, "y_min": 0.2, "x_max": 0.5, "y_max": 0.6}, "score": 0.5 if origin == "prediction" else None} for name in labels]
    return {"record_id": f"r{i}", "origin": origin, "image": {"uri": uri or f"s3://b/{i}.jpg", "width": 100, "height": 50}, "objects": objects}


def _part(rows: list[dict], options: CocoOptions | None = None) -> tuple[bytes, dict]:
    options = options or CocoOptions()
    handle, summary = io.BytesIO(), {}
    document = CocoDocument(handle, options, summary=summary)
    document.write(rows, WriteContext(options=options))
    document.close()
    return handle.getvalue(), summary


def _assemble(parts: list[tuple[bytes, dict]], options: CocoOptions | None = None, results: bool = False) -> bytes:
    out = io.BytesIO()
    categories = output_categories([summary for _, summary in parts], options or CocoOptions())
    assemble(out, [(lambda data=data: io.BytesIO(data), summary) for data, summary in parts], categories, results)
    return out.getvalue()


def test_parts_number_categories_their_own_way_and_the_document_numbers_them_once(tmp_path):
    # two bundles met the classes in different orders; one image's records landed in both
    first = _part([_row(1, ["zebra", "ant"]), _row(2, ["ant"], uri="s3://b/shared.jpg")])
    second = _part([_row(3, ["mole"]), _row(4, ["zebra"], uri="s3://b/shared.jpg")])
    assert first[1]["classes"] == ["zebra", "ant"] and second[1]["classes"] == ["mole", "zebra"]
    path = tmp_path / "instances_train.json"
    path.write_bytes(_assemble([first, second]))
    coco = coco_api.COCO(str(path))
    assert [(c["id"], c["name"]) for c in coco.dataset["categories"]] == [(1, "ant"), (2, "mole"), (3, "zebra")]
    names = sorted(coco.cats[a["category_id"]]["name"] for a in coco.dataset["annotations"])
    assert names == ["ant", "ant", "mole", "zebra", "zebra"]
    assert len(coco.getImgIds()) == 3  # the shared image once
    assert coco.dataset["info"]["labelbeam"]["records"] == 4
    with open(path, "rb") as handle:
        assert records_in_file(handle, path.stat().st_size) == 4


def test_a_pinned_category_list_wins_and_refuses_other_names():
    options = CocoOptions(categories=["mole", "ant"])
    ctx = WriteContext(options=options)
    handle, summary = io.BytesIO(), {}
    document = CocoDocument(handle, options, summary=summary)
    document.write([_row(1, ["ant"]), _row(2, ["zebra"])], ctx)
    document.close()
    assert ctx.rejected or ctx.rejected_objects  # zebra is not in the pinned list
    document_bytes = _assemble([(handle.getvalue(), summary)], options)
    coco = orjson.loads(document_bytes)
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "mole"), (2, "ant")]
    assert {a["category_id"] for a in coco["annotations"]} == {2}


def test_predictions_are_a_results_file_pycocotools_loads_beside_the_instances(tmp_path):
    truth = _part([_row(i, ["cat", "dog"]) for i in range(5)])
    found = [_part([_row(i, ["dog"], origin="prediction") for i in range(3)]), _part([_row(3, [], origin="prediction"), _row(4, ["cat"], origin="prediction")])]
    instances, results = tmp_path / "instances_val.json", tmp_path / "results_val.json"
    categories = [truth[1], *(s for _, s in found)]
    assert output_categories(categories, CocoOptions()) == output_categories([truth[1]], CocoOptions())
    instances.write_bytes(_assemble([truth]))
    out = io.BytesIO()
    assemble(out, [(lambda d=d: io.BytesIO(d), s) for d, s in found], output_categories(categories, CocoOptions()), results=True)
    results.write_bytes(out.getvalue())
    assert len(json.loads(results.read_text())) == 4
    with open(results, "rb") as handle:
        assert records_in_file(handle, results.stat().st_size) == 5  # one line per record, the empty one too
    ground_truth = coco_api.COCO(str(instances))
    detections = ground_truth.loadRes(str(results))
    assert len(detections.getAnnIds()) == 4
    assert {detections.cats[a["category_id"]]["name"] for a in detections.dataset["annotations"]} == {"cat", "dog"}


def test_document_names():
    assert document_name("split=train/origin=ground_truth") == "annotations/instances_train.json"
    assert document_name("split=val/origin=prediction") == "annotations/results_val.json"
    assert document_name("origin=ground_truth") == "annotations/instances.json"
    assert document_name("task=object_detection/split=test/origin=ground_truth") == "task=object_detection/annotations/instances_test.json"
    assert document_name("split=..%2Fx/origin=ground_truth") == "annotations/instances_..%2Fx.json"  # stays inside


# -- the job ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detection_manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("coco-input") / "detection.manifest"
    write_detection_manifest(str(path), 600)
    return path


def _job(manifest: Path, out: Path, *extra: str) -> None:
    argv = ["--input", str(manifest), "--output", str(out), "--output_format", "coco", "--validate_masks=false", "--quiet", *extra]
    assert run(argv) == 0


def _documents(out: Path) -> dict[str, dict]:
    folder = out / "manifests" / "coco"
    return {p.relative_to(folder).as_posix(): orjson.loads(p.read_bytes()) for p in sorted(folder.rglob("*.json"))}


def _canonical(document: dict) -> dict:
    """A document with its lists in id order (parts may be assembled in any order)."""
    return {key: sorted(value, key=lambda item: item["id"]) if isinstance(value, list) else value for key, value in document.items()}


@pytest.fixture(scope="module")
def in_process(detection_manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coco-inproc") / "out"
    _job(detection_manifest, out, "--runner=FnApiRunner")
    return out


@pytest.mark.e2e
def test_one_instances_file_per_split_with_equal_categories(in_process):
    documents = _documents(in_process)
    assert sorted(documents) == ["annotations/instances_test.json", "annotations/instances_train.json", "annotations/instances_validation.json"]
    categories = [d["categories"] for d in documents.values()]
    assert all(c == categories[0] for c in categories)
    assert [c["name"] for c in categories[0]] == sorted(CLASSES) and [c["id"] for c in categories[0]] == [1, 2, 3, 4]
    for name in documents:
        coco = coco_api.COCO(str(in_process / "manifests" / "coco" / name))
        assert len(coco.getAnnIds()) == 4 * len(coco.getImgIds())
    summary = json.loads((in_process / "run.json").read_text())
    assert summary["outputs"]["manifests/coco"]["landed"] == 600 == sum(d["info"]["labelbeam"]["records"] for d in documents.values())
    assert summary["outputs"]["manifests/coco"]["files"] == 3
    assert not any(".labelbeam-tmp" in p.as_posix() for p in (in_process / "manifests").rglob("*"))


@pytest.mark.e2e
def test_ids_and_content_are_the_same_on_another_run_and_with_two_workers(detection_manifest, in_process, tmp_path):
    again, workers = tmp_path / "again", tmp_path / "workers"
    _job(detection_manifest, again, "--runner=FnApiRunner")
    _job(detection_manifest, workers, "--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    expected = {name: _canonical(d) for name, d in _documents(in_process).items()}
    assert {name: _canonical(d) for name, d in _documents(again).items()} == expected
    assert {name: _canonical(d) for name, d in _documents(workers).items()} == expected


def _datumaro_python() -> str | None:
    """An interpreter with datumaro: this one, else DATUMARO_PYTHON (datumaro pins libraries
    this project's environment may hold in other versions, so it may live in its own)."""
    try:
        import datumaro  # noqa: F401

        return sys.executable
    except ImportError:
        found = os.environ.get("DATUMARO_PYTHON") or os.path.expanduser("~/.cache/labelbeam/datumaro-venv/bin/python")  # scripts/install_datumaro.sh
        return found if os.path.exists(found) else None


@pytest.mark.e2e
def test_datumaro_imports_the_folder_as_coco_instances(in_process, tmp_path):
    python = _datumaro_python()
    if python is None:
        pytest.skip("datumaro is not installed (scripts/install_datumaro.sh, or DATUMARO_PYTHON)")
    folder = tmp_path / "coco"  # a copy, with the `images/` folder datumaro wants beside `annotations/`
    shutil.copytree(in_process / "manifests" / "coco", folder)
    (folder / "images").mkdir()  # (the images' own folder, linked there, where file_name is relative: docs/formats.md)
    code = (
        "import json, sys\n"
        "from datumaro.components.dataset import Dataset\n"
        "dataset = Dataset.import_from(sys.argv[1], 'coco_instances')\n"
        "labels = dataset.categories()[__import__('datumaro').AnnotationType.label]\n"
        "print(json.dumps({'subsets': {name: len(dataset.get_subset(name)) for name in dataset.subsets()},"
        " 'annotations': sum(len(item.annotations) for item in dataset), 'labels': [l.name for l in labels]}))\n"
    )
    done = subprocess.run([python, "-c", code, str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    documents = _documents(in_process)
    assert found["subsets"] == {name.removeprefix("annotations/instances_").removesuffix(".json"): len(d["images"]) for name, d in documents.items()}
    assert found["annotations"] == sum(len(d["annotations"]) for d in documents.values())
    assert found["labels"] == sorted(CLASSES)


@pytest.mark.e2e
def test_ground_truth_and_predictions_self_evaluate_to_ap_one(tmp_path):
    """A model that predicts the ground truth exactly (Label Studio tasks whose predictions
    repeat their annotations): COCOeval of the results file against the instances file of its
    split gives AP 1.0, so ids, categories and boxes line up between the two documents."""
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    rng = random.Random(5)
    tasks = []
    for i in range(30):
        regions = []
        for k in range(3):
            x, y = rng.uniform(0, 60), rng.uniform(0, 60)
            regions.append({"id": f"t{i}r{k}", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
                            "original_width": 640, "original_height": 480,
                            "value": {"x": x, "y": y, "width": rng.uniform(5, 30), "height": rng.uniform(5, 30),
                                      "rotation": 0, "rectanglelabels": [rng.choice(CLASSES)]}})  # fmt: skip
        scored = [{**region, "score": 0.9} for region in regions]
        tasks.append({"id": i, "data": {"image": f"s3://b/frame-{i}.jpg"}, "annotations": [{"id": i, "result": regions}],
                      "predictions": [{"id": i, "result": scored, "score": 0.9}]})  # fmt: skip
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    out = tmp_path / "out"
    _job(export, out, "--runner=FnApiRunner", "--split_ratios=train=1")
    folder = out / "manifests" / "coco" / "annotations"
    assert sorted(p.name for p in folder.iterdir()) == ["instances_train.json", "results_train.json"]
    truth = coco_api.COCO(str(folder / "instances_train.json"))
    assert len(truth.getAnnIds()) == 90
    evaluation = cocoeval.COCOeval(truth, truth.loadRes(str(folder / "results_train.json")), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_the_finalize_step_assembles_once_and_a_retry_counts_the_documents(tmp_path):
    """The write stage's finalize step, run alone on two bundles' parts: one document per split;
    run again (a retried finalize) after the parts are gone, it finds the documents and counts
    them again instead of failing or writing them twice."""
    import pyarrow as pa

    from transforms import storage
    from transforms.finalize import finalize
    from transforms.output_files import _ManifestFile
    from transforms.schema import SCHEMA
    from transforms.writing import TMP_DIR, OutputPlan

    root = str(tmp_path / "coco")
    written = []
    for bundle, rows in enumerate(([_row(1, ["b"]), _row(2, ["a"])], [_row(3, ["a", "c"])])):
        temp = tmp_path / "coco" / TMP_DIR / f"part-{bundle}"
        temp.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "wb") as handle:
            part = _ManifestFile(handle, "coco", CocoOptions())
            full = [{name: row.get(name) for name in SCHEMA.names} | {"split": "train"} for row in rows]
            for row in full:
                row["objects"] = [{**obj, "is_crowd": False} for obj in row["objects"]]
            part.write(pa.RecordBatch.from_pylist(full, schema=SCHEMA))
            part.close()
        written.append(("split=train/origin=ground_truth", str(temp), ".json", part.count, part.summary))
    plan = OutputPlan("manifests/coco", root, storage.Storage(), layout="document", document=("coco", CocoOptions()))
    ledgers = [finalize(plan, written)[0].drain() for _ in range(2)]
    for outputs in ledgers:  # the first run and the retry count the same document
        ledger = dict(outputs)["__outputs__"]["manifests/coco"]
        assert (ledger["landed"], ledger["files"], {name: entry["rows"] for name, entry in ledger["published"].items()}) == (3, 1, {"annotations/instances_train.json": 3})
    document = coco_api.COCO(str(tmp_path / "coco" / "annotations" / "instances_train.json"))
    assert [c["name"] for c in document.dataset["categories"]] == ["a", "b", "c"]
    assert document.dataset["info"]["labelbeam"]["records"] == 3 and len(document.getAnnIds()) == 4
    assert sorted(p.relative_to(tmp_path / "coco").as_posix() for p in (tmp_path / "coco").rglob("*") if p.is_file()) == ["annotations/instances_train.json"]


def test_keypoint_names_keep_the_order_the_records_hold_them_in():
    """COCO's person keypoints are indexed (flip pairs, skeletons): the names keep the records'
    order, merged from parts that each saw some of the points, the same in any part order."""
    from transforms.formats.coco.keypoints import point_order, precedence_pairs

    person = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder"]
    seen = [person[:3], [person[0], *person[3:5]], person[2:], person[1:4]]  # no record holds every point
    pairs = set().union(*(precedence_pairs(names) for names in seen))
    assert point_order(set(person), pairs) == person
    for shuffled in ([*reversed(seen)], seen[1:] + seen[:1]):
        assert point_order(set(person), set().union(*(precedence_pairs(n) for n in shuffled))) == person
    # records that disagree (a cycle) still give every name once, the same every time
    cycle = precedence_pairs(["a", "b", "c"]) | precedence_pairs(["c", "a"])
    assert point_order({"a", "b", "c"}, cycle) == ["a", "b", "c"]
    assert point_order({"z", "y"}, set()) == ["y", "z"]  # no order given: alphabetical


def test_a_document_lists_keypoints_in_the_records_order():
    rows = [{
        "record_id": "r1", "origin": "ground_truth", "image": {"uri": "s3://b/1.jpg", "width": 100, "height": 50},
        "objects": [{"label": "person", "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.5, "y_max": 0.9},
                     "keypoints": [{"label": "nose", "x": 0.2, "y": 0.2, "visible": True}, {"label": "left_eye", "x": 0.3, "y": 0.2, "visible": True}]}],
    }]  # fmt: skip
    from transforms.formats.coco import document_of

    document = orjson.loads(document_of(rows, WriteContext(options=CocoOptions())))
    (person,) = [c for c in document["categories"] if c["name"] == "person"]
    assert person["keypoints"] == ["nose", "left_eye"]
    assert document["annotations"][0]["keypoints"][:3] == [20.0, 10.0, 2]


@pytest.mark.parametrize("classes", [3, 12, 40])  # 12: "-1" is the start of "-12"; 40: the regex pass
@pytest.mark.parametrize("chunk_bytes", [1 << 20, 700])
def test_assembly_renumbers_every_category_and_writes_each_image_once(monkeypatch, classes, chunk_bytes):
    monkeypatch.setattr(sys.modules["transforms.formats.coco.assemble"], "CHUNK_BYTES", chunk_bytes)
    rng = random.Random(classes)
    names = [f"class-{i:02d}" for i in range(classes)]
    rows = []
    for i in range(400):  # a fifth without objects; images shared within and across parts
        labels = [] if i % 5 == 0 else [rng.choice(names) for _ in range(rng.randint(1, 4))]
        rows.append(_row(i, labels, uri=f"s3://b/{rng.randrange(250)}.jpg"))
    parts = [_part(rows[start : start + 70]) for start in range(0, len(rows), 70)]
    document = orjson.loads(_assemble(parts))
    ids = {c["name"]: c["id"] for c in document["categories"]}
    assert sorted(ids) == sorted({name for row in rows for name in (o["label"] for o in row["objects"])})
    expected = sorted((f"s3://b/{row['image']['uri'].rsplit('/', 1)[1]}", ids[o["label"]]) for row in rows for o in row["objects"])
    by_image = {image["id"]: image["file_name"] for image in document["images"]}
    assert sorted((by_image[a["image_id"]], a["category_id"]) for a in document["annotations"]) == expected
    assert len(by_image) == len(document["images"]) == len({row["image"]["uri"] for row in rows})
    assert document["info"]["labelbeam"]["records"] == len(rows)
    assert document["info"]["labelbeam"]["annotations"] == len(expected)

"""Every output of the demo samples, read back with the client people load it with."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest

from pipelines.normalize_manifests import run
from tests.conftest import need_shared_data
from transforms.formats.base import ParseContext, get_format
from transforms.label_jobs import select_label_jobs

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
OUTPUTS = ("sagemaker", "azure_automl", "label_studio", "coco", "jsonl")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    inputs = [str(p) for p in sorted(SAMPLES.glob("*/*")) if p.suffix in (".manifest", ".jsonl", ".json")]
    argv = ["--input", *inputs, "--output", str(out), "--runner=FnApiRunner"]
    argv += [f"--output_format={name}" for name in OUTPUTS]
    assert run(argv) == 0
    return out


def records(out: Path) -> list[dict]:
    return ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()


def landed(out: Path, output: str) -> int:
    return json.loads((out / "run.json").read_text())["outputs"][output]["landed"]


def test_sagemaker_output_rereads_with_labelbeam_and_class_ids_are_stable(demo):
    fmt = get_format("sagemaker")
    ctx = ParseContext(uri="x", base_uri="")  # refs stay as written
    ids_of = defaultdict(set)  # class name -> ids it was written with, over the whole output
    reread = []
    for path in sorted((demo / "manifests" / "sagemaker").glob("split=*/part-*.manifest")):
        for line in path.read_bytes().splitlines():
            obj = orjson.loads(line)
            for key, meta in obj.items():
                if not key.endswith("-metadata") or "class-map" not in meta:
                    continue
                value = obj[key.removesuffix("-metadata")]
                ids = value if isinstance(value, list) else [a["class_id"] for a in value["annotations"]]
                names = [meta["class-map"][str(i)] for i in ids]
                if meta["type"].endswith("multilabel"):
                    assert len(set(ids)) == len(ids), obj  # one id per label, not [0, 0, 0, 0]
                if "job-name" not in meta:  # written by labelbeam, not kept from Ground Truth
                    for class_id, name in zip(ids, names):
                        ids_of[name].add(class_id)
            reread.extend(fmt.parse(obj, ctx).rows)
    assert ids_of and all(len(ids) == 1 for ids in ids_of.values()), dict(ids_of)
    assert len(reread) == landed(demo, "manifests/sagemaker")
    # the labels read back are the records' labels, image by image
    by_image = defaultdict(list)
    for row in records(demo):
        by_image[row["image"]["uri"]].append(sorted(label["name"] for label in row["labels"] or []))
    for row in reread:
        assert sorted(label["name"] for label in row["labels"] or []) in by_image[row["image"]["uri"]]


@pytest.fixture(scope="module")
def converted_to_label_studio(tmp_path_factory) -> Path:
    """Tasks labelbeam writes from other formats (Ground Truth, Lookout for Vision, AutoML)."""
    out = tmp_path_factory.mktemp("to_ls") / "out"
    inputs = [str(p) for p in sorted((SAMPLES / "sagemaker").glob("*.manifest"))]
    inputs += [str(p) for p in sorted((SAMPLES / "azure_automl").glob("*.jsonl"))]
    argv = ["--input", *inputs, "--output", str(out), "--runner=FnApiRunner", "--output_format=label_studio", "--output_format=coco"]
    assert run(argv) == 0
    return out


def test_label_studio_output_converts_to_coco_with_label_studio_sdk(converted_to_label_studio, tmp_path):
    converter = pytest.importorskip("label_studio_sdk.converter")
    out = converted_to_label_studio
    root = out / "manifests" / "label_studio"
    config = (root / "labeling_config.xml").read_text()
    files = sorted(root.glob("split=*/part-*.json"))
    assert files
    tasks_total = 0
    for path in files:
        tasks = json.loads(path.read_text())
        tasks_total += len(tasks)
        assert all(isinstance(task.get("id"), int) for task in tasks)
        regions = [r for t in tasks for u in t.get("annotations", []) for r in u["result"]
                   if r["type"] in ("rectanglelabels", "polygonlabels")]
        for region in regions:  # one control per region type, all declared in the config
            assert region["from_name"] == {"rectanglelabels": "box", "polygonlabels": "polygon"}[region["type"]]
            assert f'name="{region["from_name"]}"' in config
        result = tmp_path / path.parent.name
        converter.Converter(config=config, project_dir=str(tmp_path), download_resources=False).convert_to_coco(
            str(path), str(result), is_dir=False
        )
        coco = json.loads((result / "result.json").read_text())
        # every region with a label and an image size comes back as a COCO annotation
        convertible = [r for r in regions if r["value"][r["type"]] and "original_width" in r]
        assert len(coco["annotations"]) == len(convertible), path
        names = {c["id"]: c["name"] for c in coco["categories"]}
        assert sorted(names[a["category_id"]] for a in coco["annotations"]) == sorted(
            r["value"][r["type"]][0] for r in convertible
        )
    assert tasks_total == landed(out, "manifests/label_studio")


def _sdk_coco(converter, config: str, tasks: list[dict], folder: Path) -> dict:
    folder.mkdir(parents=True)
    (folder / "tasks.json").write_text(json.dumps(tasks))
    converter.Converter(config=config, project_dir=str(folder), download_resources=False).convert_to_coco(
        str(folder / "tasks.json"), str(folder / "coco"), is_dir=False
    )
    return json.loads((folder / "coco" / "result.json").read_text())


def _annotation_keys(document: dict) -> list[tuple[str, str]]:
    """(image file name, category name) per annotation; the SDK prefixes file names with
    `<8 hex>__`, which is taken off."""
    names = {c["id"]: c["name"] for c in document["categories"]}
    files = {i["id"]: Path(i["file_name"]).name.rsplit("__", 1)[-1] for i in document["images"]}
    return sorted((files[a["image_id"]], names[a["category_id"]]) for a in document["annotations"])


def test_label_studio_sdk_converts_the_written_tasks_to_as_many_coco_annotations_as_labelbeams_coco(converted_to_label_studio, tmp_path):
    """label-studio-sdk's Converter on labelbeam's tasks + labeling_config.xml, split by split,
    against labelbeam's own instances_<split>.json of the same input. What differs, by design:
    - brushes (Lookout for Vision's masks as `brushlabels`): the SDK's COCO exporter skips them;
      labelbeam writes one RLE annotation per class;
    - a polygon of several rings (an AutoML object): one COCO annotation with several rings in
      labelbeam, one Label Studio polygon (one ring each) per ring, so one SDK annotation per ring.
    Regions of records without an image size are in neither (no `original_width` for the SDK;
    IMAGE_SIZE_REQUIRED in labelbeam's COCO)."""
    converter = pytest.importorskip("label_studio_sdk.converter")
    out = converted_to_label_studio
    config = (out / "manifests" / "label_studio" / "labeling_config.xml").read_text()
    compared = brushes = rings = 0
    for folder in sorted((out / "manifests" / "label_studio").glob("split=*")):
        split = folder.name.split("=", 1)[1]
        tasks = [t for p in sorted(folder.glob("part-*.json")) for t in json.loads(p.read_text())]
        sdk = _sdk_coco(converter, config, tasks, tmp_path / split)
        # a split can hold predictions only (where records land depends on their image paths'
        # hashes): then labelbeam writes no instances file for it and the SDK converts nothing
        instances = out / "manifests" / "coco" / "annotations" / f"instances_{split}.json"
        ours = json.loads(instances.read_text()) if instances.exists() else {"categories": [], "images": [], "annotations": []}
        expected = []
        names = {c["id"]: c["name"] for c in ours["categories"]}
        files = {i["id"]: Path(i["file_name"]).name for i in ours["images"]}
        for annotation in ours["annotations"]:
            segmentation = annotation.get("segmentation")
            if isinstance(segmentation, dict):  # a brush: skipped by the SDK
                brushes += 1
                continue
            copies = max(len(segmentation or []), 1)
            rings += copies - 1
            expected += [(files[annotation["image_id"]], names[annotation["category_id"]])] * copies
        assert len(sdk["annotations"]) == len(expected), split
        assert _annotation_keys(sdk) == sorted(expected), split
        compared += len(expected)
    assert compared >= 9 and brushes >= 4 and rings >= 1  # boxes, polygons, brushes and a two-ring object


def letters_in(folder: Path) -> list[dict]:
    return [json.loads(line) for p in folder.rglob("*.jsonl") for line in p.read_text().splitlines()]


def test_masks_are_written_as_brush_labels_with_the_records_pixels(converted_to_label_studio):
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    import numpy as np

    out = converted_to_label_studio
    masked = {r["record_id"]: r for r in records(out) if (r["mask"] or {}).get("uri")}
    assert masked  # Lookout for Vision's and Ground Truth's semantic masks
    written = [t for p in (out / "manifests" / "label_studio").glob("split=*/*.json") for t in json.loads(p.read_text())]
    by_image = {t["data"]["image"]: t for t in written}
    measured = 0
    for row in masked.values():
        task = by_image[row["image"]["uri"]]  # every masked image is written
        brushes = [r for u in task["annotations"] for r in u["result"] if r["type"] == "brushlabels"]
        expected = {c["class_name"]: c["pixels"] for c in row["mask"]["class_pixels"] or [] if c["pixels"]}
        found = {}
        for result in brushes:  # Label Studio's own decoder reads the RLE back to the same pixels
            rgba = np.asarray(brush.decode_rle(result["value"]["rle"])).reshape(result["original_height"], result["original_width"], 4)
            found[result["value"]["brushlabels"][0]] = int((rgba[:, :, 3] >= 128).sum())
        assert found == expected, row["mask"]["uri"]
        measured += bool(found)
    assert measured >= 4
    letters = letters_in(out / "refused" / "label_studio")
    unvalidated = [r for r in masked.values() if not r["mask"]["validated"]]
    refused = [d for d in letters if d["code"] == "MASK_NOT_WRITTEN"]
    assert len(refused) == len(unvalidated)  # a mask not opened by the file checks: refused alone, with its index
    assert all(d["object_index"] == len(masked[d["record_id"]]["objects"] or []) for d in refused)
    assert not [d for d in letters_in(out / "errors") if d["stage"] == "write"]  # errors/ holds true dead letters only


def test_no_output_has_an_empty_part_file(demo):
    parts = list((demo / "manifests").glob("*/**/part-*"))
    assert parts and all(p.stat().st_size > 0 for p in parts)
    for p in parts:
        text = p.read_text().strip()
        assert text not in ("", "[]"), p


def refused_ids(out: Path, output: str) -> dict[str, str]:
    """record_id -> code of the rows a writer refused whole (from refused/<format>/; objects
    refused from rows written without them are left out)."""
    found = {}
    for letter in letters_in(out / "refused" / output):
        assert letter["output"] == f"manifests/{output}" and letter["stage"] == "write"
        if letter.get("object_index") is None:
            found[re.search(r'"record_id":"([0-9a-f]+)"', letter["raw"]).group(1)] = letter["code"]
    return found


def refused_objects(out: Path, output: str) -> dict[tuple[str, int], str]:
    """(record_id, object index) -> code of the objects a writer refused from rows it wrote."""
    return {
        (letter["record_id"], letter["object_index"]): letter["code"]
        for letter in letters_in(out / "refused" / output)
        if letter.get("object_index") is not None
    }


def test_refused_rows_have_their_own_folder_per_output_counted_from_the_files(demo):
    summary = json.loads((demo / "run.json").read_text())
    assert not [d for d in letters_in(demo / "errors") if d["output"] is not None or d["stage"] == "write"]
    assert summary["outputs"]["errors"]["landed"] == summary["totals"]["dead_letters"] + summary["totals"]["records_refused"]
    for name in OUTPUTS:
        manifests, refused = summary["outputs"][f"manifests/{name}"], summary["outputs"][f"refused/{name}"]
        in_files = letters_in(demo / "refused" / name)
        rows_refused = [d for d in in_files if d.get("object_index") is None]
        objects = [d for d in in_files if d.get("object_index") is not None]  # refused from rows written without them
        assert refused["landed"] == len(in_files) == manifests["refused"] + manifests["refused_objects"] == refused["given"], name
        assert len(objects) == manifests["refused_objects"] and manifests["refused"] == len(rows_refused), name
        assert manifests["landed"] + manifests["refused"] == manifests["given"] == summary["totals"]["records_kept"], name
        if name != "jsonl":  # objects counted back from the files equal those the writer wrote
            counted = manifests["objects"]
            assert counted["landed"] == counted["written"] and counted["refused"] == len(objects), name
        assert {d["output"] for d in in_files} <= {f"manifests/{name}"}
    assert sum(summary["outputs"][f"refused/{name}"]["landed"] for name in OUTPUTS) > 0


def test_coco_output_loads_in_pycocotools_with_the_records_counts_and_values(demo):
    refused = check_coco(demo)
    assert "IMAGE_SIZE_REQUIRED" in set(refused.values())


def test_real_files_as_coco_and_label_studio(tmp_path):
    ls_folder = need_shared_data("realdata", "label-studio-sdk-converter-tests")
    lfv = need_shared_data("realdata", "lookout-for-vision-getting-started")
    out = tmp_path / "out"
    argv = ["--input", str(ls_folder / "*.json"), str(lfv / "manifests" / "template.manifest"), "--relative_to", str(lfv),
            "--output", str(out), "--runner=FnApiRunner", "--output_format=coco", "--output_format=label_studio"]
    assert run(argv) == 0
    refused = check_coco(out)
    lookout = [r for r in records(out) if r["source"]["format"] == "sagemaker"]
    assert len(lookout) == 63 and not [r for r in lookout if r["record_id"] in refused]  # every image written
    assert landed(out, "manifests/coco") > 0


def check_coco(out: Path) -> dict[str, str]:
    """pycocotools loads every COCO file of `out`; its images, annotations and categories are
    the records' (those the writer did not refuse). Returns the refused record ids -> code."""
    coco_module = pytest.importorskip("pycocotools.coco")
    demo = out
    refused = refused_ids(demo, "coco")
    assert set(refused.values()) <= {"IMAGE_SIZE_REQUIRED", "OUTPUT_UNREPRESENTABLE"}
    objects_refused = refused_objects(demo, "coco")
    rows = records(demo)
    kept = [r for r in rows if r["record_id"] not in refused]
    folder = demo / "manifests" / "coco"
    files = sorted(folder.glob("annotations/instances_*.json"))
    assert files and kept
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted(
        {f"annotations/{'results' if origin == 'prediction' else 'instances'}_{split}.json" for split, origin in {(r["split"], r["origin"]) for r in kept}}
    )  # one document per split and origin (unlabeled images with the ground truth), nothing else
    categories = None
    seen_records = 0
    for path in files:
        split = path.stem.removeprefix("instances_")
        coco = coco_module.COCO(str(path))
        part = [r for r in kept if r["split"] == split and r["origin"] in ("ground_truth", None)]  # unlabeled images too
        seen_records += coco.dataset["info"]["labelbeam"]["records"]
        assert coco.dataset["info"]["labelbeam"]["records"] == len(part)
        sized = lambda r: (r["image"]["uri"], *image_size(r))  # noqa: E731
        assert len(coco.getImgIds()) == len({sized(r) for r in part})
        # every object not refused is in one annotation (a region's keypoints in the region's),
        # of the label jobs the writer takes (transforms/label_jobs.py); a mask: one per class
        held = sum(1 for r in part for i in select_label_jobs(r)[1] if (r["record_id"], i) not in objects_refused)
        assert coco.dataset["info"]["labelbeam"]["objects"] == held
        masks = sum(len(mask_classes(r)) for r in part)
        assert len(coco.getAnnIds()) == coco.dataset["info"]["labelbeam"]["annotations"] <= held + masks
        # the same class has the same id in every split: sorted names, from 1
        # (keypoint names are per file unless formats.coco.keypoints pins them)
        plain = [{k: v for k, v in c.items() if k not in ("keypoints", "skeleton")} for c in coco.dataset["categories"]]
        if categories is None:
            categories = plain
            names = [c["name"] for c in categories if c["name"] != "keypoints"]
            assert names == sorted(names) and [c["id"] for c in categories][: len(names)] == list(range(1, len(names) + 1))
        assert plain[: len(names)] == categories[: len(names)]
        by_uri = {(img["file_name"], img["width"], img["height"]): img for img in coco.loadImgs(coco.getImgIds())}
        for row in part:
            image = by_uri[sized(row)]
            w, h = image_size(row)
            assert (image["width"], image["height"]) == (w, h)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
            if row["labels"]:  # image-level labels on the image entry, which pycocotools ignores
                assert [label["name"] for label in image["image_labels"]] == [label["name"] for label in row["labels"]]
            for name, pixels in mask_classes(row).items():  # a semantic mask: one RLE annotation per class
                (ann,) = [a for a in anns if coco.cats[a["category_id"]]["name"] == name and isinstance(a["segmentation"], dict)]
                assert coco.annToMask(ann).sum() == ann["area"] == pixels
            for index, obj in enumerate(row["objects"] or []):
                if (row["record_id"], index) in objects_refused or index not in select_label_jobs(row)[1]:
                    continue
                if obj["keypoints"] and obj["bbox"] is None:  # in its region's annotation, or the record's keypoints one
                    name = obj["keypoints"][0]["label"] or obj["label"]
                    x, y = obj["keypoints"][0]["x"] * w, obj["keypoints"][0]["y"] * h
                    found = [a for a in anns if a.get("keypoints") and any(
                        coco.cats[a["category_id"]]["keypoints"][k] == name and abs(a["keypoints"][3 * k] - x) < 0.01
                        and abs(a["keypoints"][3 * k + 1] - y) < 0.01 for k in range(a["num_keypoints"] and len(coco.cats[a["category_id"]]["keypoints"])))]
                    assert found, (row["image"]["uri"], name)
                    continue
                name = obj["label"]
                box = obj["bbox"]
                want = [box["x_min"] * w, box["y_min"] * h, (box["x_max"] - box["x_min"]) * w, (box["y_max"] - box["y_min"]) * h]
                match = [a for a in anns if coco.cats[a["category_id"]]["name"] == name
                         and all(abs(x - y) < 0.01 for x, y in zip(a["bbox"], want))]
                assert match, (row["image"]["uri"], name, want)
                if obj["polygon"]:
                    assert match[0]["segmentation"][0][0] == pytest.approx(obj["polygon"][0][0] * w, abs=0.001)
                if obj["mask_rle"] is not None:  # brush RLE -> COCO RLE that pycocotools decodes
                    assert coco.annToMask(match[0]).sum() == match[0]["area"] > 0
        results = path.with_name(f"results_{split}.json")
        if results.exists():  # predictions: a results file pycocotools loads beside its split
            predicted = [r for r in kept if r["split"] == split and r["origin"] == "prediction"]
            found = json.loads(results.read_text())
            assert len(found) == sum(len(r["objects"] or []) for r in predicted)
            assert {a["category_id"] for a in found} <= {c["id"] for c in categories}
            assert all("score" in a for a in found)
            if found and {a["image_id"] for a in found} <= set(coco.getImgIds()):  # pycocotools cannot load an empty one
                assert len(coco.loadRes(str(results)).getAnnIds()) == len(found)
    for results in folder.glob("annotations/results_*.json"):
        seen_records += results.read_bytes().count(b"\n") - 2  # one line per record
    assert seen_records == landed(demo, "manifests/coco") == len(kept)
    return refused


def image_size(row: dict) -> tuple:
    """The size a COCO image entry has: the image's, else its validated mask's, else unknown."""
    image, mask = row["image"], row["mask"] or {}
    if image["width"] and image["height"]:
        return image["width"], image["height"]
    if mask.get("validated"):
        return mask["width"], mask["height"]
    return None, None


def mask_classes(row: dict) -> dict[str, int]:
    """Class -> pixels of a record's validated semantic mask (what COCO writes)."""
    mask = row["mask"] or {}
    if not mask.get("validated"):
        return {}
    return {c["class_name"]: c["pixels"] for c in mask["class_pixels"] or [] if c["pixels"]}


def test_jsonl_output_reads_in_duckdb_equal_to_the_parquet_records(demo):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    parquet = (demo / "records").as_posix() + "/**/*.parquet"
    lines = (demo / "manifests" / "jsonl").as_posix() + "/**/*.jsonl"
    total = con.execute(f"select count(*) from read_parquet('{parquet}', hive_partitioning=true)").fetchone()[0]
    assert total == json.loads((demo / "run.json").read_text())["outputs"]["records"]["landed"] == len(records(demo))
    assert con.execute(f"select count(*) from read_json_auto('{lines}')").fetchone()[0] == total
    # the same records, column by column (objects as JSON text: both sides written by DuckDB)
    columns = "record_id, image.uri, image.width, image.height, task::varchar, origin::varchar, split::varchar, " \
              "to_json(labels)::varchar, len(objects), annotation.created_at::timestamptz, extra"
    from_parquet = con.execute(f"select {columns} from read_parquet('{parquet}', hive_partitioning=true) order by 1").fetchall()
    from_json = con.execute(f"select {columns} from read_json_auto('{lines}') order by 1").fetchall()
    assert from_json == from_parquet
    boxes = "select record_id, unnest(objects).bbox.x_min::double from {} where objects is not null order by 1, 2"
    assert con.execute(boxes.format(f"read_json_auto('{lines}')")).fetchall() == con.execute(
        boxes.format(f"read_parquet('{parquet}', hive_partitioning=true)")).fetchall()


def test_pyarrow_dataset_and_duckdb_count_what_run_json_says(demo):
    duckdb = pytest.importorskip("duckdb")
    summary = json.loads((demo / "run.json").read_text())
    landed_records = summary["outputs"]["records"]["landed"]
    glob = (demo / "records").as_posix() + "/**/*.parquet"
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)").fetchall()[0][0] == landed_records
    assert ds.dataset(demo / "records", format="parquet", partitioning="hive").count_rows() == landed_records
    splits = dict(duckdb.sql(f"select split, count(*) from read_parquet('{glob}', hive_partitioning=true) group by 1").fetchall())
    assert sum(splits.values()) == landed_records and set(splits) <= {"train", "validation", "test"}


def test_a_pinned_class_list_skips_the_class_name_pass():
    fmt = get_format("sagemaker")
    assert fmt.needs_class_names(None) and not fmt.needs_class_names({"classes": ["can", "carton"]})
    # COCO numbers its categories when it assembles its documents: never a class-name pass
    assert not get_format("coco").needs_class_names(None) and not get_format("coco").needs_class_names({"categories": ["can"]})
    assert not get_format("label_studio").needs_class_names(None)


def test_coco_rle_equals_pycocotools_encoding():
    mask_api = pytest.importorskip("pycocotools.mask")
    import numpy as np

    from transforms.formats.coco import coco_rle, rle_box

    rng = np.random.default_rng(7)
    for shape in ((5, 7), (1, 1), (31, 17)):
        for density in (0.0, 0.3, 1.0):
            mask = rng.random(shape) < density
            ours = coco_rle(mask)
            compressed = {"size": ours["size"], "counts": ours["counts"].encode()}
            assert (mask_api.decode(compressed) == mask).all() and mask_api.area(compressed) == mask.sum()
            assert compressed["counts"] == mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
            if mask.any():
                ys, xs = np.nonzero(mask)
                assert rle_box(ours) == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]

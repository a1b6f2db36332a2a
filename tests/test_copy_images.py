"""--copy_images: real PNG files copied beside the labels, from and to local disk and S3 (moto's
server on loopback), read back by pycocotools and panlabel, counted in run.json, refused with a
stable code when they cannot be copied, and published exactly on a rerun."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.normalize_manifests import run
from transforms import errors, image_copies, storage
from transforms.formats import yolo
from transforms.output_files import BundleFiles
from transforms.partitions import NULL_FOLDER
from transforms.uri_map import References

WIDTH, HEIGHT = 160, 120


# -- names, references, the copies of one bundle (no Beam) ------------------------------------


def test_copy_names_are_stable_unique_per_source_and_keep_the_stem():
    first = image_copies.copy_name("s3://b/day1/cam.jpg", "train")
    second = image_copies.copy_name("s3://b/day2/cam.jpg", "train")
    assert first == image_copies.copy_name("s3://b/day1/cam.jpg", "train")  # the same on every run
    assert first != second and first.startswith("images/train/cam__") and first.endswith(".jpg")
    assert yolo.image_stem(first) == first.rsplit("/", 1)[1][: -len(".jpg")]  # a label file pairs with it
    assert image_copies.copy_name("/data/x.png", None).startswith(f"images/{NULL_FOLDER}/x__")  # the split's folder name, as partitions spell it
    assert image_copies.copy_name("https://h/a/photo?sig=1/2", "val").startswith("images/val/photo__")
    assert image_copies.copy_name("s3://b/day1/cam.jpg", "train", by_split=False) == "images/" + first.rsplit("/", 1)[1]  # one document for every split
    assert not image_copies.copy_name("/d/odd.j p g", "t").endswith(" p g")  # no extension a file system dislikes


def test_references_to_copies_are_written_as_each_format_reads_them():
    folder = "s3://out/manifests/x/images"
    plain = References(["s3://in=gs://in"], None)
    assert plain.for_copies(folder, "split").rewrite(f"{folder}/train/a__1.png") == "a__1.png"  # COCO's file_name
    assert plain.for_copies(folder, "output").rewrite(f"{folder}/train/a__1.png") == "./images/train/a__1.png"  # YOLO's lists
    assert plain.for_copies(folder, "split").rewrite(f"{folder}/a__1.png") == "a__1.png"  # images/ not per split
    assert plain.for_copies(folder, None).rewrite(f"{folder}/train/a__1.png") == f"{folder}/train/a__1.png"
    assert plain.for_copies(folder, "split").rewrite("s3://in/masks/m.png") == "gs://in/masks/m.png"  # other references as before
    with pytest.raises(ValueError):
        plain.for_copies(folder, "elsewhere")


def _png(path: Path, size: tuple[int, int] = (WIDTH, HEIGHT), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)  # noise: the PNG stays large
    Image.fromarray(pixels, "RGB").save(path)
    return path


def _row(uri: str, manifest: str, split: str = "train") -> dict:
    return {"record_id": uri, "source": {"uri": manifest}, "image": {"uri": uri, "width": WIDTH, "height": HEIGHT}, "split": split}


def test_copies_are_streamed_and_what_cannot_be_copied_is_refused_with_its_code(tmp_path, monkeypatch):
    monkeypatch.setattr(image_copies, "CHUNK_BYTES", 4096)  # a large image crosses many chunks
    data = tmp_path / "data"
    big = _png(data / "a" / "cam.png", (300, 200))
    _png(data / "b" / "cam.png", seed=3)
    outside = _png(tmp_path / "elsewhere" / "x.png")
    manifest = str(data / "manifest.json")
    out = tmp_path / "out"
    files = BundleFiles(str(out), str(out / ".tmp"), storage.Storage(), {}, published_root=str(out))
    copies = image_copies.ImageCopies(storage.Storage(), str(out), allowed_roots=(), concurrency=4)
    rows = [_row(str(big), manifest), _row("b/cam.png", manifest), _row(str(big), manifest), _row("a/gone.png", manifest), _row(str(outside), manifest), _row("s3://x:y@b/k.png", manifest), _row("../elsewhere/x.png", manifest)]
    refused = copies.copy(rows, files)
    assert [(row["record_id"], code) for row, code, _ in refused] == [
        (str(outside), errors.IMAGE_COPY_REFUSED), ("s3://x:y@b/k.png", errors.IMAGE_COPY_REFUSED), ("../elsewhere/x.png", errors.IMAGE_COPY_REFUSED),
        ("a/gone.png", errors.IMAGE_COPY_FAILED),
    ]
    assert "not_found" in refused[3][2] and "x:y" not in refused[1][2]  # why, without the credentials
    copied = files.summary[image_copies.COPIED]
    expected = {image_copies.copy_name(str(source), "train"): source for source in (big, data / "b" / "cam.png")}
    assert sorted(copied) == sorted(expected) and len(expected) == 2  # two cam.png, two names
    for name, size in copied.items():  # the bytes of the source, whole
        target = Path(files.target(name)[1])
        assert size == target.stat().st_size == expected[name].stat().st_size and target.read_bytes() == expected[name].read_bytes()
    assert big.stat().st_size > 20 * image_copies.CHUNK_BYTES
    assert rows[0]["image"]["uri"] == rows[2]["image"]["uri"] == f"{out}/{image_copies.copy_name(str(big), 'train')}"  # one copy of one image
    assert rows[3]["image"]["uri"] == "a/gone.png"  # a refused row keeps its reference as read
    # the format refuses one of the two rows of the big image: its copy stays for the other
    copies.withdraw([rows[0]], files)
    assert image_copies.copy_name(str(big), "train") in copied and rows[0]["image"]["uri"] == str(big)
    copies.withdraw([rows[1]], files)  # the only row of b/cam.png: its copy is taken back
    assert sorted(copied) == [image_copies.copy_name(str(big), "train")]
    assert sorted(p.name for p in (out / ".tmp").rglob("*.png")) == [Path(image_copies.copy_name(str(big), "train")).name]
    published = {name: {"bytes": size} for name, size in copied.items()}
    assert image_copies.landed([files.summary], published) == {"images": {"copied": 1, "landed": 1, "bytes": big.stat().st_size}}
    assert image_copies.landed([files.summary], {})["images"]["landed"] == 0
    assert image_copies.landed([{}], {}) == {}


# -- the job ----------------------------------------------------------------------------------


def _export(folder: Path, names: list[str], missing: tuple[str, ...] = (), outside: Path | None = None) -> Path:
    """A Label Studio export on real PNGs: one box per image (`missing` ones never saved), one
    task with an image-level choice only, and one image outside the manifest's folder."""
    tasks = []
    for i, name in enumerate(names):
        if name not in missing:
            _png(folder / name, seed=i)
        result = [{"id": f"r{i}", "type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": WIDTH, "original_height": HEIGHT,
                   "value": {"x": 10 + i, "y": 20, "width": 30, "height": 25, "rotation": 0, "rectanglelabels": ["car" if i % 2 else "truck"]}}]
        tasks.append({"id": i + 1, "data": {"image": name}, "annotations": [{"id": 100 + i, "result": result}]})
    _png(folder / "day" / "sky.png", seed=99)
    tasks.append({"id": 90, "data": {"image": "day/sky.png"}, "annotations": [{"id": 190, "result": [
        {"id": "c", "type": "choices", "from_name": "weather", "to_name": "image", "original_width": WIDTH, "original_height": HEIGHT, "value": {"choices": ["sunny"]}}]}]})
    if outside is not None:
        _png(outside, seed=50)
        tasks.append({"id": 91, "data": {"image": str(outside)}, "annotations": [{"id": 191, "result": [dict(tasks[0]["annotations"][0]["result"][0], id="o")]}]})
    path = folder / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def _letters(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("part-*.jsonl")) for line in path.read_text().splitlines()]


def _files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def _check_coco(coco_root: Path, sources: dict[str, bytes]) -> int:
    """pycocotools loads every document; each file_name is a file under images/<its split>/
    holding the bytes of one source image. -> images in the documents."""
    coco_api = pytest.importorskip("pycocotools.coco")
    seen = 0
    for document in sorted((coco_root / "annotations").glob("instances_*.json")):
        split = document.stem[len("instances_"):]
        coco = coco_api.COCO(str(document))
        for image in coco.loadImgs(coco.getImgIds()):
            copy = coco_root / "images" / split / image["file_name"]
            assert "/" not in image["file_name"] and copy.is_file(), image
            assert copy.read_bytes() in sources.values()
            with Image.open(copy) as opened:
                assert opened.size == (image["width"], image["height"])
            seen += 1
    return seen


@pytest.mark.e2e
def test_coco_and_yolo_copies_are_read_back_counted_refused_and_republished_exactly(tmp_path):
    data = tmp_path / "data"
    names = ["a/scene.png", "b/scene.png", "a/road.png", "a/yard.png", "a/gone.png"]
    manifest = _export(data, names, missing=("a/gone.png",), outside=tmp_path / "elsewhere" / "far.png")
    sources = {name: (data / name).read_bytes() for name in names if name != "a/gone.png"} | {"day/sky.png": (data / "day" / "sky.png").read_bytes()}
    out = tmp_path / "out"
    flags = ["--output_format", "coco", "--output_format", "yolo", "--copy_images", "--split_ratios", "train=0.5,validation=0.5", "--quiet"]
    assert run(["--input", str(manifest), "--output", str(out), *flags]) == 0
    report = json.loads((out / "run.json").read_text())
    every_file = json.loads((out / ".labelbeam" / "published.json").read_text())["outputs"]

    coco_root, yolo_root = out / "manifests" / "coco", out / "manifests" / "yolo"
    # COCO: every image written whose source could be read (the two scene.png told apart), the
    # image-level task included; the missing and the outside image refused with their codes
    assert _check_coco(coco_root, sources) == 5
    for fmt in ("coco", "yolo"):
        codes = sorted((letter["code"], Path(json.loads(letter["raw"])["image"]["uri"]).name) for letter in _letters(out / "refused" / fmt))
        expected = [(errors.IMAGE_COPY_FAILED, "gone.png"), (errors.IMAGE_COPY_REFUSED, "far.png")]
        assert codes == sorted(expected + ([(errors.YOLO_IMAGE_LABELS_ONLY, "sky.png")] if fmt == "yolo" else []))
        entry = report["outputs"][f"manifests/{fmt}"]
        present = {name: content for name, content in _files_under(out / "manifests" / fmt / "images").items()}
        # run.json: the copies are counted like every output, equal to the files present;
        # published.json: each published with its size and sha256
        assert entry["images"]["copied"] == entry["images"]["landed"] == len(present) == (5 if fmt == "coco" else 4)
        assert entry["images"]["bytes"] == sum(map(len, present.values())) and entry["problems"] == []
        for name, content in present.items():
            record = every_file[f"manifests/{fmt}"][f"images/{name}"]
            assert record["bytes"] == len(content) and record["sha256"] == hashlib.sha256(content).hexdigest()
    # YOLO: no image without its label file (the refused image-level task's copy was taken back);
    # every label file's stem is its image's, in the same split; data.yaml names the image folders
    images = {Path(name).with_suffix("").as_posix() for name in _files_under(yolo_root / "images")}
    labels = {Path(name).with_suffix("").as_posix() for name in _files_under(yolo_root / "labels")}
    assert images == labels and len(images) == 4
    data_yaml = yaml_load(yolo_root / "data.yaml")
    for split in {name.split("/")[0] for name in images}:
        assert data_yaml[yolo.YAML_KEYS.get(split, split)] == f"images/{split}"
        listed = (yolo_root / f"{split}.txt").read_text().split()
        assert all(line.startswith(f"./images/{split}/") and (yolo_root / line).is_file() for line in listed)
    _check_panlabel(yolo_root, tmp_path, expected_images=4)
    published = json.loads((out / ".labelbeam" / "published.json").read_text())["files"]
    assert {f for f in published if "/images/" in f} == {f"manifests/{fmt}/images/{n}" for fmt in ("coco", "yolo") for n in _files_under(out / "manifests" / fmt / "images")}

    # a rerun over fewer images, with --overwrite: exactly its own copies are published
    smaller = _export(tmp_path / "data2", ["a/road.png"])
    assert run(["--input", str(smaller), "--output", str(out), "--overwrite", *flags]) == 0
    for fmt, count in (("coco", 2), ("yolo", 1)):
        present = _files_under(out / "manifests" / fmt / "images")
        assert len(present) == count, sorted(present)
        assert json.loads((out / "run.json").read_text())["outputs"][f"manifests/{fmt}"]["images"]["landed"] == count
    published = json.loads((out / ".labelbeam" / "published.json").read_text())["files"]
    assert sorted(f for f in published if "/images/" in f) == sorted(f"manifests/{fmt}/images/{n}" for fmt in ("coco", "yolo") for n in _files_under(out / "manifests" / fmt / "images"))
    assert _check_coco(out / "manifests" / "coco", {"road": (tmp_path / "data2" / "a" / "road.png").read_bytes(), "sky": (tmp_path / "data2" / "day" / "sky.png").read_bytes()}) == 2


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def _check_panlabel(folder: Path, tmp_path: Path, expected_images: int) -> None:
    """panlabel reads the YOLO folder as it is, finding each label file's image (its size read
    from the copy) and the boxes."""
    panlabel = shutil.which("panlabel") or shutil.which("panlabel", path=str(Path(sys.executable).parent))
    if panlabel is None:
        pytest.skip("panlabel is not installed (pip install panlabel==0.7.0)")
    target = tmp_path / "panlabel.json"
    done = subprocess.run([panlabel, "convert", "--from", "yolo", "--to", "coco", "-i", str(folder), "-o", str(target), "--allow-lossy"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    coco = json.loads(target.read_text())
    assert len(coco["images"]) == expected_images and len(coco["annotations"]) == expected_images
    found = {}
    for image in coco["images"]:  # file_name: <the split's data.yaml key>/<name>, read from the copy
        copies = list((folder / "images").glob(f"*/{Path(image['file_name']).name}"))
        assert len(copies) == 1 and (image["width"], image["height"]) == (WIDTH, HEIGHT)
        found[image["id"]] = copies[0].relative_to(folder / "images")
    names = {c["id"]: c["name"] for c in coco["categories"]}
    data = yaml_load(folder / "data.yaml")
    for annotation in coco["annotations"]:
        line = (folder / "labels" / found[annotation["image_id"]].with_suffix(".txt")).read_text().split()
        assert names[annotation["category_id"]] == data["names"][int(line[0])]
        x, y, w, h = annotation["bbox"]
        cx, cy = (x + w / 2) / WIDTH, (y + h / 2) / HEIGHT
        assert abs(cx - float(line[1])) < 1e-6 and abs(cy - float(line[2])) < 1e-6


# -- object storage ---------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch, s3_endpoint):
    pytest.importorskip("s3fs")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)


@pytest.mark.e2e
def test_images_on_s3_are_copied_to_a_local_output(aws_env, tmp_path):
    fs = aws_env
    local = tmp_path / "data"
    manifest = _export(local, ["a/scene.png", "b/scene.png"])
    fs.mkdir("from-bucket")
    fs.put(str(local) + "/", "from-bucket/in/", recursive=True)
    out = tmp_path / "out"
    assert run(["--input", "s3://from-bucket/in/export.json", "--output", str(out), "--output_format", "coco", "--copy_images", "--split_ratios", "train=1", "--quiet"]) == 0
    sources = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*.png")}
    assert _check_coco(out / "manifests" / "coco", sources) == 3 and manifest.exists()
    entry = json.loads((out / "run.json").read_text())["outputs"]["manifests/coco"]
    assert entry["images"] == {"copied": 3, "landed": 3, "bytes": sum(map(len, sources.values()))}


@pytest.mark.e2e
def test_local_images_are_copied_to_an_output_on_s3(aws_env, tmp_path):
    fs = aws_env
    local = tmp_path / "data"
    manifest = _export(local, ["a/scene.png", "b/scene.png", "a/gone.png"], missing=("a/gone.png",))
    fs.mkdir("to-bucket")
    assert run(["--input", str(manifest), "--output", "s3://to-bucket/out", "--output_format", "yolo", "--output_format", "coco", "--copy_images", "--split_ratios", "train=1", "--quiet"]) == 0
    report = json.loads(fs.cat_file("to-bucket/out/run.json"))
    sources = sorted(p.read_bytes() for p in (local / "a", local / "b") for p in p.glob("*.png"))
    for fmt in ("yolo", "coco"):
        copies = sorted(fs.find(f"to-bucket/out/manifests/{fmt}/images"))
        assert sorted(fs.cat_file(path) for path in copies if "sky__" not in path) == sources
        entry = report["outputs"][f"manifests/{fmt}"]
        assert entry["images"]["landed"] == entry["images"]["copied"] == len(copies) == (2 if fmt == "yolo" else 3)
        assert [json.loads(line)["code"] for path in fs.glob(f"to-bucket/out/refused/{fmt}/part-*.jsonl") for line in fs.cat_file(path).splitlines()].count(errors.IMAGE_COPY_FAILED) == 1
    document = json.loads(fs.cat_file("to-bucket/out/manifests/coco/annotations/instances_train.json"))
    assert sorted(fs.cat_file(f"to-bucket/out/manifests/coco/images/train/{image['file_name']}") for image in document["images"] if "sky" not in image["file_name"]) == sources
    stems = {path.rsplit("/", 1)[1].rsplit(".", 1)[0] for path in fs.find("to-bucket/out/manifests/yolo/labels")}
    assert stems == {path.rsplit("/", 1)[1].rsplit(".", 1)[0] for path in fs.find("to-bucket/out/manifests/yolo/images")}


def test_an_image_read_short_of_its_listed_size_is_refused_and_leaves_no_partial_copy(tmp_path, monkeypatch):
    from fsspec.implementations.local import LocalFileSystem

    source = _png(tmp_path / "data" / "a.png", (200, 200))
    real_size = LocalFileSystem.size
    monkeypatch.setattr(LocalFileSystem, "size", lambda self, path: real_size(self, path) + (1000 if path.endswith("/a.png") else 0))
    out = tmp_path / "out"
    files = BundleFiles(str(out), str(out / ".tmp"), storage.Storage(), {}, published_root=str(out))
    copies = image_copies.ImageCopies(storage.Storage(), str(out), allowed_roots=None)
    good = _png(tmp_path / "data" / "b.png", seed=1)
    manifest = str(tmp_path / "data" / "m.json")
    refused = copies.copy([_row(str(source), manifest), _row("nosuchstore://bucket/c.png", manifest), _row(str(good), manifest)], files)
    assert [(row["record_id"], code) for row, code, _ in refused] == [(str(source), errors.IMAGE_COPY_FAILED), ("nosuchstore://bucket/c.png", errors.IMAGE_COPY_FAILED)]
    assert "bytes read" in refused[0][2]  # a store that no client opens, or a short read: the record's failure
    assert list(files.summary[image_copies.COPIED]) == [image_copies.copy_name(str(good), "train")]
    assert [p.name for p in out.rglob("*") if p.is_file()] == [Path(image_copies.copy_name(str(good), "train")).name]  # no partial copy

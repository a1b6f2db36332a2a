"""Writes samples/label_studio/: small Label Studio exports of our own.

export.json (a JSON array) covers every image region type, the older split form (a region
and a `labels` result sharing one id), per-region text, relations, choices, predictions, a
cancelled annotation, a task never labelled, results without an image size and an unknown
result type. tasks.jsonl is the JSONL variant; single_task.json a file holding one task.

Run from the repository root: python samples/make_label_studio_samples.py. The output is
committed; this script says how it was made and remakes it byte for byte. Brush RLEs are
encoded with label-studio-sdk's encoder, the one Label Studio's own tools use.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from label_studio_sdk.converter.brush import encode_rle
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent / "label_studio"
W, H = 64, 48


def _image(name: str, color: tuple[int, int, int]) -> str:
    path = ROOT / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (W, H), color)
    ImageDraw.Draw(image).ellipse((20, 10, 44, 38), fill=(250, 250, 250))
    image.save(path, quality=80)
    return f"images/{name}"


def _brush_rle() -> list[int]:
    """RGBA canvas of a soft-edged disc, as Label Studio's brush tool stores it."""
    yy, xx = np.mgrid[:H, :W]
    distance = np.hypot(yy - 24, xx - 32)
    alpha = np.clip((12 - distance) * 80, 0, 255).astype(np.uint8)  # a 1-2 px soft edge
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0] = np.where(alpha > 0, 255, 0)
    rgba[..., 3] = alpha
    return encode_rle(rgba.ravel())


def result(rid, kind, value, *, sized=True, from_name="label", **more):
    out = {"id": rid, "type": kind, "value": value, "from_name": from_name, "to_name": "image"}
    if sized:
        out.update(original_width=W, original_height=H, image_rotation=0)
    out.update(more)
    return out


def rect(x, y, w, h, rotation=0, labels=("car",)):
    return {
        "x": x,
        "y": y,
        "width": w,
        "height": h,
        "rotation": rotation,
        "rectanglelabels": list(labels),
    }


def annotation(aid, results, *, user=1, created="2024-03-05T10:11:12.345678Z", **more):
    out = {
        "id": aid,
        "completed_by": user,
        "result": results,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": created,
        "updated_at": created,
        "lead_time": 12.5,
    }
    out.update(more)
    return out


def task(tid, image, annotations=(), predictions=(), **data):
    return {
        "id": tid,
        "data": {"image": image, **data},
        "annotations": list(annotations),
        "predictions": list(predictions),
        "meta": {},
        "created_at": "2024-03-05T09:00:00.000000Z",
        "project": 7,
    }


def export_tasks() -> list[dict]:
    street = _image("street-1.jpg", (90, 90, 110))
    kitchen = _image("kitchen-1.jpg", (160, 120, 80))
    person = _image("person-1.jpg", (40, 120, 60))
    blob = _image("blob-1.jpg", (20, 20, 20))
    return [
        task(
            1,
            street,
            annotations=[
                annotation(
                    101,
                    [
                        result("r1", "rectanglelabels", rect(10, 20, 30, 25, rotation=30)),
                        result("r2", "rectanglelabels", rect(55, 50, 20, 30, labels=("truck",))),
                        result(
                            "r2", "textarea", {"text": ["parked, half hidden"]}, from_name="note"
                        ),
                        result(
                            "c1", "choices", {"choices": ["day"]}, sized=False, from_name="time"
                        ),
                        {"type": "relation", "from_id": "r1", "to_id": "r2", "direction": "right"},
                    ],
                    user={"id": 1, "email": "ann@example.com", "first_name": "", "last_name": ""},
                    ground_truth=True,
                ),
                annotation(102, [], was_cancelled=True, created="2024-03-05T10:20:00Z"),
                annotation(
                    103,
                    [  # the older split form: a plain region and its labels, one id
                        result(
                            "s1",
                            "rectangle",
                            {"x": 11, "y": 21, "width": 29, "height": 24, "rotation": 0},
                        ),
                        result("s1", "labels", {"labels": ["car"]}, from_name="kind"),
                    ],
                    user=2,
                    created="2024-03-06T08:00:00Z",
                ),
            ],
            predictions=[
                {
                    "id": 7,
                    "model_version": "detector-v3",
                    "score": 0.81,
                    "created_ago": "2 days",
                    "result": [
                        {
                            **result(
                                "p1",
                                "rectanglelabels",
                                rect(9, 19, 31, 26, rotation=28),
                                sized=False,
                            ),
                            "score": 0.9,
                            "source": "$image",
                        },
                    ],
                }
            ],
        ),
        task(
            2,
            kitchen,
            annotations=[
                annotation(
                    201,
                    [
                        result(
                            "g1",
                            "polygonlabels",
                            {
                                "points": [[10, 10], [40, 12], [35, 45], [12, 40]],
                                "polygonlabels": ["table"],
                            },
                        ),
                        result(
                            "e1",
                            "ellipselabels",
                            {
                                "x": 70,
                                "y": 60,
                                "radiusX": 10,
                                "radiusY": 5,
                                "rotation": 45,
                                "ellipselabels": ["plate"],
                            },
                        ),
                    ],
                )
            ],
        ),
        task(
            3,
            person,
            annotations=[
                annotation(
                    301,
                    [
                        result(
                            "k1",
                            "keypointlabels",
                            {"x": 50, "y": 20, "width": 0.5, "keypointlabels": ["nose"]},
                            parentID="b1",
                        ),
                        result(
                            "k2",
                            "keypointlabels",
                            {"x": 45, "y": 18, "width": 0.5, "keypointlabels": ["left_eye"]},
                            parentID="b1",
                        ),
                        result("b1", "rectanglelabels", rect(35, 10, 30, 80, labels=("person",))),
                        {"type": "relation", "from_id": "k1", "to_id": "b1", "direction": "right"},
                    ],
                )
            ],
        ),
        task(
            4,
            blob,
            annotations=[
                annotation(
                    401,
                    [
                        result(
                            "m1",
                            "brushlabels",
                            {"format": "rle", "rle": _brush_rle(), "brushlabels": ["blob"]},
                        ),
                        result("m2", "brush", {"format": "rle", "rle": _brush_rle()}),
                        result("m2", "labels", {"labels": ["blob"]}, from_name="kind"),
                    ],
                )
            ],
        ),
        task(
            5,
            "s3://example-bucket/images/shelf-5.jpg",
            annotations=[
                annotation(
                    501,
                    [result("c5", "choices", {"choices": ["indoor", "cluttered"]}, sized=False)],
                ),
            ],
            predictions=[
                {
                    "id": 8,
                    "model_version": "tagger-2",
                    "score": 0.66,
                    "result": [
                        {
                            **result("c5", "choices", {"choices": ["indoor"]}, sized=False),
                            "score": 0.66,
                        }
                    ],
                },
            ],
        ),
        task(6, "gs://example-bucket/images/unlabeled-6.png"),
        task(
            7,
            "https://example.com/images/edge-7.jpg",
            annotations=[
                annotation(
                    701,
                    [
                        result("o1", "rectanglelabels", rect(90, 5, 15, 10), sized=False),
                        result(
                            "v1",
                            "videorectangle",
                            {"sequence": [{"frame": 1, "x": 1, "y": 2}]},
                            sized=False,
                        ),
                    ],
                )
            ],
        ),
        task(
            8,
            "/data/upload/7/skipped-8.jpg",
            annotations=[annotation(801, [], was_cancelled=True)],
        ),
    ]


def jsonl_tasks() -> list[dict]:
    return [
        task(
            11,
            "/data/upload/7/a-11.jpg",
            annotations=[
                annotation(1101, [result("c", "choices", {"choices": ["cat"]}, sized=False)])
            ],
        ),
        task(
            12,
            "/data/upload/7/a-12.jpg",
            annotations=[
                annotation(
                    1201, [result("r", "rectanglelabels", rect(5, 5, 50, 50, labels=("dog",)))]
                )
            ],
            predictions=[
                {
                    "id": 9,
                    "model_version": "m1",
                    "score": 0.5,
                    "result": [
                        {
                            **result("r", "rectanglelabels", rect(6, 6, 48, 48, labels=("dog",))),
                            "score": 0.5,
                        }
                    ],
                }
            ],
        ),
        task(13, "/data/upload/7/a-13.jpg"),
    ]


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / "export.json").write_text(json.dumps(export_tasks(), indent=1) + "\n")
    (ROOT / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in jsonl_tasks()))
    single = task(
        21,
        "/data/upload/7/single-21.jpg",
        annotations=[annotation(2101, [result("r", "rectanglelabels", rect(1, 2, 3, 4))])],
    )
    (ROOT / "single_task.json").write_text(json.dumps(single, indent=1) + "\n")


if __name__ == "__main__":
    main()

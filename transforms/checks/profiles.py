"""Target validation profiles: the published limits of the service the data is prepared for.

Under `none` every finding is a warning on a kept record. A target profile adds its limits
(image formats, dimensions, file size, labels and boxes per image, one bucket) and makes the
findings that target rejects errors, so those records go to the dead letters. The table is
mirrored in docs/validation.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.errors import (
    BBOX_INVERTED,
    BBOX_OUT_OF_RANGE,
    BUCKET_MISMATCH,
    ERROR,
    FILE_UNREADABLE,
    IMAGE_ASPECT_RATIO,
    IMAGE_CORRUPT,
    IMAGE_FILE_TOO_LARGE,
    IMAGE_NOT_FOUND,
    IMAGE_TOO_LARGE,
    IMAGE_TOO_SMALL,
    IMAGE_UNSUPPORTED_FORMAT,
    MASK_BACKGROUND_INVALID,
    MASK_CORRUPT,
    MASK_LABEL_MISMATCH,
    MASK_NOT_FOUND,
    MASK_NOT_PNG,
    MASK_SIZE_MISMATCH,
    MASK_TOO_LARGE,
    MASK_UNDECLARED_COLOR,
    POLYGON_INVALID,
    REFERENCE_INVALID,
    REFERENCE_OUTSIDE_ROOTS,
    RLE_INVALID,
    TOO_MANY_LABELS,
    TOO_MANY_OBJECTS,
    WARNING,
)

# A file the target needs but cannot be read (or may not be opened) is an error wherever a
# missing one is.
_UNREADABLE = (REFERENCE_OUTSIDE_ROOTS, REFERENCE_INVALID, FILE_UNREADABLE)
_IMAGE_READ = (IMAGE_NOT_FOUND, IMAGE_CORRUPT, IMAGE_UNSUPPORTED_FORMAT, *_UNREADABLE)
_IMAGE_LIMITS = (IMAGE_TOO_SMALL, IMAGE_TOO_LARGE, IMAGE_FILE_TOO_LARGE)
_MASK_ALL = (
    MASK_NOT_FOUND,
    MASK_NOT_PNG,
    MASK_CORRUPT,
    MASK_TOO_LARGE,
    MASK_SIZE_MISMATCH,
    MASK_UNDECLARED_COLOR,
    MASK_BACKGROUND_INVALID,
    MASK_LABEL_MISMATCH,
    *_UNREADABLE,
)


@dataclasses.dataclass(frozen=True)
class Profile:
    """One target's limits; None means 'no limit'. `errors` lists the codes it rejects."""

    name: str
    errors: frozenset[str] = frozenset()
    image_formats: frozenset[str] | None = None
    min_image_side: int | None = None
    max_image_side: int | None = None
    max_image_bytes: int | None = None
    max_aspect_ratio: float | None = None
    max_labels_per_image: int | None = None
    max_objects_per_image: int | None = None
    mask_background_white: bool = False
    one_bucket: bool = False

    def severity(self, code: str) -> str:
        return ERROR if code in self.errors else WARNING

    @property
    def checks_records(self) -> bool:
        """Whether every record (not only those with a mask) has limits to check."""
        return any(
            value is not None
            for value in (
                self.image_formats,
                self.min_image_side,
                self.max_image_side,
                self.max_aspect_ratio,
                self.max_labels_per_image,
                self.max_objects_per_image,
            )
        ) or self.one_bucket


PROFILES: dict[str, Profile] = {
    "none": Profile("none"),
    # Amazon Lookout for Vision: PNG/JPEG, 64..4096 px a side, 8 MB, PNG masks of the image's
    # size whose colours match internal-color-map, entry 0 BACKGROUND #ffffff, one S3 bucket.
    "lookout_for_vision": Profile(
        "lookout_for_vision",
        errors=frozenset(_IMAGE_READ + _IMAGE_LIMITS + _MASK_ALL + (BUCKET_MISMATCH,)),
        image_formats=frozenset({"png", "jpeg"}),
        min_image_side=64,
        max_image_side=4096,
        max_image_bytes=8 * 1024 * 1024,
        mask_background_white=True,
        one_bucket=True,
    ),
    # Amazon Rekognition Custom Labels (training): PNG/JPEG, 64..4096 px a side, 15 MB,
    # aspect ratio up to 20:1, at most 50 labels and 50 bounding boxes per image. No masks.
    "rekognition": Profile(
        "rekognition",
        errors=frozenset(
            _IMAGE_READ + _IMAGE_LIMITS + (IMAGE_ASPECT_RATIO, TOO_MANY_LABELS, TOO_MANY_OBJECTS)
        ),
        image_formats=frozenset({"png", "jpeg"}),
        min_image_side=64,
        max_image_side=4096,
        max_image_bytes=15 * 1024 * 1024,
        max_aspect_ratio=20.0,
        max_labels_per_image=50,
        max_objects_per_image=50,
    ),
    # Azure ML AutoML for images: jpg/jpeg/png/jpe/jfif/bmp/tif/tiff (Pillow-readable). No
    # published size limits; masks are polygons in the JSONL, so PNG mask findings stay warnings.
    "azure_automl": Profile(
        "azure_automl",
        # Parse-time geometry findings (azure_automl format) are errors too: AutoML training
        # refuses boxes outside the image, inverted boxes and broken polygons.
        errors=frozenset(_IMAGE_READ + (BBOX_OUT_OF_RANGE, BBOX_INVERTED, POLYGON_INVALID)),
        image_formats=frozenset({"jpeg", "png", "bmp", "tiff"}),
    ),
    # Label Studio: the browser shows the image, so it must exist and be a web format; a brush
    # RLE that does not decode to the image's size cannot be displayed or exported.
    "label_studio": Profile(
        "label_studio",
        errors=frozenset(_IMAGE_READ + (RLE_INVALID,)),
        image_formats=frozenset({"jpeg", "png", "gif", "bmp", "webp"}),
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown validation profile {name!r}; known: {', '.join(sorted(PROFILES))}"
        ) from None


def record_findings(batch: pa.RecordBatch, profile: Profile) -> list[tuple[int, str, str]]:
    """(row index, code, message) for every profile limit a row of the batch breaks.

    Columnar: each rule is an Arrow expression over the whole batch; messages are written only
    for the rows that break a rule. ValidateRecords runs it on every batch, CheckFiles again on
    the rows whose image size it has just probed.
    """
    if batch.num_rows == 0 or not profile.checks_records:
        return []
    found: list[tuple[int, str, str]] = []
    image = batch.column("image")
    width = pc.struct_field(image, "width").cast(pa.int64())
    height = pc.struct_field(image, "height").cast(pa.int64())
    if profile.image_formats is not None:
        fmt = pc.utf8_lower(pc.struct_field(image, "format"))
        bad = pc.and_(pc.is_valid(fmt), pc.invert(pc.is_in(fmt, value_set=pa.array(sorted(_format_aliases(profile))))))
        bad = pc.and_(bad, pc.not_equal(fmt, ""))
        for i, (value,) in _hits(bad, pc.struct_field(image, "format")):
            found.append((i, IMAGE_UNSUPPORTED_FORMAT, f"{value} is not one of {sorted(profile.image_formats)}"))
    sized = pc.and_(pc.greater(width, 0), pc.greater(height, 0)).fill_null(False)
    side_min, side_max = pc.min_element_wise(width, height), pc.max_element_wise(width, height)

    def size_rule(condition, code, text):
        for i, (w, h) in _hits(pc.and_(sized, condition.fill_null(False)), width, height):
            found.append((i, code, f"{w}x{h}, {text}"))

    if profile.min_image_side is not None:
        size_rule(pc.less(side_min, profile.min_image_side), IMAGE_TOO_SMALL, f"minimum {profile.min_image_side} a side")
    if profile.max_image_side is not None:
        size_rule(pc.greater(side_max, profile.max_image_side), IMAGE_TOO_LARGE, f"maximum {profile.max_image_side} a side")
    if profile.max_aspect_ratio is not None:
        ratio = pc.divide(side_max.cast(pa.float64()), side_min.cast(pa.float64()))
        size_rule(pc.greater(ratio, profile.max_aspect_ratio), IMAGE_ASPECT_RATIO, f"aspect ratio above {profile.max_aspect_ratio:g}:1")
    if profile.max_labels_per_image is not None:
        distinct = _distinct_names_per_row(batch)
        for i, (n,) in _hits(pc.greater(distinct, profile.max_labels_per_image), distinct):
            found.append((i, TOO_MANY_LABELS, f"{n} labels, maximum {profile.max_labels_per_image}"))
    if profile.max_objects_per_image is not None:
        boxes = _per_row_sum(batch, "objects", pc.is_valid(pc.struct_field(pc.list_flatten(batch.column("objects")), "bbox")))
        for i, (n,) in _hits(pc.greater(boxes, profile.max_objects_per_image), boxes):
            found.append((i, TOO_MANY_OBJECTS, f"{n} boxes, maximum {profile.max_objects_per_image}"))
    if profile.one_bucket:
        image_bucket = _bucket(pc.struct_field(image, "uri"))
        mask_bucket = _bucket(pc.struct_field(batch.column("mask"), "uri"))
        differ = pc.not_equal(image_bucket, mask_bucket).fill_null(False)
        for i, (a, b) in _hits(differ, image_bucket, mask_bucket):
            found.append((i, BUCKET_MISMATCH, f"image in bucket {a!r}, mask in {b!r}"))
    return sorted(found, key=lambda finding: finding[0])  # stable: rule order within a row


def _hits(condition, *columns) -> list[tuple[int, tuple]]:
    """Row indices where `condition` holds, with the values of `columns` there."""
    rows = pc.indices_nonzero(condition.fill_null(False))
    if len(rows) == 0:
        return []
    values = [pc.take(column, rows).to_pylist() for column in columns]
    return [(i, tuple(v[k] for v in values)) for k, i in enumerate(rows.to_pylist())]


def _per_row_sum(batch: pa.RecordBatch, column: str, flags: pa.Array) -> pa.Array:
    """Per row: how many of its list elements (of `column`) have `flags` set."""
    parents = pc.list_parent_indices(batch.column(column))
    counts = np.bincount(parents.to_numpy(), weights=flags.fill_null(False).to_numpy(zero_copy_only=False).astype(np.float64), minlength=batch.num_rows)
    return pa.array(counts.astype(np.int64))


def _distinct_names_per_row(batch: pa.RecordBatch) -> pa.Array:
    """Per row: distinct class names among its image labels and object labels."""
    labels, objects = batch.column("labels"), batch.column("objects")
    table = pa.table({
        "row": pa.concat_arrays([pc.list_parent_indices(labels), pc.list_parent_indices(objects)]),
        "name": pa.concat_arrays([pc.struct_field(pc.list_flatten(labels), "name"), pc.struct_field(pc.list_flatten(objects), "label")]),
    }).filter(pc.is_valid(pc.field("name")))
    distinct = table.group_by(["row", "name"], use_threads=False).aggregate([]).group_by("row", use_threads=False).aggregate([("name", "count")])
    counts = np.zeros(batch.num_rows, np.int64)
    counts[distinct.column("row").to_numpy()] = distinct.column("name_count").to_numpy()
    return pa.array(counts)


def _bucket(uris: pa.Array) -> pa.Array:
    """'s3://bucket/key' -> 'bucket' (any URL scheme); null for local paths."""
    extracted = pc.extract_regex(uris, r"^[A-Za-z][A-Za-z0-9+.-]*://(?P<bucket>[^/]+)")
    return pc.struct_field(extracted, "bucket")


def file_size_findings(file_bytes: int | None, profile: Profile) -> list[tuple[str, str]]:
    if file_bytes is not None and profile.max_image_bytes is not None and file_bytes > profile.max_image_bytes:
        return [(IMAGE_FILE_TOO_LARGE, f"{file_bytes} bytes, maximum {profile.max_image_bytes}")]
    return []


def _format_aliases(profile: Profile) -> set[str]:
    """Accepted format names, with the spellings manifests use (jpg, tif, ...)."""
    aliases = {"jpeg": {"jpg", "jpe", "jfif"}, "tiff": {"tif"}}
    names = set(profile.image_formats or ())
    for name in list(names):
        names |= aliases.get(name, set())
    return names

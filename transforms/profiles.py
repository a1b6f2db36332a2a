"""Target validation profiles: the published limits of the service the data is prepared for.

Under `none` every finding is a warning on a kept record. A target profile adds its limits
(image formats, dimensions, file size, labels and boxes per image, one bucket) and makes the
findings that target rejects errors, so those records go to the dead letters. The table is
mirrored in docs/validation.md.
"""

from __future__ import annotations

import dataclasses

from transforms import image_probe as probe_codes
from transforms import mask_checks as mask_codes

IMAGE_TOO_SMALL = "IMAGE_TOO_SMALL"
IMAGE_FILE_TOO_LARGE = "IMAGE_FILE_TOO_LARGE"
IMAGE_ASPECT_RATIO = "IMAGE_ASPECT_RATIO"
TOO_MANY_LABELS = "TOO_MANY_LABELS"
TOO_MANY_OBJECTS = "TOO_MANY_OBJECTS"
BUCKET_MISMATCH = "BUCKET_MISMATCH"

ERROR = "error"
WARNING = "warning"

_IMAGE_READ = (probe_codes.IMAGE_NOT_FOUND, probe_codes.IMAGE_CORRUPT, probe_codes.IMAGE_UNSUPPORTED_FORMAT)
_IMAGE_LIMITS = (IMAGE_TOO_SMALL, probe_codes.IMAGE_TOO_LARGE, IMAGE_FILE_TOO_LARGE)
_MASK_ALL = (
    mask_codes.MASK_NOT_FOUND,
    mask_codes.MASK_NOT_PNG,
    mask_codes.MASK_CORRUPT,
    mask_codes.MASK_TOO_LARGE,
    mask_codes.MASK_SIZE_MISMATCH,
    mask_codes.MASK_UNDECLARED_COLOR,
    mask_codes.MASK_BACKGROUND_INVALID,
    mask_codes.MASK_LABEL_MISMATCH,
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
        errors=frozenset(_IMAGE_READ + ("BBOX_OUT_OF_RANGE", "BBOX_INVERTED", "POLYGON_INVALID")),
        image_formats=frozenset({"jpeg", "png", "bmp", "tiff"}),
    ),
    # Label Studio: the browser shows the image, so it must exist and be a web format; a brush
    # RLE that does not decode to the image's size cannot be displayed or exported.
    "label_studio": Profile(
        "label_studio",
        errors=frozenset(_IMAGE_READ + (mask_codes.RLE_INVALID,)),
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


def bucket_of(uri: str | None) -> str | None:
    """'s3://bucket/key' -> 'bucket' (any URL scheme); local paths have no bucket."""
    if not uri or "://" not in uri:
        return None
    return uri.split("://", 1)[1].split("/", 1)[0]


def record_findings(row: dict, profile: Profile) -> list[tuple[str, str]]:
    """(code, message) for every profile limit one canonical row breaks."""
    found: list[tuple[str, str]] = []
    image = row.get("image") or {}
    width, height, fmt = image.get("width"), image.get("height"), image.get("format")
    if profile.image_formats is not None and fmt and fmt.lower() not in _format_aliases(profile):
        found.append(
            (probe_codes.IMAGE_UNSUPPORTED_FORMAT, f"{fmt} is not one of {sorted(profile.image_formats)}")
        )
    if width and height:
        side_min, side_max = min(width, height), max(width, height)
        if profile.min_image_side is not None and side_min < profile.min_image_side:
            found.append((IMAGE_TOO_SMALL, f"{width}x{height}, minimum {profile.min_image_side} a side"))
        if profile.max_image_side is not None and side_max > profile.max_image_side:
            found.append(
                (probe_codes.IMAGE_TOO_LARGE, f"{width}x{height}, maximum {profile.max_image_side} a side")
            )
        if profile.max_aspect_ratio is not None and side_max / side_min > profile.max_aspect_ratio:
            found.append(
                (IMAGE_ASPECT_RATIO, f"{width}x{height}, aspect ratio above {profile.max_aspect_ratio:g}:1")
            )
    labels = row.get("labels") or []
    if profile.max_labels_per_image is not None:
        names = {label.get("name") for label in labels} | {o.get("label") for o in row.get("objects") or []}
        names.discard(None)
        if len(names) > profile.max_labels_per_image:
            found.append((TOO_MANY_LABELS, f"{len(names)} labels, maximum {profile.max_labels_per_image}"))
    objects = row.get("objects") or []
    if profile.max_objects_per_image is not None:
        boxes = sum(1 for o in objects if o.get("bbox"))
        if boxes > profile.max_objects_per_image:
            found.append((TOO_MANY_OBJECTS, f"{boxes} boxes, maximum {profile.max_objects_per_image}"))
    if profile.one_bucket:
        image_bucket, mask_bucket = bucket_of(image.get("uri")), bucket_of((row.get("mask") or {}).get("uri"))
        if image_bucket and mask_bucket and image_bucket != mask_bucket:
            found.append((BUCKET_MISMATCH, f"image in bucket {image_bucket!r}, mask in {mask_bucket!r}"))
    return found


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

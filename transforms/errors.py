"""The error catalogue (every code labelbeam emits, in one place), severities, the dead-letter row.

A code is a stable, upper-case string. Each is defined here once, with the stage that raises it,
its default severity and a one-line meaning; every other module imports the constant, and
docs/errors.md is generated from this table (`python -m transforms.errors > docs/errors.md`; a
test keeps the two equal and another finds code strings written anywhere else).

Severity `error` sends a record to the dead letters under errors/; `warning` keeps the record
with an entry in its `issues` column. A writer's refusal (a record kept in records/ that one
--output_format cannot represent) is the same row with `output` naming that output, and lands
under refused/<format>/ instead. A validation profile (transforms/checks/profiles.py) may
raise a warning to an error for the target it prepares data for.
"""

from __future__ import annotations

import base64
import dataclasses

import orjson

ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)

# Stages, in graph order. A dead letter names the stage that refused the record.
READ, NORMALIZE, VALIDATE, CHECK_FILES, DEDUPE, WRITE = "read", "normalize", "validate", "check_files", "dedupe", "write"
STAGES = (READ, NORMALIZE, VALIDATE, CHECK_FILES, DEDUPE, WRITE)
ANY_STAGE = "any"
# Dead letters of these stages are input lines (lines == ok + dead letters + blank); later
# stages refuse records that were already counted as ok lines.
LINE_STAGES = (READ, NORMALIZE)


@dataclasses.dataclass(frozen=True)
class Code:
    """One catalogued code: where it is raised, how severe by default, and what it means."""

    code: str
    stage: str
    severity: str
    meaning: str
    group: str


CATALOGUE: dict[str, Code] = {}
GROUPS = {
    "input": "Reading and decoding (every format)",
    "sagemaker": "sagemaker (Ground Truth, Lookout for Vision, Rekognition)",
    "azure_automl": "azure_automl (Azure ML AutoML for images JSONL)",
    "label_studio": "label_studio (Label Studio task exports)",
    "coco": "coco (COCO instances and results files, joined by image id)",
    "profile": "Target limits (ValidateRecords, by --validation_profile)",
    "mask": "Mask PNGs and brush masks (CheckFiles)",
    "image": "Images (CheckFiles, --probe_images)",
    "storage": "Referenced files: where they may be, whether storage answers (CheckFiles)",
    "duplicates": "Several records of one image (ResolveDuplicates, by --on_duplicate)",
    "output": "Writing outputs",
    "internal": "Anything unexpected",
}


def _define(code: str, stage: str, severity: str, group: str, meaning: str) -> str:
    if code in CATALOGUE:
        raise ValueError(f"error code {code} is defined twice")
    if severity not in SEVERITIES or stage not in (*STAGES, ANY_STAGE) or group not in GROUPS:
        raise ValueError(f"bad catalogue entry for {code}")
    CATALOGUE[code] = Code(code, stage, severity, meaning, group)
    return code


# -- reading and decoding ------------------------------------------------------------------
INVALID_UTF8 = _define("INVALID_UTF8", NORMALIZE, ERROR, "input", "the line is not UTF-8 (a UTF-8 byte-order mark is accepted)")
INVALID_JSON = _define("INVALID_JSON", NORMALIZE, ERROR, "input", "the line or JSON-array element is not valid JSON; a truncated or malformed JSON array ends in one INVALID_JSON at the byte where it broke")
NOT_AN_OBJECT = _define("NOT_AN_OBJECT", NORMALIZE, ERROR, "input", "valid JSON, but not an object (a list, a string, a number)")
LINE_TOO_LONG = _define("LINE_TOO_LONG", READ, ERROR, "input", "a line longer than read.max_line_bytes (32MB); skipped without being held in memory, the raw text keeps its start")
UNKNOWN_FORMAT = _define("UNKNOWN_FORMAT", NORMALIZE, ERROR, "input", "no registered format recognises the file's first records and no --format was given; every line of the file gets this code")
READ_FAILED = _define("READ_FAILED", READ, ERROR, "input", "the file could not be read to its end (vanished, access refused, corrupt gzip, storage unreachable); one dead letter where reading stopped, and the file is incomplete")
INVALID_FIELD_TYPE = _define("INVALID_FIELD_TYPE", NORMALIZE, ERROR, "input", "a field of the wrong JSON type for its format, or a value that does not fit the canonical schema (docs/formats.md names the fields per format)")
MISSING_SOURCE_REF = _define("MISSING_SOURCE_REF", NORMALIZE, ERROR, "input", "the record names no image: no (or an empty) source-ref, no data image in a Label Studio task")
INVALID_DATE = _define("INVALID_DATE", NORMALIZE, WARNING, "input", "a creation date that is neither ISO 8601 nor a JavaScript Date string; annotation.created_at stays null, the text stays in extra")

INTEGER_TOO_LARGE = _define("INTEGER_TOO_LARGE", NORMALIZE, WARNING, "input", "an integer outside [-2**63, 2**64) (a 30-digit id): JSON parsers read it as a float, so the record is kept with its last digits lost, and this warning")
COORDINATE_NOT_FINITE = _define("COORDINATE_NOT_FINITE", VALIDATE, ERROR, "input", "a box, area, polygon, keypoint or score that is not a finite number (1e308 overflowing to inf when normalized, a float32 score of 1e39): refused under every profile, so no writer meets it")

# -- sagemaker -----------------------------------------------------------------------------
MISSING_LABEL_METADATA = _define("MISSING_LABEL_METADATA", NORMALIZE, ERROR, "sagemaker", "a label attribute without its <attr>-metadata twin (an anomaly-mask-ref alone), or a -metadata whose attribute is missing")
MISSING_CLASS_NAME = _define("MISSING_CLASS_NAME", NORMALIZE, ERROR, "sagemaker", "a classification without class-name, or a class id missing from class-map")
MISSING_IMAGE_SIZE = _define("MISSING_IMAGE_SIZE", NORMALIZE, ERROR, "sagemaker", "an object-detection value without a positive image_size (its pixel boxes cannot be normalized)")
UNKNOWN_LABEL_TYPE = _define("UNKNOWN_LABEL_TYPE", NORMALIZE, WARNING, "sagemaker", "a label attribute of a type labelbeam does not read (groundtruth/label-verification); kept as written in extra and written back")
MULTIPLE_MASKS = _define("MULTIPLE_MASKS", NORMALIZE, WARNING, "sagemaker", "a second mask attribute on one line; the first fills mask, the others stay in extra")

# -- azure_automl --------------------------------------------------------------------------
MISSING_IMAGE_URL = _define("MISSING_IMAGE_URL", NORMALIZE, ERROR, "azure_automl", "a training line without image_url (or empty), an endpoint line without filename")
GEOMETRY_MISSING = _define("GEOMETRY_MISSING", NORMALIZE, ERROR, "azure_automl", "an object with neither all four of topX, topY, bottomX, bottomY nor a polygon")
NUMBER_AS_STRING = _define("NUMBER_AS_STRING", NORMALIZE, WARNING, "azure_automl", "a number or flag written as a string (\"0.26\", \"1\", \"true\"), read as the number / flag")
BBOX_OUT_OF_RANGE = _define("BBOX_OUT_OF_RANGE", NORMALIZE, WARNING, "azure_automl", "a box coordinate outside [0, 1] by more than the format option bbox_tolerance (1e-6)")
BBOX_INVERTED = _define("BBOX_INVERTED", NORMALIZE, WARNING, "azure_automl", "topX >= bottomX or topY >= bottomY (an empty or upside-down box)")
POLYGON_INVALID = _define("POLYGON_INVALID", NORMALIZE, WARNING, "azure_automl", "a ring with an odd count of numbers, fewer than 3 points, or a point outside [0, 1]; a polygon with no ring; a flat list of numbers")
LABEL_MISSING = _define("LABEL_MISSING", NORMALIZE, WARNING, "azure_automl", "a line without label (kept as task unlabeled), an object without a class name, or an empty class name")
FIELD_UNREADABLE = _define("FIELD_UNREADABLE", NORMALIZE, WARNING, "azure_automl", "an optional value that cannot be read (image_details width/height, format, isCrowd); the column stays null and the value is kept as written")

# -- label_studio --------------------------------------------------------------------------
REGION_OUT_OF_RANGE = _define("REGION_OUT_OF_RANGE", NORMALIZE, WARNING, "label_studio", "a region whose box (a rotated box's or ellipse's envelope) or keypoint leaves the image by more than the format option region_tolerance (0.1 percentage points)")
RLE_INVALID = _define("RLE_INVALID", NORMALIZE, WARNING, "label_studio", "a brush region whose RLE cannot be decoded to its image's size, or has no RLE; kept as written, area and bbox stay null (CheckFiles measures the ones whose size was unknown at parse time)")
UNKNOWN_RESULT_TYPE = _define("UNKNOWN_RESULT_TYPE", NORMALIZE, WARNING, "label_studio", "a result of a type the format does not read (videorectangle); kept as written in extra and written back")
IMAGE_SIZE_UNKNOWN = _define("IMAGE_SIZE_UNKNOWN", NORMALIZE, WARNING, "label_studio", "regions without original_width / original_height: image size and area stay null")
MULTIPLE_IMAGES = _define("MULTIPLE_IMAGES", NORMALIZE, WARNING, "label_studio", "a task whose results name more than one data key: the row takes one image and keeps every region")

# -- coco ----------------------------------------------------------------------------------
COCO_IMAGE_MISSING = _define("COCO_IMAGE_MISSING", NORMALIZE, ERROR, "coco", "an annotation (or a results file's prediction) whose image_id names no image of the job's COCO instances files, or one whose image entry is itself a dead letter; a results file read without its instances file gives one per prediction")
COCO_IMAGE_ID_REPEATED = _define("COCO_IMAGE_ID_REPEATED", NORMALIZE, ERROR, "coco", "an image id given twice (in one file, or in two COCO files of one job): the first (by file, then byte offset) is the record and holds the annotations, each other entry is this dead letter")
COCO_CATEGORY_UNKNOWN = _define("COCO_CATEGORY_UNKNOWN", NORMALIZE, ERROR, "coco", "an annotation whose category_id names no category of the job's COCO files; the image is still a record, with its other annotations")
COCO_CATEGORY_CONFLICT = _define("COCO_CATEGORY_CONFLICT", NORMALIZE, ERROR, "coco", "a category id given twice with different content (name, keypoints): the first (by file, then byte offset) names the category; an equal repeat (train and val files listing the same categories) is no error")

# -- target profiles (ValidateRecords) -----------------------------------------------------
IMAGE_TOO_SMALL = _define("IMAGE_TOO_SMALL", VALIDATE, WARNING, "profile", "a side below the target's minimum (64 px)")
IMAGE_TOO_LARGE = _define("IMAGE_TOO_LARGE", VALIDATE, WARNING, "profile", "a side above the target's maximum (4096 px), or beyond Pillow's decompression-bomb limit")
IMAGE_ASPECT_RATIO = _define("IMAGE_ASPECT_RATIO", VALIDATE, WARNING, "profile", "long side / short side above the target's limit (20)")
TOO_MANY_LABELS = _define("TOO_MANY_LABELS", VALIDATE, WARNING, "profile", "more distinct labels (image and object labels) on one image than the target allows (50)")
TOO_MANY_OBJECTS = _define("TOO_MANY_OBJECTS", VALIDATE, WARNING, "profile", "more boxes on one image than the target allows (50)")
BUCKET_MISMATCH = _define("BUCKET_MISMATCH", VALIDATE, WARNING, "profile", "image and mask in different buckets")
IMAGE_UNSUPPORTED_FORMAT = _define("IMAGE_UNSUPPORTED_FORMAT", VALIDATE, WARNING, "profile", "the image's format (declared, or from its magic bytes) is not one the target accepts, or no known format")

# -- masks (CheckFiles) ---------------------------------------------------------------------
MASK_NOT_FOUND = _define("MASK_NOT_FOUND", CHECK_FILES, WARNING, "mask", "mask.uri does not exist")
MASK_NOT_PNG = _define("MASK_NOT_PNG", CHECK_FILES, WARNING, "mask", "the file does not start with the PNG signature (a JPEG, a text file named .png, an empty file); the message never quotes its bytes")
MASK_CORRUPT = _define("MASK_CORRUPT", CHECK_FILES, WARNING, "mask", "truncated (inside the signature, the header or later), a bad CRC in any chunk (IDAT included), undecodable; or a decoder with no result within the per-file time limit (a remote fetch past it is FILE_UNREADABLE unreachable)")
MASK_TOO_LARGE = _define("MASK_TOO_LARGE", CHECK_FILES, WARNING, "mask", "the PNG header declares more than validate.mask.max_pixels pixels (refused before decoding), or the file is longer than 5 bytes per declared pixel")
MASK_SIZE_MISMATCH = _define("MASK_SIZE_MISMATCH", CHECK_FILES, WARNING, "mask", "mask width x height differs from the image's (from the manifest or the probe)")
MASK_UNDECLARED_COLOR = _define("MASK_UNDECLARED_COLOR", CHECK_FILES, WARNING, "mask", "labelled pixels (alpha >= threshold) of a colour the color map does not declare, background excluded")
MASK_BACKGROUND_INVALID = _define("MASK_BACKGROUND_INVALID", CHECK_FILES, WARNING, "mask", "color map entry 0 is not BACKGROUND #ffffff (checked by lookout_for_vision only)")
MASK_LABEL_MISMATCH = _define("MASK_LABEL_MISMATCH", CHECK_FILES, WARNING, "mask", "an anomaly record whose mask has no foreground pixel, or a normal record whose mask has some")
MASK_ANIMATED = _define("MASK_ANIMATED", CHECK_FILES, WARNING, "mask", "an animated PNG (APNG, an acTL chunk) of more than one frame: the first frame is checked and counted, which is what most readers of masks see; the other frames are not")
RLE_EMPTY = _define("RLE_EMPTY", CHECK_FILES, WARNING, "mask", "a brush RLE with no pixel at alpha >= the threshold")

# -- images (CheckFiles) --------------------------------------------------------------------
IMAGE_NOT_FOUND = _define("IMAGE_NOT_FOUND", CHECK_FILES, WARNING, "image", "--probe_images: the image does not exist or cannot be read")
IMAGE_CORRUPT = _define("IMAGE_CORRUPT", CHECK_FILES, WARNING, "image", "a known image format whose header Pillow cannot read (within 64 KiB, then 1 MiB); or no result in time")
IMAGE_FILE_TOO_LARGE = _define("IMAGE_FILE_TOO_LARGE", CHECK_FILES, WARNING, "image", "file bytes above the target's limit (8 MiB Lookout for Vision, 15 MiB Rekognition); needs --probe_images")

# -- referenced files (CheckFiles) ------------------------------------------------------------
REFERENCE_OUTSIDE_ROOTS = _define("REFERENCE_OUTSIDE_ROOTS", CHECK_FILES, WARNING, "storage", "a mask or image reference outside the allowed roots (the manifest's folder, its bucket on object storage, read.relative_to, validate.allowed_roots): an absolute path elsewhere, a `..` escape, a symlink leaving the root, file:// or http(s):// elsewhere; never opened")
FILE_UNREADABLE = _define("FILE_UNREADABLE", CHECK_FILES, WARNING, "storage", "a referenced mask or image could not be read for a storage reason, named first in the message: no_credentials, access_denied, unreachable (after the client's retries, or no answer within --storage_timeout / the per-file time limit), io_error")
REFERENCE_INVALID = _define("REFERENCE_INVALID", CHECK_FILES, WARNING, "storage", "a mask or image reference no store can open as written: a control character (NUL, CR, ...) in it, credentials (user:pw@) in an s3:// / gs:// / az:// URL (object stores take them from the environment or --storage_options), no bucket; never opened, the message redacted")

# -- several records of one image (ResolveDuplicates, only with --on_duplicate) ---------------
CONFLICTING_LABELS = _define("CONFLICTING_LABELS", DEDUPE, WARNING, "duplicates", "ground-truth records of one image (by normalized URI) carry different image-level label sets; a warning on every record kept for that image, and under --on_duplicate error every record of the image is a dead letter with this code instead")
DUPLICATE_SUPERSEDED = _define("DUPLICATE_SUPERSEDED", DEDUPE, WARNING, "duplicates", "--on_duplicate first: this record was kept for its image over others of the same origin, named in the message; those are counted as superseded in run.json, not written")
DUPLICATES_MERGED = _define("DUPLICATES_MERGED", DEDUPE, WARNING, "duplicates", "--on_duplicate merge: this record holds the labels and objects of others of its image and origin, named in the message; those are counted as merged in run.json, not written on their own")

# -- outputs --------------------------------------------------------------------------------
OUTPUT_UNREPRESENTABLE = _define("OUTPUT_UNREPRESENTABLE", WRITE, ERROR, "output", "an --output_format cannot represent this record (each format says when, docs/formats.md); the record is still in records/")
OBJECT_UNREPRESENTABLE = _define("OBJECT_UNREPRESENTABLE", WRITE, ERROR, "output", "one object of a record has no form in an --output_format (a keypoint in Ground Truth or Azure AutoML, a region without geometry, a class outside a pinned class list): the record is written with its other objects and this object alone lands in refused/<format>/ with record_id and object_index")
MASK_NOT_WRITTEN = _define("MASK_NOT_WRITTEN", WRITE, ERROR, "output", "a semantic mask PNG (mask.uri) a writer that writes its pixels (coco, label_studio, azure_automl) could not write: not opened by the file checks (missing, unreadable, outside the allowed roots, validation off), unreadable at write time, or changed since it was checked; the image is written with its other labels and the mask alone is refused (object_index = the record's object count)")
YOLO_TASK_MISMATCH = _define("YOLO_TASK_MISMATCH", WRITE, ERROR, "output", "yolo: an object the chosen yolo.task has no line for (a polygon in an obb file, a polygon of several rings or fewer than three points in a segment file): the label file is written with the record's other objects and this object alone lands in refused/yolo/")
YOLO_IMAGE_LABELS_ONLY = _define("YOLO_IMAGE_LABELS_ONLY", WRITE, ERROR, "output", "yolo: a record with image-level labels and no object: a YOLO label file holds objects, and an empty one would mark the image as background; the record is still in records/")
YOLO_CLASSIFY_NO_LABEL = _define("YOLO_CLASSIFY_NO_LABEL", WRITE, ERROR, "output", "yolo.task=classify: a record with no image-level label and no object: a classify image goes in the folder of its one class; the record is still in records/")
YOLO_CLASSIFY_OBJECTS_ONLY = _define("YOLO_CLASSIFY_OBJECTS_ONLY", WRITE, ERROR, "output", "yolo.task=classify: a record with objects (or a mask) and no image-level label: a classify folder holds images by their image-level class (detect, segment or obb write objects); the record is still in records/")
YOLO_CLASSIFY_SEVERAL_LABELS = _define("YOLO_CLASSIFY_SEVERAL_LABELS", WRITE, ERROR, "output", "yolo.task=classify: a record with several image-level labels: a classify image is in one class folder, and multi-label has no classify form; the record is still in records/")
YOLO_CLASSIFY_PREDICTION = _define("YOLO_CLASSIFY_PREDICTION", WRITE, ERROR, "output", "yolo.task=classify: a model prediction: the class folders hold ground truth, and a prediction's image in them would read as labelled; the record is still in records/")
IMAGE_COPY_REFUSED = _define("IMAGE_COPY_REFUSED", WRITE, ERROR, "output", "--copy_images: the record's image reference may not be opened (outside the allowed roots, a control character, credentials in the URL), so it is not copied and the record is not written to this output, whose labels would point at no image; the record is still in records/")
IMAGE_COPY_FAILED = _define("IMAGE_COPY_FAILED", WRITE, ERROR, "output", "--copy_images: the record's image could not be copied (not found, unreadable, or fewer bytes read than the store lists), so the record is not written to this output; the record is still in records/")
IMAGE_SIZE_REQUIRED = _define("IMAGE_SIZE_REQUIRED", WRITE, ERROR, "output", "coco: boxes and polygons are in pixels and the record has neither an image size nor a validated mask giving it (--probe_images fills it); the record is still in records/")

# -- anything unexpected --------------------------------------------------------------------
INTERNAL_ERROR = _define("INTERNAL_ERROR", ANY_STAGE, ERROR, "internal", "a plugin, check or writer raised an unexpected exception on this record; the job goes on, the message keeps the exception (a bug to report)")

# Tag of the dead-letter output of every stage.
DEAD_LETTERS = "dead_letters"

# Raw text kept in a dead letter, in characters: enough to see the problem, bounded.
RAW_TEXT_LIMIT = 4096
DEAD_LETTER_FIELDS = ("source_uri", "line", "offset", "format", "stage", "code", "severity", "message", "raw", "output", "record_id", "object_index")


def default_severity(code: str) -> str:
    return CATALOGUE[code].severity


class RecordError(Exception):
    """Raised by a format plugin when one record cannot become a canonical row."""

    def __init__(self, code: str, message: str):
        if code not in CATALOGUE:
            raise ValueError(f"uncatalogued error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a raw record came from: enough to find it again in the input."""

    uri: str
    line: int
    offset: int
    format: str | None = None


def dead_letter(
    where: Provenance,
    stage: str,
    code: str,
    message: str,
    raw: bytes | str | None,
    severity: str = ERROR,
    output: str | None = None,
    record_id: str | None = None,
    object_index: int | None = None,
) -> dict:
    """One dead-letter row (a plain dict, written as one JSON line under errors/). `output` names
    the output whose writer refused a kept record (e.g. manifests/coco); None for a true dead
    letter, a line or record the job itself refused."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw[: RAW_TEXT_LIMIT * 4]).decode("utf-8", errors="replace")
    if raw is not None and len(raw) > RAW_TEXT_LIMIT:
        raw = raw[:RAW_TEXT_LIMIT]
    from transforms.storage import redact_url  # here: storage imports fsspec, the catalogue need not

    return {  # URL userinfo redacted everywhere, the raw line and third-party messages included
        "source_uri": redact_url(where.uri),
        "line": where.line,
        "offset": where.offset,
        "format": where.format,
        "stage": stage,
        "code": code,
        "severity": severity,
        "message": redact_url(message) if message else message,
        "raw": redact_url(raw) if raw else raw,
        "output": output,
        "record_id": record_id,
        "object_index": object_index,
    }


def row_dead_letter(row: dict, stage: str, code: str, message: str, output: str | None = None) -> dict:
    """A dead letter for a canonical row refused after normalization (validate, write stages)."""
    source = row.get("source") or {}
    where = Provenance(source.get("uri") or "", source.get("line") or 0, source.get("offset") or 0, source.get("format"))
    return dead_letter(where, stage, code, message, row_json(row), output=output, record_id=row.get("record_id"))


def object_dead_letter(row: dict, index: int, stage: str, code: str, message: str, output: str | None = None) -> dict:
    """A refusal of one object of a kept row (the row was written without it): `raw` is the
    object, `record_id` and `object_index` say where it belongs."""
    source = row.get("source") or {}
    where = Provenance(source.get("uri") or "", source.get("line") or 0, source.get("offset") or 0, source.get("format"))
    objects = row.get("objects") or []
    # index len(objects): the record's semantic mask, refused like one more object (its PNG reference)
    obj = objects[index] if index < len(objects) else {"mask": row.get("mask")}
    return dead_letter(where, stage, code, message, row_json(obj), output=output, record_id=row.get("record_id"), object_index=index)


def row_json(row: dict) -> str:
    """A canonical row as JSON (binary values such as brush RLEs as base64)."""
    return orjson.dumps(row, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _json_default(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def catalogue_markdown(profile_errors: dict[str, frozenset[str]] | None = None) -> str:
    """docs/errors.md, from the catalogue (and, per code, the profiles that make it an error)."""
    if profile_errors is None:
        from transforms.checks.profiles import PROFILES

        profile_errors = {name: profile.errors for name, profile in PROFILES.items()}
    out = [
        "# Error codes",
        "",
        "Generated from `transforms/errors.py` (`python -m transforms.errors > docs/errors.md`); a test",
        "keeps this page and the catalogue equal. Every input line ends as a record, a dead letter, or",
        "a counted blank line. Severity `error` sends the record to `errors/`; `warning` keeps the",
        "record with an entry in its `issues` column. A validation profile (`--validation_profile`,",
        "docs/validation.md) makes the codes it names errors for its target; the column 'error under'",
        "lists them. The stage is the step that raises the code (docs/architecture.md).",
        "",
        f"A dead letter is one JSON line with the fields {', '.join(DEAD_LETTER_FIELDS)}.",
        "`output` is null for the dead letters in `errors/`: lines and records the job refused. A",
        "writer that cannot represent a kept record in its format (the codes of stage `write`)",
        "refuses it for that output only: the row, with `output` naming it (`manifests/coco`), goes to",
        "`refused/<format>/`, and the record stays in `records/` and in every other output. run.json",
        "counts them per output: `outputs[\"manifests/<format>\"].refused` rows refused, and",
        "`outputs[\"refused/<format>\"].landed` rows counted in those files; the two must agree.",
        "",
    ]
    for group, title in GROUPS.items():
        codes = [c for c in CATALOGUE.values() if c.group == group]
        if not codes:
            continue
        out += [f"## {title}", "", "| code | stage | default | error under | meaning |", "|---|---|---|---|---|"]
        for c in codes:
            under = ", ".join(sorted(name for name, codes_ in profile_errors.items() if c.code in codes_)) or "-"
            out.append(f"| {c.code} | {c.stage} | {c.severity} | {under} | {c.meaning} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(catalogue_markdown(), end="")

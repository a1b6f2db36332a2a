"""The job configuration, typed and nested: the `job` section of a config file, and the flags.

    job:
      input: [samples/*/*.manifest]        # required
      output: out/demo                     # required
      read:     {format, shard_size, batch_size, max_line_bytes, relative_to}
      storage:  {s3: {endpoint_url: ...}}  # fsspec options, flat or keyed by protocol
      validate: {profile, masks, probe_images, mask: {...}, io_concurrency}
      split:    {ratios, salt, by, group, keep_input}
      write:    {formats: [sagemaker, ...], partition_by, manifest_partition_by, label_attribute, uri_map, relative_output, copy_images}
      formats:  {sagemaker: {...}, azure_automl: {...}, label_studio: {...}}   # each format's own

Every field is declared once with `transforms.settings.setting`: its type, default, bounds, help
and flag. The `validate` section (ValidateConfig, MaskConfig) is declared in
transforms/file_checks.py, beside the checks that read it as it is. Values are deep-merged in one place (`merge`): defaults, then each --config file in
order, then the flags; then `build_job` checks every value with one error style. Each format
declares and checks its own options (ManifestFormat.Options). `python -m pipelines.config` prints
the JSON Schema of the YAML (configs/labelbeam.schema.json is that output).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from transforms import partitions, settings, storage
from transforms.dedupe import POLICIES
from transforms.file_checks import ValidateConfig  # declared beside the checks that read them
from transforms.formats.base import format_names, get_format, input_format_names
from transforms.settings import SettingError, setting
from transforms.split_rules import DEFAULT_RATIOS, SPLIT_BY, parse_group, parse_ratios
from transforms.uri_map import parse_uri_map

MIN_SHARD_SIZE = 1024
DEFAULT_SHARD_SIZE = 64 << 20
DEFAULT_MAX_LINE_BYTES = 32 << 20
DEFAULT_STORAGE_TIMEOUT = storage.DEFAULT_STORAGE_TIMEOUT
DEFAULT_BATCH_SIZE = 4096  # Arrow-side work per batch is amortized well from a few thousand lines


@dataclasses.dataclass(frozen=True)
class ReadConfig:
    format: str | None = setting(None, help="input format for every file; detected per file from its first records when absent", flag="format", choices=input_format_names)
    shard_size: int = setting(DEFAULT_SHARD_SIZE, help="largest shard of a JSON-lines file or JSON array (KB/MB/GB); a file is cut into at least 32 shards of at least 4 MB when it is large enough", flag="shard_size", size=True, minimum=MIN_SHARD_SIZE)
    batch_size: int = setting(DEFAULT_BATCH_SIZE, help="raw records per batch", flag="batch_size", minimum=1)
    max_line_bytes: int = setting(DEFAULT_MAX_LINE_BYTES, help="longer lines are LINE_TOO_LONG dead letters", flag="max_line_bytes", size=True, minimum=1)
    relative_to: str | None = setting(None, help="base URL for relative image / mask references (default: each manifest's own folder)", flag="relative_to")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    ratios: dict[str, float] = setting(dict(DEFAULT_RATIOS), help="split names and shares, e.g. train=0.8,validation=0.1,test=0.1", flag="split_ratios", parse=parse_ratios)
    salt: str = setting("", help="a different salt gives a different, still stable, split", flag="split_salt")
    by: str = setting("image", help="what the split hashes: each image, or each image's group (split.group), so near-duplicates that share a group share a split", flag="split_by", choices=SPLIT_BY)
    group: str | None = setting(None, help="with split_by group: 'folder' (the image's folder; the default) or 'attribute:NAME' (a field of the source records; records without it are split by image)", flag="split_group", parse=parse_group)
    keep_input: bool = setting(False, help="keep a split the input gives (a `split` field, else a train/val/validation/test word in the input file's name, else such a folder in the image URI) instead of hashing; records without one are hashed", flag="keep_input_split")

    def __post_init__(self):
        if self.group is not None and self.by != "group":
            raise SettingError(f"group {self.group!r} needs by: group (--split_by group)")

    def group_key(self) -> str:
        return self.group or "folder"


@dataclasses.dataclass(frozen=True)
class WriteConfig:
    formats: list[str] = setting([], help="write manifests in these formats", flag="output_format", choices=format_names)
    partition_by: list[str] | None = setting(None, help="partition folders of records/ and manifests/, in order, from split, task, origin, source_format, label_job, or 'none' ([] in YAML) for no folders (default: records split,task; manifests split, and task for azure_automl)", flag="partition_by", parse=partitions.parse_partition_by, choices=tuple(partitions.KEYS))
    label_attribute: list[str] = setting([], help="Ground Truth label attributes (jobs) written to manifests, comma-separated; in each kind of attribute a line holds none of, the default: the last object-detection attribute (the end of a chained / adjustment job), every classification attribute no later one adjusts (docs/formats.md, Chained jobs)", flag="label_attribute", parse=settings.url_list)
    manifest_partition_by: list[str] | None = setting(None, help="partition folders of manifests/ when they differ from partition_by; a format whose files cannot mix a column adds it (azure_automl: task, coco: origin)", flag="manifest_partition_by", parse=partitions.parse_partition_by, choices=tuple(partitions.KEYS))
    uri_map: list[str] = setting([], help="FROM=TO: image and mask references that start with FROM (whole path segments; the longest FROM wins) are written with TO instead, in every manifest format; may repeat (records/ keep the references as read)", flag="uri_map", parse=parse_uri_map)
    relative_output: str | None = setting(None, help="a folder (path or URL): image and mask references under it are written relative to it in every manifest format, after uri_map; others stay absolute", flag="relative_output")
    copy_images: bool = setting(False, help="copy each record's image beside the labels of every manifest format, under manifests/<format>/images/<split>/, and write references to the copies (coco: file_name relative to images/<split>/; yolo: images/<split>/ beside labels/<split>/); an image outside the allowed roots or unreadable refuses its record in that output (docs/formats.md, Copied images)", flag="copy_images")

    def records_partitions(self) -> tuple[str, ...]:
        return partitions.RECORDS_DEFAULT if self.partition_by is None else tuple(self.partition_by)

    def manifest_partitions(self) -> tuple[str, ...] | None:
        """None: each format's own default folders."""
        chosen = self.manifest_partition_by if self.manifest_partition_by is not None else self.partition_by
        return None if chosen is None else tuple(chosen)


@dataclasses.dataclass(frozen=True)
class JobConfig:
    input: list[str] = setting(help="files, glob patterns or URLs of manifests (.gz read too)", flag="input")
    output: str = setting(help="output folder URL (local path, s3://, gs://, az://, memory://)", flag="output")
    overwrite: bool = setting(False, help="replace the outputs of a previous run in --output", flag="overwrite")
    max_error_rate: float | None = setting(None, help="exit code 1 when dead letters / input lines exceed this", flag="max_error_rate", minimum=0, maximum=1)
    allow_incomplete: bool = setting(False, help="exit 0 even when a file could not be read to its end", flag="allow_incomplete")
    incremental: bool = setting(False, help="read only files new or changed since the last successful run; write a run partition under --output (docs/scheduling.md)", flag="incremental")
    run_partition: str | None = setting(None, help="with --incremental: the partition this run writes (default run_date=<today, UTC>)", flag="run_partition")
    find_duplicates: bool = setting(False, help="write stats/duplicates.parquet (images with several records; holds one small key per record until the job ends, so memory grows with the input)", flag="find_duplicates")
    on_duplicate: str | None = setting(None, help="several records of one image (by normalized URI): keep_all keeps them and marks conflicting image labels, first keeps the smallest by (source URI, line, attribute), merge unions their labels and objects, error makes conflicting images dead letters; unset, records are not compared and nothing is grouped (a policy groups whole records by image: memory grows with the input on local runners, docs/formats.md)", flag="on_duplicate", choices=POLICIES)
    quiet: bool = setting(False, help="print no progress while the job runs (local runners print a line every few seconds)", flag="quiet")
    read: ReadConfig = setting(ReadConfig, help="how manifests are read")
    storage: dict = setting({}, help="fsspec storage options, flat or keyed by protocol", flag="storage_options", parse=settings.parse_json_object)
    storage_timeout: float = setting(DEFAULT_STORAGE_TIMEOUT, help="seconds the job waits for a storage endpoint that is dead or hung, at launch and per operation mid-run (client connect / read timeouts and retries are fitted in it; --storage_options can still set them)", flag="storage_timeout", minimum=0.1)
    validate: ValidateConfig = setting(ValidateConfig, help="record and file checks")
    split: SplitConfig = setting(SplitConfig, help="how records are assigned to splits")
    write: WriteConfig = setting(WriteConfig, help="what is written besides records/")
    formats: dict[str, dict] = setting({}, help="each format's own options, by format name (docs/formats.md)")

    def __post_init__(self):
        if not self.input:
            raise SettingError("input is required (a file, glob pattern or URL of manifests)")
        if not self.output.strip():
            raise SettingError("output is required (a folder URL for the results)")

    def format_options(self) -> dict[str, Any]:
        """Typed options of every registered format (defaults where the config names none)."""
        return {name: get_format(name).options(self.formats.get(name)) for name in format_names()}

    def storage_config(self) -> storage.Storage:
        return storage.Storage(self.storage, self.storage_timeout)

    def redacted(self) -> dict[str, Any]:
        return storage.redact(settings.as_dict(self))


# Flags that write a format's option (convenience names kept from earlier versions).
FORMAT_FLAGS = {
    "sagemaker_classes": ("sagemaker", "classes"),
    "azure_datastore_map": ("azure_automl", "datastore_map"),
    "label_studio_annotations": ("label_studio", "annotations"),
}


def flags() -> list[settings.Flag]:
    """The job's own command-line flags, derived from the declarations above."""
    return settings.flags_of(JobConfig)


def merge(layers: list[dict]) -> dict:
    """Deep-merge job sections in order: later layers win per leaf."""
    merged: dict = {}
    for layer in layers:
        merged = settings.deep_merge(JobConfig, merged, layer or {})
    return merged


def build_job(values: dict) -> JobConfig:
    """Merged job values -> JobConfig, every value and every format's options checked."""
    job = settings.build(JobConfig, values, "job")
    known = format_names()
    for name in job.formats:
        if name not in known:
            raise SettingError(f"job.formats: unknown format {name!r}; known formats: {', '.join(known)}")
    options = job.format_options()  # each format checks its own options now, at launch
    if "yolo" in job.write.formats and options["yolo"].task == "classify" and not job.write.copy_images:
        raise SettingError("formats.yolo.task=classify writes each image into its class folder and no label file: it needs --copy_images (docs/formats.md, yolo)")
    return job


def set_path(target: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def schema() -> dict:
    """JSON Schema of a labelbeam YAML config (both sections)."""
    job = settings.json_schema(JobConfig)
    job["properties"]["formats"] = {
        "type": "object",
        "description": "each format's own options, by format name (docs/formats.md)",
        "additionalProperties": False,
        "properties": {name: settings.json_schema(get_format(name).Options) for name in format_names()},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "labelbeam job config",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "pipeline_options": {"type": "object", "description": "Beam pipeline options, passed 1:1 as flags"},
            "job": job,
        },
    }


if __name__ == "__main__":
    print(json.dumps(schema(), indent=2))

"""LabelbeamOptions, the --config YAML loader, and the typed job config built at launch.

A YAML config has two sections: `pipeline_options` (passed 1:1 to Beam as flags) and `job`
(validated into JobConfig). `--config` may repeat; later files win, and command-line flags win
over every file. Everything is checked here, before a graph is built: a wrong option, a missing
input or an unknown format fails at launch with one clear line. Workers never read YAML.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
from typing import Any

import yaml
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from transforms import read, storage
from transforms.formats.base import format_names, get_format
from transforms.masks import MaskValidationConfig
from transforms.profiles import PROFILES
from transforms.split import DEFAULT_RATIOS, parse_ratios

VALIDATION_PROFILES = tuple(PROFILES)


class ConfigError(ValueError):
    """A launch-time problem with the job's configuration: one line for the user."""


@dataclasses.dataclass
class JobConfig:
    """The job section, typed. Field names are the flag names without dashes."""

    input: list[str]
    output: str
    format: str | None = None
    output_format: list[str] = dataclasses.field(default_factory=list)
    overwrite: bool = False
    max_error_rate: float | None = None
    shard_size: int = read.DEFAULT_SHARD_SIZE
    batch_size: int = read.DEFAULT_BATCH_LINES
    max_line_bytes: int = read.DEFAULT_MAX_LINE_BYTES
    storage_options: dict = dataclasses.field(default_factory=dict)
    split_ratios: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_RATIOS))
    split_salt: str = ""
    relative_to: str | None = None
    format_option: dict = dataclasses.field(default_factory=dict)
    azure_datastore_map: list = dataclasses.field(default_factory=list)
    label_studio_annotations: str = "all"
    validate_masks: bool = True
    probe_images: bool = False
    validation_profile: str = "none"
    mask_alpha_threshold: int | None = None
    mask_color_tolerance: int | None = None
    mask_max_pixels: int | None = None
    mask_timeout_seconds: float | None = None
    io_concurrency: int | None = None

    def format_options(self) -> dict[str, Any]:
        """What format plugins see in ParseContext.options / WriteContext.options."""
        options = dict(self.format_option)
        options["azure_datastore_map"] = [tuple(pair) for pair in self.azure_datastore_map]
        options["label_studio_annotations"] = self.label_studio_annotations
        return options

    def mask_config(self) -> MaskValidationConfig:
        """What ValidateMasks gets; unset tuning flags keep its documented defaults."""
        tuning = {
            "alpha_threshold": self.mask_alpha_threshold,
            "color_tolerance": self.mask_color_tolerance,
            "max_pixels": self.mask_max_pixels,
            "timeout_seconds": self.mask_timeout_seconds,
            "concurrency": self.io_concurrency,
        }
        return MaskValidationConfig(
            validate_masks=self.validate_masks,
            probe_images=self.probe_images,
            validation_profile=self.validation_profile,
            **{name: value for name, value in tuning.items() if value is not None},
        )

    def redacted(self) -> dict[str, Any]:
        return storage.redact(dataclasses.asdict(self))


_JOB_FIELDS = {field.name: field for field in dataclasses.fields(JobConfig)}


def _bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class LabelbeamOptions(PipelineOptions):
    """The job's own flags, beside Beam's. Defaults are None so YAML values show through."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("labelbeam")
        group.add_argument("--config", action="append", help="YAML config file; may repeat, later wins")
        group.add_argument("--input", action="append", help="glob pattern or URL of manifests; may repeat")
        group.add_argument("--output", help="output folder URL (local path, s3://, gs://, az://, memory://)")
        group.add_argument("--format", help="input format; detected per file when absent")
        group.add_argument("--output_format", action="append", help="write manifests in this format; may repeat")
        group.add_argument("--overwrite", type=_bool, nargs="?", const=True, help="replace a non-empty --output")
        group.add_argument("--max_error_rate", type=float, help="exit non-zero when dead letters / lines exceed it")
        group.add_argument("--shard_size", help="bytes per shard of a JSON-lines file, e.g. 64MB, 512KB")
        group.add_argument("--batch_size", type=int, help="raw records per batch")
        group.add_argument("--max_line_bytes", help="longer lines are dead letters (LINE_TOO_LONG)")
        group.add_argument("--storage_options", help="JSON fsspec options, flat or keyed by protocol")
        group.add_argument("--split_ratios", help="e.g. train=0.8,validation=0.1,test=0.1")
        group.add_argument("--split_salt", help="changes which images go to which split")
        group.add_argument("--relative_to", help="base URL for relative image/mask refs (default: manifest folder)")
        group.add_argument("--format_option", action="append", help="KEY=VALUE passed to format plugins; may repeat")
        group.add_argument("--azure_datastore_map", action="append", help="FROM=TO image URL prefix rewrite for azure_automl output")
        group.add_argument("--label_studio_annotations", choices=("all", "latest", "ground_truth"))
        group.add_argument("--validate_masks", type=_bool, nargs="?", const=True, help="check mask PNGs (default true)")
        group.add_argument("--probe_images", type=_bool, nargs="?", const=True, help="read image headers for size/format")
        group.add_argument("--validation_profile", choices=VALIDATION_PROFILES)
        group.add_argument("--mask_alpha_threshold", type=int)
        group.add_argument("--mask_color_tolerance", type=int)
        group.add_argument("--mask_max_pixels", type=int)
        group.add_argument("--mask_timeout_seconds", type=float)
        group.add_argument("--io_concurrency", type=int)


@dataclasses.dataclass
class Launch:
    """What run() needs: Beam's options and the typed job."""

    pipeline_options: PipelineOptions
    job: JobConfig

    def beam_options(self) -> dict[str, Any]:
        """The Beam options that were set, without the job's own flags (they have their section)."""
        options = self.pipeline_options.get_all_options(drop_default=True)
        return {k: v for k, v in options.items() if k not in _JOB_FIELDS and k != "config"}


def _flags_from_mapping(mapping: dict[str, Any]) -> list[str]:
    flags = []
    for key, value in (mapping or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            if value:  # Beam's on/off flags are off unless given
                flags.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            flags.extend(f"--{key}={item}" for item in value)
        elif isinstance(value, dict):
            flags.append(f"--{key}={json.dumps(value)}")
        else:
            flags.append(f"--{key}={value}")
    return flags


def _load_yaml(path: str) -> dict:
    try:
        with storage.open_file(path, "rb") as handle:
            loaded = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict) or set(loaded) - {"pipeline_options", "job"}:
        raise ConfigError(f"config file {path} must have only the sections pipeline_options and job")
    return loaded


class _RaisingParser(_BeamArgumentParser):
    """Beam's parser, but a bad value is one ConfigError line, not usage text and an exit."""

    def error(self, message):
        raise ConfigError(message)


def _check_known_flags(flags: list[str]) -> None:
    parser = _RaisingParser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 (Beam's own way to list every option)
    _, unknown = parser.parse_known_args(flags)
    for arg in unknown:
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            known = [opt for action in parser._actions for opt in action.option_strings]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"unknown option {name}{hint}")
        raise ConfigError(f"unexpected argument {arg!r} (options look like --name=value)")


def _key_value(text: str, what: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    if not sep or not key:
        raise ConfigError(f"{what} takes KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _job_value(name: str, value: Any) -> Any:
    """A YAML or command-line value -> the JobConfig field's type."""
    if value is None:
        return None
    if name in ("input", "output_format"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError("expected a string or a list of strings")
        return list(dict.fromkeys(items))  # a repeated value once
    if name in ("shard_size", "max_line_bytes"):
        size = read.parse_size(value)
        if name == "shard_size" and size < MIN_SHARD_SIZE:
            raise ValueError(f"must be at least {MIN_SHARD_SIZE} bytes (1KB)")
        if size <= 0:
            raise ValueError("must be positive")
        return size
    if name == "storage_options":
        parsed = json.loads(value) if isinstance(value, str) else value
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object")
        return parsed
    if name == "split_ratios":
        return parse_ratios(value)
    if name == "format_option":
        if isinstance(value, dict):
            return dict(value)
        items = [value] if isinstance(value, str) else value
        return dict(_key_value(item, "--format_option") for item in items)
    if name == "azure_datastore_map":
        if isinstance(value, dict):
            return [(k, v) for k, v in value.items()]
        items = [value] if isinstance(value, str) else value
        return [_key_value(item, "--azure_datastore_map") for item in items]
    if name in ("overwrite", "validate_masks", "probe_images"):
        return value if isinstance(value, bool) else _bool(value)
    if name == "max_error_rate":
        rate = float(value)
        if not 0 <= rate <= 1:
            raise ValueError("must be between 0 and 1")
        return rate
    if name in _INTEGERS:
        number = _integer(value)
        if number <= 0 and name != "mask_color_tolerance" and name != "mask_alpha_threshold":
            raise ValueError("must be positive")
        return number
    if name in _FLOATS:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if name in _STRINGS and not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


_INTEGERS = {"batch_size", "mask_alpha_threshold", "mask_color_tolerance", "mask_max_pixels", "io_concurrency"}
_FLOATS = {"mask_timeout_seconds"}
_STRINGS = {"output", "format", "split_salt", "relative_to", "label_studio_annotations", "validation_profile"}
MIN_SHARD_SIZE = 1024


def _integer(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"expected an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected an integer, got {value!r}") from None


def parse_launch(argv: list[str]) -> Launch:
    """Command line (+ --config files) -> Launch, or ConfigError with one clear line."""
    pre = _RaisingParser(add_help=False)
    pre.add_argument("--config", action="append", default=[])
    config_args, _ = pre.parse_known_args(argv)
    yaml_job: dict[str, Any] = {}
    yaml_pipeline: dict[str, Any] = {}
    for path in config_args.config:
        loaded = _load_yaml(path)
        yaml_pipeline.update(loaded.get("pipeline_options") or {})
        yaml_job.update(loaded.get("job") or {})
    for key in yaml_job:
        if key not in _JOB_FIELDS:
            close = difflib.get_close_matches(key, list(_JOB_FIELDS), n=1)
            raise ConfigError(f"unknown job setting {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""))

    flags = _flags_from_mapping(yaml_pipeline) + list(argv)
    _check_known_flags(flags)
    options = PipelineOptions(flags)
    cli = options.view_as(LabelbeamOptions)

    values: dict[str, Any] = {}
    for name in _JOB_FIELDS:
        given = getattr(cli, name, None)
        raw = given if given is not None else yaml_job.get(name)
        try:
            value = _job_value(name, raw)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"--{name}: {exc}") from None
        if value is not None:
            values[name] = value
    if not values.get("input"):
        raise ConfigError("--input is required (a file, glob pattern or URL of manifests)")
    if not values.get("output"):
        raise ConfigError("--output is required (a folder URL for the results)")
    job = JobConfig(**values)
    _check_job(job)
    return Launch(options, job)


def _check_job(job: JobConfig) -> None:
    known = format_names()
    for name in [job.format, *job.output_format]:
        if name is not None and name not in known:
            raise ConfigError(f"unknown format {name!r}; known formats: {', '.join(known)}")
    for name in known:
        try:
            get_format(name).check_options(job.format_options())
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"format option for {name}: {exc}") from None
    try:  # the profile name, and the mask tuning flags
        job.mask_config()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"mask validation: {exc}") from None
    for pattern in job.input:
        try:
            matched = storage.expand(pattern, job.storage_options)
        except Exception as exc:  # a storage error at launch is one line too
            raise ConfigError(f"cannot list {pattern}: {exc}") from None
        if not matched:
            raise ConfigError(f"no input file matches {pattern}")

"""The command line: labelbeam's flags beside Beam's, the --config loader, and the launch check.

A YAML config has two sections: `pipeline_options` (passed 1:1 to Beam as flags) and `job`
(typed in pipelines/config.py). `--config` may repeat; later files win per leaf, and flags win
over every file. Everything is checked here, before a graph is built: a wrong option, a missing
input or an unknown format fails at launch with one clear line. Workers never read YAML.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any

import yaml
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipelines import config
from pipelines.config import FORMAT_FLAGS, JobConfig
from transforms import storage
from transforms.settings import SettingError, parse_pairs


class ConfigError(ValueError):
    """A launch-time problem with the job's configuration: one line for the user."""


class LabelbeamOptions(PipelineOptions):
    """The job's own flags, beside Beam's; generated from the typed config. Defaults are None
    so that values from YAML show through."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("labelbeam")
        group.add_argument("--config", action="append", help="YAML config file; may repeat, later wins")
        for flag in config.flags():
            kwargs: dict[str, Any] = {"help": flag.help, "dest": flag.name}
            if flag.boolean:
                kwargs.update(nargs="?", const="true")
            elif flag.name == "input":
                kwargs.update(action="append", nargs="+")
            elif flag.repeatable:
                kwargs.update(action="append")
            group.add_argument(f"--{flag.name}", **kwargs)
        group.add_argument("--format_option", action="append", help="FORMAT.KEY=VALUE, a format's own option; may repeat")
        for name, (fmt, key) in FORMAT_FLAGS.items():
            group.add_argument(f"--{name}", action="append", help=f"the {fmt} format's {key} option")


@dataclasses.dataclass
class Launch:
    """What run() needs: Beam's options, the typed job, and its inputs as listed at launch
    ((url, size) per file, once per launch: the job reads this list, it never lists again)."""

    pipeline_options: PipelineOptions
    job: JobConfig
    inputs: tuple[tuple[str, int], ...]

    def beam_options(self) -> dict[str, Any]:
        """The Beam options that were set, without the job's own flags (they have their section)."""
        own = {flag.name for flag in config.flags()} | set(FORMAT_FLAGS) | {"config", "format_option"}
        options = self.pipeline_options.get_all_options(drop_default=True)
        return {k: v for k, v in options.items() if k not in own}


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
    for section in ("pipeline_options", "job"):
        if loaded.get(section) is not None and not isinstance(loaded[section], dict):
            raise ConfigError(f"config file {path}: {section} must be a mapping")
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


def _flag_layer(cli: LabelbeamOptions) -> dict:
    """The job values given as flags, at their nested paths."""
    layer: dict = {}
    for flag in config.flags():
        given = getattr(cli, flag.name, None)
        if given is None:
            continue
        if flag.name == "input":
            given = [item for group in given for item in group]
        config.set_path(layer, flag.path, given)
    for name, (fmt, key) in FORMAT_FLAGS.items():
        given = getattr(cli, name, None)
        if given is not None:
            config.set_path(layer, ("formats", fmt, key), given if len(given) > 1 or name == "azure_datastore_map" else given[0])
    for item in getattr(cli, "format_option", None) or []:
        try:
            pairs = parse_pairs(item, "FORMAT.KEY=VALUE")
        except SettingError as exc:
            raise ConfigError(f"--format_option {exc}") from None
        for dotted, value in pairs.items():
            fmt, _, key = dotted.partition(".")
            if not key:
                raise ConfigError(f"--format_option takes FORMAT.KEY=VALUE (e.g. label_studio.annotations=latest), got {item!r}")
            config.set_path(layer, ("formats", fmt, key), value)
    return layer


def parse_launch(argv: list[str]) -> Launch:
    """Command line (+ --config files) -> Launch, or ConfigError with one clear line."""
    pre = _RaisingParser(add_help=False)
    pre.add_argument("--config", action="append", default=[])
    config_args, _ = pre.parse_known_args(argv)
    job_layers: list[dict] = []
    pipeline_flags: list[str] = []
    for path in config_args.config:
        loaded = _load_yaml(path)
        pipeline_flags += _flags_from_mapping(loaded.get("pipeline_options") or {})
        job_layers.append(loaded.get("job") or {})

    flags = pipeline_flags + list(argv)
    _check_known_flags(flags)
    options = PipelineOptions(flags)
    job_layers.append(_flag_layer(options.view_as(LabelbeamOptions)))
    try:
        job = config.build_job(config.merge(job_layers))
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
    inputs = _check_inputs(job)
    _check_output(job)
    return Launch(options, job, inputs)


def _storage_refused(what: str, exc: BaseException) -> ConfigError:
    """One line naming why storage refused: no_credentials, access_denied, unreachable,
    bad_option, ... (the client's own message, redacted, after it)."""
    reason = storage.launch_failure_reason(exc)
    detail = storage.redact_url(f"{type(exc).__name__}: {exc}").splitlines()[0][:300] if str(exc) else type(exc).__name__
    return ConfigError(f"storage refused {what} ({reason}): {detail}")


def _check_inputs(job: JobConfig) -> tuple[tuple[str, int], ...]:
    """Every pattern matches regular files: a storage failure is named, never taken for "no
    match"; a FIFO, device or socket (or a symlink to one) is refused, glob or not. Returns
    the files matched, (url, size), each once, sorted."""
    listed: set[tuple[str, int]] = set()
    for pattern in job.input:
        shown = storage.redact_url(pattern)
        problem = storage.reference_problem(pattern)
        if problem is not None:
            raise ConfigError(f"--input {shown} {problem}")
        try:
            matched = storage.within_deadline(lambda: storage.expand(pattern, job.storage, job.storage_timeout), job.storage_timeout, f"listing {shown}")
        except storage.NotRegularFile as exc:
            raise ConfigError(f"input {exc}; give files or glob patterns of files") from None
        except Exception as exc:  # noqa: BLE001 - a storage error at launch is one line too
            raise _storage_refused(f"listing {shown}", exc) from None
        if not matched:
            raise ConfigError(f"no input file matches {shown}")
        listed.update((url, size) for url, size in matched)
    return tuple(sorted(listed))


def _check_output(job: JobConfig) -> None:
    """An output on object storage goes into a bucket / container that exists: the job never
    creates one as a side effect (s3fs makedirs would)."""
    problem = storage.reference_problem(job.output)
    if problem is not None:
        raise ConfigError(f"--output {storage.redact_url(job.output)} {problem}")
    scheme, rest = storage.split_url(job.output)
    if storage.protocol_kind(scheme) != "object_store":
        return
    bucket = rest.split("/", 1)[0].split("@", 1)[0]  # az: container@account.dfs.core.windows.net
    shown = f"{scheme}://{bucket}"

    def look():
        fs, _ = storage.filesystem(job.output, job.storage, job.storage_timeout)
        return fs.info(bucket)

    try:
        storage.within_deadline(look, job.storage_timeout, f"looking up {shown}")
    except FileNotFoundError:
        raise ConfigError(f"--output bucket {shown} does not exist; create it first (labelbeam never creates buckets)") from None
    except Exception as exc:  # noqa: BLE001 - one line naming the reason
        raise _storage_refused(f"--output {shown}", exc) from None


def help_text() -> str:
    """labelbeam's own options, with their defaults and choices (Beam's: --help-beam)."""
    lines = [
        "usage: labelbeam --input PATTERN [PATTERN ...] --output URL [options] [Beam pipeline options]",
        "",
        "labelbeam options (YAML: the job section of --config; flags win over files):",
    ]
    names = [flag.name for flag in config.flags()] + list(FORMAT_FLAGS) + ["format_option F.K=V", "config FILE"]
    width = max(map(len, names)) + 2
    lines.append(f"  --{'config FILE':<{width}}YAML with pipeline_options and job sections; may repeat")
    for flag in config.flags():
        detail = []
        if flag.choices:
            detail.append("one of " + ", ".join(map(str, flag.choices)))
        if flag.default not in (dataclasses.MISSING, None, [], {}, ""):
            detail.append(f"default {flag.default}")
        suffix = f" ({'; '.join(detail)})" if detail else ""
        lines.append(f"  --{flag.name:<{width}}{flag.help}{suffix}")
    lines.append(f"  --{'format_option F.K=V':<{width}}a format's own option, e.g. label_studio.annotations=latest")
    for name, (fmt, key) in FORMAT_FLAGS.items():
        lines.append(f"  --{name:<{width}}the same as --format_option {fmt}.{key}=...")
    lines += ["", "Beam's own options (runner, workers, Dataflow, ...): labelbeam --help-beam"]
    return "\n".join(lines)

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
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions, _BeamArgumentParser

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
                kwargs.update(action="append", nargs="+", metavar="PATTERN")
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
    merged = config.merge(job_layers)
    try:
        job = config.build_job(merged)
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
    _check_split_ratios((merged.get("split") or {}).get("ratios"))
    job = _expand_folders(job)
    inputs = _check_inputs(job)
    _check_output_reachable(options, job)
    if not options.view_as(TestOptions).dry_run:  # a dry run builds the graph offline and writes nothing
        _check_output(job)
    return Launch(options, job, inputs)


def _storage_refused(what: str, exc: BaseException, timeout: float | None = None) -> ConfigError:
    """One line naming why storage refused: no_credentials, access_denied, unreachable,
    bad_option, ... (the client's own message, redacted, after it). An unreachable endpoint
    names the --storage_timeout in force, whether labelbeam's deadline or the client's own
    timeouts (sized to fit inside it) ran out first."""
    reason = storage.launch_failure_reason(exc)
    detail = storage.redact_url(f"{type(exc).__name__}: {exc}").splitlines()[0][:300] if str(exc) else type(exc).__name__
    if reason == storage.UNREACHABLE and timeout and not isinstance(exc, storage.StorageTimeout):
        detail += f" (--storage_timeout {timeout:g} s)"
    return ConfigError(f"storage refused {what} ({reason}): {detail}")


def _check_split_ratios(given: str | dict | None) -> None:
    """Shares as given (flag or YAML, before they are normalized) that do not sum to 1 are a
    typo, not something to rescale silently. Their form was checked by build_job."""
    if given is None:
        return
    pairs = given.items() if isinstance(given, dict) else (part.partition("=")[::2] for part in str(given).split(","))
    shares = {str(name).strip(): float(value) for name, value in pairs}
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-9:
        text = ",".join(f"{name}={share:g}" for name, share in shares.items())
        raise ConfigError(f"split ratios {text} sum to {total:.10g}; the shares must sum to 1")


_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"}


def remote_runner(options: PipelineOptions) -> str | None:
    """The runner's name when its workers run on other machines (they cannot see this one's disk)."""
    from apache_beam.options.pipeline_options import FlinkRunnerOptions, PortableOptions, StandardOptions

    runner = (options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1]
    if runner in ("DataflowRunner", "TestDataflowRunner"):
        return runner
    if runner == "FlinkRunner":
        master = options.view_as(FlinkRunnerOptions).flink_master or "[auto]"
        return None if master in ("[auto]", "[local]") or master.rsplit(":", 1)[0] in _LOOPBACK else f"FlinkRunner at {master}"
    if runner == "PortableRunner":
        endpoint = options.view_as(PortableOptions).job_endpoint or "embed"
        return None if endpoint == "embed" or endpoint.rsplit(":", 1)[0] in _LOOPBACK else f"PortableRunner at {endpoint}"
    return None


def _check_output_reachable(options: PipelineOptions, job: JobConfig) -> None:
    """A remote runner's workers write the outputs: a folder on this machine's disk is not theirs."""
    import fsspec

    remote = remote_runner(options)
    if remote and fsspec.core.split_protocol(job.output)[0] in (None, "file", "local"):
        raise ConfigError(
            f"--output {storage.redact_url(job.output)} is on this machine's disk, which the workers of {remote} cannot write; "
            "give an object-store URL (s3://, gs://, az://)"
        )


def _folder_files(pattern: str, storage_options: dict) -> list[str] | None:
    """The files under a folder, hidden ones and dot-folders skipped, sorted; None when
    `pattern` is not a folder (a file, a glob, or nothing)."""
    import fsspec

    fs, path = storage.filesystem(pattern, storage_options)
    if fsspec.core.has_magic(path) or fs.isfile(path) or not fs.isdir(path):
        return None
    root = path.rstrip("/")
    found = []
    for name in fs.find(root):
        relative = name[len(root):].strip("/")
        if not any(part.startswith(".") for part in relative.split("/")):
            found.append(storage.to_url(fs, name))
    return sorted(found)


def _expand_folders(job: JobConfig) -> JobConfig:
    """An --input that names a folder stands for every file under it, at any depth, as a glob
    would; hidden files and dot-folders (an editor's, a tool's or labelbeam's own state) are
    skipped. Listed here, once, so every later step sees plain files."""
    expanded: list[str] = []
    for pattern in job.input:
        shown = storage.redact_url(pattern)
        try:
            files = storage.within_deadline(lambda pattern=pattern: _folder_files(pattern, job.storage), job.storage_timeout, f"listing {shown}")
        except Exception as exc:  # noqa: BLE001 - a storage error at launch is one line, with its reason
            raise _storage_refused(f"listing {shown}", exc, job.storage_timeout) from None
        if files is None:
            expanded.append(pattern)
        elif not files:
            raise ConfigError(f"input folder {storage.redact_url(pattern)} holds no files (hidden files and dot-folders are skipped)")
        else:
            expanded += files
    return job if expanded == job.input else dataclasses.replace(job, input=expanded)


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
            matched = storage.within_deadline(lambda pattern=pattern: storage.expand(pattern, job.storage, job.storage_timeout), job.storage_timeout, f"listing {shown}")
        except storage.NotRegularFile as exc:
            raise ConfigError(f"input {exc}; give files or glob patterns of files") from None
        except Exception as exc:  # noqa: BLE001 - a storage error at launch is one line too
            raise _storage_refused(f"listing {shown}", exc, job.storage_timeout) from None
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
        raise _storage_refused(f"--output {shown}", exc, job.storage_timeout) from None


# The options most runs use, shown first by --help (the rest follow in declaration order).
COMMON_FLAGS = ("input", "output", "format", "output_format", "overwrite", "quiet", "max_error_rate", "shard_size",
                "validate_masks", "probe_images", "validation_profile", "split_ratios")


def _field_of(path: tuple[str, ...]) -> dataclasses.Field:
    cls, field = JobConfig, None
    for name in path:
        field = {f.name: f for f in dataclasses.fields(cls)}[name]
        cls = field.default_factory if field.default_factory is not dataclasses.MISSING else None
    return field


def format_size(value: int) -> str:
    """Bytes as a user writes them: 67108864 -> 64MB (whole binary units only)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if value >= scale and value % scale == 0:
            return f"{value // scale}{unit}"
    return str(value)


def _metavar(flag) -> str:
    if flag.name == "input":
        return " PATTERN [PATTERN ...]"
    if flag.boolean:
        return "[=true|false]"
    if _field_of(flag.path).metadata.get("size"):
        return " SIZE"
    if flag.choices:
        return " NAME"
    if isinstance(flag.default, (int, float)):
        return " N"
    return {"output": " URL", "max_error_rate": " RATE", "relative_to": " URL", "storage_options": " JSON", "split_ratios": " NAME=SHARE,...",
            "allowed_roots": " URL[,URL...]", "partition_by": " COL[,COL...]", "manifest_partition_by": " COL[,COL...]"}.get(flag.name, " VALUE")


def _describe(flag) -> str:
    detail = []
    if flag.choices:
        detail.append("one of " + ", ".join(map(str, flag.choices)))
    if flag.default not in (dataclasses.MISSING, None, [], {}, "", False):
        shown = format_size(flag.default) if _field_of(flag.path).metadata.get("size") else flag.default
        if isinstance(shown, bool):
            shown = str(shown).lower()
        elif isinstance(shown, dict):
            shown = ",".join(f"{k}={v:g}" for k, v in shown.items())
        detail.append(f"default {shown}")
    if flag.repeatable and flag.name != "input":
        detail.append("may repeat")
    return flag.help + (f" ({'; '.join(detail)})" if detail else "")


def _entries(entries: list[tuple[str, str]], width: int) -> list[str]:
    """Option and description in two columns, wrapped to `width`; the description on the next
    line when the option is too long for its column or the terminal is narrow."""
    import textwrap

    column = 30 if width >= 72 else 8
    lines = []
    for option, text in entries:
        head = f"  {option}"
        kept = text.replace("default ", "default\u00a0")  # a default stays beside its value
        body = [line.replace("\u00a0", " ") for line in textwrap.wrap(kept, max(20, width - column), break_on_hyphens=False)] or [""]
        if len(head) + 2 <= column:
            lines.append(f"{head:<{column}}{body[0]}")
            body = body[1:]
        else:
            lines.append(head)
        lines += [" " * column + line for line in body]
    return lines


def help_text(width: int | None = None) -> str:
    """labelbeam's own options, the common ones first, with their defaults and choices, wrapped
    to the terminal (Beam's own: --help-beam)."""
    import shutil

    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    flags = {flag.name: flag for flag in config.flags()}
    entry = lambda flag: (f"--{flag.name}{_metavar(flag)}", _describe(flag))  # noqa: E731
    common = [entry(flags[name]) for name in COMMON_FLAGS]
    common.insert(4, ("--config FILE", "YAML with pipeline_options (Beam's) and job (these options, nested) sections; may repeat, "
                                       "later files win per leaf, flags win over every file"))
    more = [entry(flag) for name, flag in flags.items() if name not in COMMON_FLAGS]
    more.append(("--format_option FORMAT.KEY=VALUE", "a format's own option, e.g. label_studio.annotations=latest; may repeat (docs/formats.md)"))
    more += [(f"--{name} VALUE", f"the same as --format_option {fmt}.{key}=VALUE") for name, (fmt, key) in FORMAT_FLAGS.items()]
    lines = ["usage: labelbeam --input PATTERN [...] --output URL [options] [Beam options]",
             "       labelbeam --help | --help-beam | --version", "",
             "Common options:", *_entries(common, width), "",
             "More options:", *_entries(more, width), "",
             *_entries([("--help-beam", "Beam's own options: runner, workers, Dataflow, Flink, portable (without --runner: the "
                                        "FnApiRunner, one worker process per core)"),
                        ("--version", "labelbeam's, Beam's and pyarrow's versions")], width)]
    return "\n".join(lines)


def beam_help_text(width: int | None = None) -> str:
    """Beam's own pipeline options, grouped as Beam groups them (one group per options class)."""
    import argparse
    import shutil

    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    parser = argparse.ArgumentParser(prog="labelbeam", usage="labelbeam [labelbeam options] [Beam options]", add_help=False,
                                     description="Beam's pipeline options, passed to Beam as they are (or under pipeline_options: "
                                                 "in a --config file); labelbeam's own: labelbeam --help. Without --runner, "
                                                 "labelbeam runs the FnApiRunner with one worker process per core "
                                                 "(--direct_running_mode=multi_processing --direct_num_workers=<cores>), not "
                                                 "Beam's DirectRunner.",
                                     formatter_class=lambda prog: argparse.HelpFormatter(prog, width=width),
                                     conflict_handler="resolve", allow_abbrev=False)
    seen: dict[str, type] = {}

    def walk(cls):
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("apache_beam"):
                seen.setdefault(f"{sub.__module__}.{sub.__qualname__}", sub)
            walk(sub)

    walk(PipelineOptions)
    for cls in seen.values():
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        group = parser.add_argument_group(cls.__name__, " ".join(doc.split()) or None)
        group.add_argument_group = lambda *a, _group=group, **k: _group  # a few classes nest groups
        cls._add_argparse_args(group)  # noqa: SLF001 (Beam's own way to list its options)
    for action in parser._actions:  # noqa: SLF001 - Beam's text names Beam's default, not this job's
        if "--runner" in action.option_strings and action.help:
            action.help = action.help.replace("If unspecified, defaults to DirectRunner.",
                                              "If unspecified, labelbeam uses the FnApiRunner with one worker process per core.")
    return parser.format_help()


def version_text() -> str:
    """labelbeam's version and those of the two libraries its outputs depend on."""
    from importlib import metadata

    import apache_beam
    import pyarrow

    try:
        own = metadata.version("labelbeam")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        own = "unknown (not installed; pip install -e .)"
    return f"labelbeam {own}\napache-beam {apache_beam.__version__}\npyarrow {pyarrow.__version__}"

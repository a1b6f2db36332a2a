"""The format plugin contract and its registry.

A format turns one decoded source object (a JSON object of a manifest line, or one element of a
JSON array) into canonical rows (dicts of transforms.schema.SCHEMA), and canonical rows back
into encoded output elements. Plugins are pure Python: no Beam imports, so they can be tested
and reused alone. A format may also declare fast paths (`ManifestFormat.fast_paths`): columnar
shortcuts of its own parse that the normalizer tries before it, for the lines they take.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import pkgutil
import posixpath
from typing import Any, Iterable, Iterator

from transforms import settings, storage
from transforms.errors import INVALID_FIELD_TYPE, UNKNOWN_FORMAT, RecordError


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a format that has none."""


@dataclasses.dataclass
class ParseContext:
    """What a plugin may know about the record it parses."""

    uri: str  # the manifest the record came from
    base_uri: str  # folder relative references resolve against (no trailing slash)
    options: Any = None  # the format's own Options instance (its defaults when None)

    def resolve(self, ref: str) -> str:
        """A reference as written in the manifest -> an absolute URL or path."""
        return resolve_reference(self.base_uri, ref)


@dataclasses.dataclass
class Parsed:
    """The canonical rows of one source object, and what was skipped on purpose."""

    rows: list[dict]
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class WriteContext:
    """Options of the writer, and the rows it had to refuse."""

    options: Any = None  # the format's own Options instance (its defaults when None)
    rejected: list[tuple[dict, str, str]] = dataclasses.field(default_factory=list)
    #: objects refused from rows that were written without them: (row, object index, code, message)
    rejected_objects: list[tuple[dict, int, str, str]] = dataclasses.field(default_factory=list)
    #: every class name of the whole output, sorted (known before the first line), for formats
    #: that set `uses_class_names`; None when the writer runs without one (unit tests)
    classes: list[str] | None = None
    #: what the format notes about a whole file as it writes it (e.g. the label_studio controls
    #: used), shared by every batch of one file; picklable values only (see side_files)
    summary: dict = dataclasses.field(default_factory=dict)
    #: objects the writer put into its elements, in the format's own units (COCO annotations,
    #: Ground Truth boxes, AutoML boxes / polygons, Label Studio region results): run.json
    #: checks them against the units counted back from the files (ManifestFormat.objects_in)
    objects_written: int = 0
    #: opens a record's mask PNG for writers that write its pixels (transforms/formats/_mask_pixels.py):
    #: the job's storage and the file checks' mask policy; None uses the defaults (unit tests)
    masks: Any = None
    #: writes a file beside the manifests (`files.write(name, content)` -> the URL it is
    #: published at), counted like the manifests (transforms/output_files.BundleFiles): e.g.
    #: the sagemaker writer's mask PNGs; None when the writer runs alone
    files: Any = None

    def reject(self, row: dict, code: str, message: str) -> None:
        """A row this format cannot represent: it becomes a dead letter of stage write."""
        self.rejected.append((row, code, message))

    def reject_object(self, row: dict, index: int, code: str, message: str) -> None:
        """One object (`row["objects"][index]`) this format has no form for: the row is written
        with the rest of its labels, and the object alone is refused (refused/<format>/, with the
        record id and the object index). A writer never refuses a whole row for one object."""
        self.rejected_objects.append((row, index, code, message))


@dataclasses.dataclass
class FastPart:
    """What a fast path made of a RawBatch: rows for the lines it took, the rest declined."""

    batch: Any  # a pyarrow RecordBatch of transforms.schema.SCHEMA: one row per taken line, in input order
    taken: list[int]  # positions in the RawBatch of the lines the rows are of
    declined: list[int]  # positions of the other lines: the next path (and at last parse) takes them


class FastPath(abc.ABC):
    """A columnar shortcut of a format's parse, declared by the format (`fast_paths`).

    The contract: every row it gives is exactly the row the reference path (decode, `parse`,
    record id and source) makes of that line, dictionaries aside; a line the reference would
    turn into a dead letter, an issue, a skip or several rows is declined, never guessed. Bad
    input never raises: the line or the whole batch (None) is declined. `shapes` names the line
    shapes it claims: tests/test_fast_normalize.py generates every one of them and compares.
    An instance holds per-worker caches; the normalizer keeps one per format.
    """

    name: str = ""
    shapes: tuple[str, ...] = ()

    @abc.abstractmethod
    def read(self, batch: Any, ctx: ParseContext) -> FastPart | None:
        """The lines of `batch` (a transforms.schema.RawBatch) this path takes, as rows."""


class ManifestFormat(abc.ABC):
    """One format family: detect, parse, write."""

    #: registry name, used by --format and --output_format
    name: str = ""
    #: False for output-only formats (coco, jsonl): not offered by --format, never detected
    readable: bool = True
    #: file extension of written files
    extension: str = ".jsonl"
    #: "jsonl": one encoded element per line; "json_array": a JSON array of elements;
    #: "document": one document per file, written by open_document() (COCO);
    #: "folder": parts written by open_document(), assembled at finalize into the files the
    #: format names (YOLO: a label file per record), each counted by its file_counts()
    file_layout: str = "jsonl"
    #: True when a consumer of the format reads one task per file (Azure AutoML training):
    #: manifests are then partitioned by task as well as by split
    one_task_per_file: bool = False
    #: partition columns of the manifests, when not (split,) / (split, task)
    partition_columns: tuple[str, ...] | None = None
    #: columns whose values one file of the format cannot mix: added to any --partition_by
    required_partition_columns: tuple[str, ...] = ()
    #: True when the writer numbers classes: the write stage then gives it every class name of
    #: the output (WriteContext.classes), so ids are the same in every file and line
    uses_class_names: bool = False
    #: False for a format that writes records as they are (jsonl): every Ground Truth label job
    #: of a line, not one (transforms/label_jobs.py)
    one_label_job: bool = True
    #: how a reference to an image copied beside the labels (--copy_images,
    #: transforms/image_copies.py) is written: None, the URL the copy is published at (then
    #: --uri_map / --relative_output as for any reference); "split", relative to its
    #: images/<split>/ folder (COCO's file_name); "output", relative to the format's folder
    copied_image_reference: str | None = None

    #: the format's options: a dataclass of transforms.settings fields (job.formats.<name>)
    Options: type = NoOptions

    def copy_folders(self, options: Any) -> Any:
        """--copy_images: None (each copy under images/<split>/), or a module-level function
        row -> the folder under images/ the format wants its copy in (None: not copied, the
        format refuses the row), as YOLO classify's <split>/<class>."""
        return None

    def options(self, values: Any = None) -> Any:
        """`values` (a mapping from the config, an Options instance, or None) -> Options, checked:
        a bad option raises SettingError at launch, before any work."""
        if isinstance(values, self.Options):
            return values
        if values is None:
            return self.default_options()
        return settings.build(self.Options, values, f"job.formats.{self.name}")

    def default_options(self) -> Any:
        cached = self.__dict__.get("_default_options")
        if cached is None:
            cached = self.__dict__["_default_options"] = settings.build(self.Options, {}, f"job.formats.{self.name}")
        return cached

    def options_of(self, ctx: ParseContext | WriteContext) -> Any:
        """The typed options a plugin runs with (the defaults when the context carries none)."""
        return ctx.options if ctx.options is not None else self.default_options()

    @abc.abstractmethod
    def detect(self, sample: list[Any]) -> float:
        """Share (0..1) of the sample's decoded objects that look like this format."""

    @abc.abstractmethod
    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        """One decoded source object -> canonical rows. Raises RecordError when it can't."""

    @abc.abstractmethod
    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        """Canonical rows (as from RecordBatch.to_pylist()) -> encoded output elements."""

    def claims_document(self, head: bytes) -> bool:
        """Whether a file's first bytes are a document of this format's own that the read stage
        must plan with `plan_document` (COCO's one JSON object): False by default."""
        return False

    def plan_document(self, open_file: Any, part_bytes: int) -> list[tuple[str, int, int, int, int]] | None:
        """The parts to read of one file of the format, when it is a document read in parts:
        [(member, start, end, elements before, elements)], each a byte range of JSON-array
        elements (transforms/json_array.ArrayPart). None (the default): the file is planned by
        its layout (JSON lines, a JSON array of records, one JSON object)."""
        return None

    #: True for a format whose parts are joined before they are parsed (COCO: annotations to
    #: their image by image id): the normalize stage keys each part's elements (`key_elements`),
    #: resolves the small side table (`resolve_side`), groups by key and `join`s each group into
    #: the joined objects `parse` reads
    joins_documents: bool = False

    def fast_paths(self) -> list[FastPath]:
        """New instances of the format's fast paths, cheapest first (none by default): each takes
        the lines the one before declined; `parse` decides the rest."""
        return []

    def output_view(self, batch: Any, options: Any) -> Any:
        """The record batch as this format writes it, before its manifests are partitioned
        (e.g. a task the format writes in another form): the batch itself by default."""
        return batch

    def manifest_partitions(self, partition_by: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
        """The folders of this format's manifests: its own default when `partition_by` is None,
        else those columns and the ones its files cannot mix (an AutoML file holds one task)."""
        required = self.required_partition_columns + (("task",) if self.one_task_per_file else ())
        if partition_by is None:
            return self.partition_columns or (("split", "task") if self.one_task_per_file else ("split",))
        chosen = tuple(partition_by)
        return chosen + tuple(dict.fromkeys(name for name in required if name not in chosen))

    def source_fields(self, extra: dict) -> dict[str, Any]:
        """The source record's own fields the schema has no column for, found in the row's
        parsed `extra` (e.g. a `split` or `group` field of a line): empty by default."""
        return {}

    def needs_class_names(self, options: Any) -> bool:
        """Whether the write stage must first collect the output's class names for this writer
        (a pass that waits for every record): not when the options pin the class list."""
        return self.uses_class_names

    def objects_in(self, element: Any) -> int | None:
        """The objects one decoded written element holds, in the units the writer counts in
        WriteContext.objects_written; None when the format does not count objects."""
        return None

    def records_in_file(self, handle: Any, size: int) -> int:
        """The records one of its written documents (`document` layout) holds, read from the
        file: run.json counts what landed."""
        raise NotImplementedError(f"{self.name} writes no documents")

    def objects_in_file(self, handle: Any) -> int | None:
        """The objects one of its written documents holds, read from the file, in the units of
        WriteContext.objects_written; None when the format does not count objects."""
        return None

    def side_files(self, summaries: list[dict], classes: list[str] | None) -> dict[str, bytes]:
        """Files written once beside the manifests (name -> content), from every file's
        WriteContext.summary: e.g. the labeling config matching the tasks written. None by default."""
        return {}


class OutputFormat(ManifestFormat):
    """A format labelbeam writes and never reads (coco, yolo, jsonl): never detected, not
    offered by --format, and a parse of it is a coded dead letter."""

    readable = False

    def detect(self, sample: list[Any]) -> float:
        return 0.0

    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        raise RecordError(UNKNOWN_FORMAT, f"{self.name} is written, not read")


class UnknownFormatError(ValueError):
    pass


_REGISTRY: dict[str, ManifestFormat] = {}


def register(cls: type[ManifestFormat]) -> type[ManifestFormat]:
    """Class decorator: adds a format to the registry; a second one of a name is refused."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY:
        raise ValueError(f"format {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def get_format(name: str) -> ManifestFormat:
    if name not in _REGISTRY:
        _load_format_module(name)
    if name not in _REGISTRY:
        _load_builtin_formats()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownFormatError(
            f"unknown format {name!r}; known formats: {', '.join(format_names())}"
        ) from None


def format_names() -> list[str]:
    _load_builtin_formats()
    return sorted(_REGISTRY)


def input_format_names() -> list[str]:
    """The formats --format may name: those that read manifests."""
    _load_builtin_formats()
    return sorted(name for name, fmt in _REGISTRY.items() if fmt.readable)


def detect_format(sample: list[Any]) -> str | None:
    """The registered format that claims the largest share of the sample, if any claims it."""
    _load_builtin_formats()
    best, best_score = None, 0.0
    for name in input_format_names():
        score = _REGISTRY[name].detect(sample)
        if score > best_score:
            best, best_score = name, score
    return best


def document_format(head: bytes) -> str | None:
    """The readable format that claims a file's first bytes as a document of its own, if any."""
    _load_builtin_formats()
    for name in input_format_names():
        if _REGISTRY[name].claims_document(head):
            return name
    return None


def _load_builtin_formats() -> None:
    """Every module of transforms/formats/ (but base and _private ones) registers its format on import."""
    import transforms.formats as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "base" and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")


def _load_format_module(name: str) -> None:
    """The module of transforms/formats/ named as the format, alone (the built-in formats are
    named as their modules); nothing when there is no such module."""
    if not name.isidentifier() or name.startswith("_") or name == "base":
        return
    try:
        importlib.import_module(f"transforms.formats.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"transforms.formats.{name}":
            raise


def resolve_reference(base_uri: str, ref: str) -> str:
    """Relative refs resolve against base_uri; URLs and absolute paths stay as written."""
    if not ref or "://" in ref or ref.startswith("/") or not base_uri:
        return ref
    scheme, rest = storage.split_url(base_uri)
    joined = posixpath.normpath(posixpath.join(rest, ref))
    return f"{scheme}://{joined}" if scheme else joined


def iter_or_raise(items: Iterable[Any], what: str) -> Iterable[Any]:
    """Iterate a JSON value that must be a list; a wrong type is a record error."""
    if not isinstance(items, list):
        raise RecordError(INVALID_FIELD_TYPE, f"{what} must be a list, got {type(items).__name__}")
    return items

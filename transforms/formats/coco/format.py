"""The COCO plugin: reading (a document planned in parts, joined by image id: read.py) and
writing (parts, their assembly into one document per split and origin, and the counting of
what landed)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from transforms import errors
from transforms.errors import RecordError
from transforms.formats.base import ManifestFormat, ParseContext, Parsed, WriteContext, register
from transforms.formats.coco import read
from transforms.formats.coco.assemble import (
    assemble,
    document_name,
    objects_in_file,
    output_categories,
    records_in_file,
)
from transforms.formats.coco.document import PREDICTION, CocoDocument, CocoOptions
from transforms.partitions import partition_values


@register
class CocoFormat(ManifestFormat):
    """COCO instances JSON and results files, read and written."""

    name = "coco"
    extension = ".json"
    file_layout = "document"
    uses_class_names = True
    copied_image_reference = "split"  # file_name relative to images/<split>/ (--copy_images)
    partition_columns = ("split", "origin")
    required_partition_columns = ("origin",)  # predictions never share a file with ground truth
    joins_documents = True
    Options = CocoOptions

    def detect(self, sample: list[Any]) -> float:
        """A whole instances document, or the elements of a results file."""
        if not sample:
            return 0.0
        return sum(1 for obj in sample if read.looks_like_document(obj) or read.looks_like_result(obj)) / len(sample)

    def claims_document(self, head: bytes) -> bool:
        return read.claims_head(head)

    def plan_document(self, open_file, part_bytes: int):
        return read.plan_document(open_file, part_bytes)

    def key_elements(self, batch) -> tuple[list, list, list, dict]:
        return read.key_batch(batch)

    def resolve_side(self, key, elements: list) -> tuple[dict, list, dict]:
        return read.resolve_category(key, elements)

    def join(self, key, elements: list, side: dict):
        return read.join_image(key, elements, side)

    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        """A joined object (an image with its annotations and their categories) -> its row."""
        if not read.is_joined(obj):
            raise RecordError(errors.INVALID_FIELD_TYPE, "a COCO record is an image joined to its annotations (read a COCO file, not one of its entries)")
        try:
            return Parsed([read.record_of(obj, ctx.resolve)])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RecordError(errors.INVALID_FIELD_TYPE, f"a COCO entry does not fit: {type(exc).__name__}: {exc}") from None

    def needs_class_names(self, options: Any) -> bool:
        return False  # category ids are given at assembly, from the names the parts carry

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        raise NotImplementedError("coco writes whole documents: see open_document")

    def open_document(self, handle, options: CocoOptions, classes: list[str] | None = None, summary: dict | None = None) -> CocoDocument:
        return CocoDocument(handle, options, classes, summary)

    def document_name(self, partition: str) -> str:
        return document_name(partition)

    def assemble_documents(self, documents: list[tuple[str, list[tuple[Callable[[], Any], dict]]]], options: CocoOptions, open_output: Callable[[str], Any]) -> None:
        """Every partition's parts -> its one document (the write stage's finalize step)."""
        options = self.options(options)
        categories = output_categories([summary for _, parts in documents for _, summary in parts], options)
        for partition, parts in documents:
            with open_output(partition) as out:
                assemble(out, parts, categories, results=partition_values(partition).get("origin") == PREDICTION)

    def records_in_file(self, handle, size: int) -> int:
        return records_in_file(handle, size)

    def objects_in_file(self, handle) -> int:
        return objects_in_file(handle)  # one annotation an object (a region's linked points in its annotation)

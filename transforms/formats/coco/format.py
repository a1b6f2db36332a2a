"""The COCO plugin: what the write stage asks of the format (parts, their assembly into one
document per split and origin, and the counting of what landed)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from transforms.formats.base import OutputFormat, WriteContext, register
from transforms.formats.coco.assemble import assemble, document_name, output_categories, records_in_file
from transforms.formats.coco.document import PREDICTION, CocoDocument, CocoOptions
from transforms.partitions import partition_values


@register
class CocoFormat(OutputFormat):
    """COCO instances JSON (output only)."""

    name = "coco"
    extension = ".json"
    file_layout = "document"
    uses_class_names = True
    copied_image_reference = "split"  # file_name relative to images/<split>/ (--copy_images)
    partition_columns = ("split", "origin")
    required_partition_columns = ("origin",)  # predictions never share a file with ground truth
    Options = CocoOptions


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

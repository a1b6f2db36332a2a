"""The pixels of a record's semantic mask PNG, for the writers that have a form for them.

The file checks (CheckFiles) decode each mask once to count its classes; the record carries
those counts (`mask.class_pixels`), not the pixels. A writer that writes the pixels (COCO RLE,
Label Studio brush RLE, Azure polygons) reads the PNG again here, with the same decoder, bounds,
alpha rule and colour match (transforms/checks/masks.class_masks), and only when the file
checks opened it (`mask.validated`): a mask outside the allowed roots, missing or corrupt is
never opened by a writer. docs/architecture.md says why the pixels are not carried.

A mask that cannot be written is refused as one more object of its record: object index
`len(objects)` (transforms/errors.object_dead_letter), code MASK_NOT_WRITTEN; the image is
written with its other labels.
"""

from __future__ import annotations

import dataclasses

from transforms import errors, storage
from transforms.checks import masks
from transforms.checks.masks import ClassMasks, MaskRejected

# bytes read at most per mask pixel declared (the file checks' bound: transforms/file_checks.py)
_MAX_BYTES_PER_PIXEL = 5


@dataclasses.dataclass
class MaskReader:
    """Opens validated masks with the job's storage and the file checks' mask policy."""

    policy: masks.MaskPolicy = dataclasses.field(default_factory=masks.MaskPolicy)
    store: storage.Storage = dataclasses.field(default_factory=storage.Storage)
    #: record id -> the mask reference as the file checks opened it, for rows whose written
    #: reference was rewritten (--uri_map / --relative_output) before the writer reads the mask
    sources: dict = dataclasses.field(default_factory=dict)

    def with_sources(self, rows: list[dict]) -> "MaskReader":
        """This reader, remembering the mask references of `rows` as they are now."""
        found = {row.get("record_id"): row["mask"]["uri"] for row in rows if has_mask(row)}
        return dataclasses.replace(self, sources=found) if found else self

    def read(self, row: dict) -> ClassMasks:
        """The record's mask split by class; raises MaskRejected(MASK_NOT_WRITTEN, why)."""
        mask = row.get("mask") or {}
        uri = self.sources.get(row.get("record_id")) or mask.get("uri")
        if not mask.get("validated"):
            raise MaskRejected(
                errors.MASK_NOT_WRITTEN,
                f"mask {storage.redact_url(uri or '')} was not opened by the file checks (missing, unreadable, "
                "outside the allowed roots, or mask validation off): its pixels are unknown",
            )
        try:
            data = self._fetch(uri)
            decoded = masks.class_masks(data, mask.get("color_map"), self.policy)
        except MaskRejected as exc:
            raise MaskRejected(errors.MASK_NOT_WRITTEN, f"mask {storage.redact_url(uri)}: {exc.finding.code}: {exc.finding.message}") from None
        except Exception as exc:  # noqa: BLE001 - a file that fails at write time refuses the mask, never the job
            reason = storage.failure_reason(exc) or type(exc).__name__
            raise MaskRejected(errors.MASK_NOT_WRITTEN, storage.redact_url(f"mask {uri}: cannot read: {reason}: {exc}")[:500]) from None
        expected = _pixels_by_class(mask.get("class_pixels"))
        found = {name: int(m.sum()) for name, m in decoded.masks.items()}
        if expected is not None and expected != found:
            raise MaskRejected(
                errors.MASK_NOT_WRITTEN,
                f"mask {storage.redact_url(uri)} changed since the file checks: {found} pixels by class now, {expected} then",
            )
        return decoded

    def _fetch(self, uri: str) -> bytes:
        with self.store.open(uri, "rb") as f:
            head = f.read(masks.HEADER_BYTES)
            width, height = masks.png_size(head)
            masks.check_size_bound(width, height, self.policy.max_pixels)
            bound = max(1 << 20, width * height * _MAX_BYTES_PER_PIXEL)
            rest = f.read(bound + 1)
            if len(rest) > bound:
                raise MaskRejected(errors.MASK_TOO_LARGE, f"more than {bound} bytes for {width}x{height}")
            return head + rest


def _pixels_by_class(class_pixels: list[dict] | None) -> dict[str, int] | None:
    """The record's per-class counts, summed by name, without empty classes."""
    if class_pixels is None:
        return None
    out: dict[str, int] = {}
    for entry in class_pixels:
        if entry.get("pixels"):
            out[entry["class_name"]] = out.get(entry["class_name"], 0) + int(entry["pixels"])
    return out


def has_mask(row: dict) -> bool:
    return bool((row.get("mask") or {}).get("uri"))


def reader_of(ctx) -> MaskReader:
    """The context's reader (the job's storage and mask policy), or defaults (unit tests)."""
    reader = getattr(ctx, "masks", None)
    return reader if reader is not None else _DEFAULT


def refuse_mask(ctx, row: dict, message: str, code: str = errors.MASK_NOT_WRITTEN) -> None:
    """The mask alone is refused: an object refusal at index len(objects)."""
    ctx.reject_object(row, len(row.get("objects") or []), code, message)


_DEFAULT = MaskReader()

"""SplitAssigner: a deterministic train / validation / test split from a hash of the image URI.

The same image always lands in the same split, in every run and on every worker, so records of
one image never leak across splits and re-running a job does not reshuffle a dataset. The hash
is of the URI normalized (split_key), so the spellings of one image that different tools write
(an S3 https URL and s3://, file:// and a path, `./` segments, percent-escapes, a presigned
URL's query) land together. With `by="group"` the hash is of the image's group (its folder, or
a field of its source records), so near-duplicates that share a group share a split; with
`keep_input`, a split the input gives wins (transforms/split_rules.py has the precedence).
Every rule is a function of the record alone. Beam-free; transforms/stages/split.py applies it
to every batch.
"""

from __future__ import annotations

import bisect
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.schema import SCHEMA
from transforms.split_rules import (
    BY_GROUP,
    BY_IMAGE,
    GROUP_ATTRIBUTE,
    GROUP_FOLDER,
    INPUT_SPLIT_FIELD,
    InputSplits,
    folder_of,
    group_value,
    source_fields,
    split_key,
    split_keys,
)


class SplitAssigner:
    """Maps a key to a split name by where its hash falls in [0, 1); a batch's rows to their
    split by the rules of transforms/split_rules.py."""

    def __init__(self, ratios: dict[str, float], salt: str = "", by: str = BY_IMAGE, group: str = GROUP_FOLDER, keep_input: bool = False):
        self.names = list(ratios)
        self.salt = salt.encode()
        self.by = by
        self.group = group
        self.keep_input = keep_input
        self.input_splits = InputSplits(self.names)
        bounds, running = [], 0.0
        for value in ratios.values():
            running += value
            bounds.append(running)
        bounds[-1] = 1.0
        self.bounds = bounds

    def assign(self, key: str) -> str:
        digest = hashlib.blake2b(self.salt + key.encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / 2**64
        return self.names[min(bisect.bisect_right(self.bounds, point), len(self.names) - 1)]

    def _reads_fields(self) -> bool:
        return self.keep_input or (self.by == BY_GROUP and self.group.startswith(GROUP_ATTRIBUTE))

    def split_of(self, uri: str | None, record_id: str, fields: dict, source: str | None = None) -> str:
        """One record's split: a split its input gives (keep_input: a field, the input file's
        name, an image folder), else the hash of its group (by group, when it has one), else
        the hash of its image."""
        image = split_key(uri) if uri else None
        if self.keep_input:
            given = self.input_splits.from_field(fields.get(INPUT_SPLIT_FIELD))
            if given is None:
                given = self.input_splits.from_file_name(source)
            if given is None and image is not None:
                given = self.input_splits.from_folders(image)
            if given is not None:
                return given
        if self.by == BY_GROUP:
            group = self._group_of(image, fields)
            if group is not None:
                return self.assign(f"group\x00{group}")
        return self.assign(image if image is not None else record_id)

    def _group_of(self, image: str | None, fields: dict) -> str | None:
        if self.group == GROUP_FOLDER:
            return folder_of(image) if image is not None else None
        return group_value(fields.get(self.group[len(GROUP_ATTRIBUTE):]))

    def assign_keys(self, keys: list[str]) -> pa.Array:
        """`assign` of every key, the arithmetic in numpy: one hash per key is the only Python."""
        salt, blake2b = self.salt, hashlib.blake2b
        digests = b"".join([blake2b(salt + key.encode(), digest_size=8).digest() for key in keys])
        # uint64 -> float64 rounds to nearest even, as int / 2**64 does: the same point as assign()
        points = np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64
        chosen = np.minimum(np.searchsorted(self.bounds, points, side="right"), len(self.names) - 1)
        return pc.dictionary_encode(pc.take(pa.array(self.names, pa.string()), pa.array(chosen)))

    def assign_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self.by == BY_IMAGE and not self.keep_input:  # the default: one hash per image, by column
            keys = split_keys(pc.struct_field(batch.column("image"), "uri"))
            if not all(keys):  # no image URI: the record's own id keeps it stable
                ids = batch.column("record_id").to_pylist()
                keys = [key or rid for key, rid in zip(keys, ids)]
            column = self.assign_keys(keys).cast(SCHEMA.field("split").type)
            return batch.set_column(SCHEMA.get_field_index("split"), "split", column)
        uris = pc.struct_field(batch.column("image"), "uri").to_pylist()
        ids = batch.column("record_id").to_pylist()
        if self._reads_fields():
            formats = pc.struct_field(batch.column("source"), "format").to_pylist()
            fields = [source_fields(f, e) for f, e in zip(formats, batch.column("extra").to_pylist())]
        else:
            fields = [{}] * batch.num_rows
        sources = pc.struct_field(batch.column("source"), "uri").to_pylist() if self.keep_input else [None] * batch.num_rows
        names = [self.split_of(uri, rid, found, source) for uri, rid, found, source in zip(uris, ids, fields, sources)]
        column = pa.array(names, type=SCHEMA.field("split").type)
        return batch.set_column(SCHEMA.get_field_index("split"), "split", column)

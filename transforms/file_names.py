"""Names of the files labelbeam writes beside the labels (YOLO's label files, copied images):
one rule, so an image and its label file pair up by stem."""

from __future__ import annotations

import hashlib
import posixpath

MAX_STEM_BYTES = 200  # a file name's limit is 255 bytes on most file systems and stores


def image_stem(uri: str) -> str:
    """The file name of an image reference without its extension (what a label file is named).
    Control characters become `_`; a name too long for a file system keeps its first 100
    characters and a hash of the rest."""
    name = posixpath.basename(uri.split("?", 1)[0].replace("\\", "/").rstrip("/")) or "image"
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    stem = "".join("_" if ord(c) < 32 or c in "\x7f\\" else c for c in stem).strip() or "image"
    if stem in (".", ".."):
        stem = "image"
    if len(stem.encode()) > MAX_STEM_BYTES:
        stem = f"{stem[:100]}__{hashlib.blake2b(stem.encode(), digest_size=5).hexdigest()}"
    return stem

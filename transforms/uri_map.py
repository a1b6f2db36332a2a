"""How image and mask references are written into manifests: prefix rewrites (`--uri_map
FROM=TO`) and references relative to a base (`--relative_output BASE`). Beam-free.

Records keep the references as they were resolved when read (absolute paths and URLs: the ones
the workers checked); only the manifests written from them are rewritten, the same way in every
output format. The map applies first, then the base:

- `--uri_map FROM=TO` (repeatable): a reference that starts with FROM, on whole path segments,
  gets TO instead; the longest matching FROM wins; a bare scheme (`s3://`) matches every URL of
  it. E.g. `/home/me/data=s3://bucket/data`, or `s3://bucket/images=azureml://datastores/images/paths/images`
  for Azure ML's datastores.
- `--relative_output BASE`: a reference under BASE (a folder path or URL, on whole path
  segments) is written relative to it: `/home/me/data/training-images/anomaly-1.jpg` with BASE
  `/home/me/data` -> `training-images/anomaly-1.jpg`. References elsewhere stay absolute.
"""

from __future__ import annotations

import os
from typing import Any

from transforms.settings import SettingError

# the columns of a record that hold references to files, as (struct column, field)
REFERENCE_FIELDS = (("image", "uri"), ("mask", "uri"))


def parse_uri_map(value: Any) -> list[str]:
    """'FROM=TO', ['FROM=TO', ...] or {FROM: TO} -> ['FROM=TO', ...], each checked (the first
    '=' separates: a FROM holds none, a TO may)."""
    if isinstance(value, dict):
        items = [f"{old}={new}" for old, new in value.items()]
    else:
        items = [str(item) for item in (value if isinstance(value, (list, tuple)) else [value])]
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise SettingError(f"takes FROM=TO (a reference prefix and its replacement), got {item!r}")
    return [item.strip() for item in items]


def _prefix(text: str) -> str:
    """A prefix without its trailing slash, but a bare scheme (`s3://`) kept whole."""
    return text if text.endswith("://") else text.rstrip("/")


class UriMap:
    """Reference prefix rewrites (FROM -> TO); longest FROM wins; whole path segments only."""

    def __init__(self, pairs: Any = None):
        if isinstance(pairs, dict):
            pairs = list(pairs.items())
        rules = []
        for pair in pairs or ():
            if isinstance(pair, str) and "=" in pair:
                pair = pair.split("=", 1)
            if len(pair) != 2 or not all(isinstance(p, str) and p for p in pair):
                raise ValueError(f"a URI map wants (FROM, TO) pairs of strings, got {pair!r}")
            rules.append((_prefix(pair[0]), _prefix(pair[1])))
        self.rules = sorted(rules, key=lambda rule: len(rule[0]), reverse=True)

    def rewrite(self, uri: str) -> str:
        for old, new in self.rules:
            if uri == old or uri.startswith(old + "/"):
                return new + uri[len(old):]
            if old.endswith("://") and uri.startswith(old):  # a scheme alone: s3:// -> ...
                return new.rstrip("/") + "/" + uri[len(old):]
        return uri

    def __bool__(self) -> bool:
        return bool(self.rules)


def output_base(base: str | None) -> str | None:
    """The base of --relative_output as references are spelled in records: a local folder
    absolute (records hold absolute paths), a URL as written; without a trailing slash."""
    if not base:
        return None
    if base.startswith("file://"):
        base = base[len("file://"):]
    if "://" not in base:
        base = os.path.abspath(os.path.expanduser(base))
    return _prefix(base)


class References:
    """The uri map, then the relative base, applied to the references of rows about to be
    written (transforms/stages/write.py). Images copied beside the labels (--copy_images) are
    written the way their format reads them (`for_copies`), before either applies."""

    def __init__(self, uri_map: list[str] | None = None, relative_to: str | None = None):
        self.map = UriMap(uri_map or [])
        self.base = output_base(relative_to)
        self.copies: tuple[str, str] | None = None

    def __bool__(self) -> bool:
        return bool(self.map) or self.base is not None or self.copies is not None

    def for_copies(self, folder: str, how: str | None) -> "References":
        """These rules, plus: a reference to a copy under `folder` (the published images/
        folder, `<folder>/<split>/<name>`, or `<folder>/<name>` when not per split) is written as
        `<name>` (how "split": COCO's file_name, relative to its split's image folder) or
        `./images/<split>/<name>` (how "output": relative to the format's folder, as YOLO's
        lists are); how None: as it is."""
        if how is None:
            return self
        if how not in ("split", "output"):
            raise ValueError(f"a copied image is written relative to 'split' or 'output', not {how!r}")
        chosen = References()
        chosen.map, chosen.base, chosen.copies = self.map, self.base, (folder.rstrip("/"), how)
        return chosen

    def rewrite(self, uri: str | None) -> str | None:
        if not uri:
            return uri
        if self.copies is not None and uri.startswith(self.copies[0] + "/"):
            folder, how = self.copies
            within = uri[len(folder) + 1:]
            return within.split("/", 1)[-1] if how == "split" else f"./{folder.rsplit('/', 1)[-1]}/{within}"
        uri = self.map.rewrite(uri)
        if self.base is not None:
            local = uri[len("file://"):] if uri.startswith("file:///") else uri
            if local.startswith(self.base + "/"):
                return local[len(self.base) + 1:]
        return uri

    def apply(self, rows: list[dict]) -> list[dict]:
        """Rewrites each row's image and mask reference in place; returns the rows."""
        for row in rows:
            for column, field in REFERENCE_FIELDS:
                value = row.get(column)
                if value and value.get(field):
                    value[field] = self.rewrite(value[field])
        return rows

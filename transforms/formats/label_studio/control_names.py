"""Control names in written tasks: one name per (source name, result type), so that the
labeling_config.xml written beside the tasks has one control per name.

Sources outside a Label Studio project (ML back ends, hand-made imports) often name every
result `label` whatever its type; a labeling config holding a RectangleLabels and a
KeyPointLabels both named `label` is one a client reads as either (label-studio-sdk's Converter
then finds no keypoint order). The name a result is written with is a function of its own
(source name, type) alone, so every task of every worker agrees without seeing the others:

- a name keeps itself for its owner type (the writer's own names own theirs: `box` rectangles,
  `keypoint` keypoints...; every other name is owned by `rectanglelabels`);
- any other type is written as `<name>__<type>`, and so is the owner type when the name already
  ends with `__<some type>` (no written name can then stand for two pairs).

The reader takes the suffix off (`source_name`), so a round trip gives the source's names back.
"""

from __future__ import annotations

SEPARATOR = "__"
DEFAULT_OWNER = "rectanglelabels"
# the names the writer gives results built from columns (regions.FROM_NAMES), with their type
_OWNERS = {"box": "rectanglelabels", "polygon": "polygonlabels", "keypoint": "keypointlabels", "brush": "brushlabels", "choice": "choices"}


def written_name(name: str, kind: str, kinds: frozenset[str] | set[str]) -> str:
    """The control name a result of type `kind` named `name` is written with (`kinds`: every
    result type that has a control, whose suffixes are reserved)."""
    owner = _OWNERS.get(name, DEFAULT_OWNER)
    if kind == owner and not any(name.endswith(SEPARATOR + k) for k in kinds):
        return name
    return f"{name}{SEPARATOR}{kind}"


def source_name(name: str, kind: str) -> str:
    """The source's name of a result written as `name` (inverse of written_name)."""
    suffix = SEPARATOR + kind
    return name[: -len(suffix)] if name.endswith(suffix) else name

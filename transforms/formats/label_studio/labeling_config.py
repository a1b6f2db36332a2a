"""labeling_config.xml, written beside the tasks: a Label Studio labeling config with a
control for every (from_name, type, to_name) the written tasks use, each listing its labels."""

from __future__ import annotations

from transforms.formats.label_studio.control_names import source_name, written_name

CONTROLS = "controls"
CONFIG_FILE = "labeling_config.xml"

# result type -> Label Studio control tag
_CONTROL_TAGS = {
    "rectanglelabels": "RectangleLabels", "rectangle": "Rectangle",
    "polygonlabels": "PolygonLabels", "polygon": "Polygon",
    "ellipselabels": "EllipseLabels", "ellipse": "Ellipse",
    "keypointlabels": "KeyPointLabels", "keypoint": "KeyPoint",
    "brushlabels": "BrushLabels", "brush": "Brush", "magicwand": "MagicWand",
    "choices": "Choices", "labels": "Labels", "textarea": "TextArea", "number": "Number",
    "rating": "Rating", "taxonomy": "Taxonomy", "datetime": "DateTime",
}  # fmt: skip


def with_control_name(result: dict) -> dict:
    """A result as written: its from_name unique to its type (control_names.written_name)."""
    kind, name = result.get("type"), result.get("from_name")
    if not isinstance(kind, str) or kind not in _CONTROL_TAGS or not isinstance(name, str):
        return result
    return {**result, "from_name": written_name(name, kind, _CONTROL_TAGS.keys())}


def with_source_name(result: dict) -> dict:
    """A result as read: the source's from_name back (inverse of with_control_name)."""
    kind, name = result.get("type"), result.get("from_name")
    if not isinstance(kind, str) or kind not in _CONTROL_TAGS or not isinstance(name, str):
        return result
    return {**result, "from_name": source_name(name, kind)}


def note_controls(task: dict, controls: dict) -> None:
    """(from_name, type, to_name, data key) -> label names, for every result of a written task."""
    image_key = next(iter(k for k, v in task["data"].items() if isinstance(v, str)), "image")
    for unit in [*task.get("annotations", []), *task.get("predictions", [])]:
        for result in unit.get("result") or []:
            kind = result.get("type")
            if kind not in _CONTROL_TAGS or not isinstance(result.get("from_name"), str):
                continue
            to_name = result.get("to_name") if isinstance(result.get("to_name"), str) else "image"
            key = (result["from_name"], kind, to_name, to_name if to_name in task["data"] else image_key)
            value = result.get("value") if isinstance(result.get("value"), dict) else {}
            names = value.get(kind) if kind.endswith("labels") or kind == "choices" else None
            controls.setdefault(key, set()).update(n for n in names or [] if isinstance(n, str))


def labeling_config(controls: dict) -> bytes:
    """The labeling config XML for the controls used (an Image per to_name, then the controls)."""
    from xml.sax.saxutils import quoteattr

    images = sorted({(to_name, key) for _, _, to_name, key in controls})
    lines = ["<View>"]
    lines += [f"  <Image name={quoteattr(name)} value={quoteattr('$' + key)}/>" for name, key in images]
    for (from_name, kind, to_name, _), labels in sorted(controls.items()):
        tag = _CONTROL_TAGS[kind]
        attrs = f"name={quoteattr(from_name)} toName={quoteattr(to_name)}"
        if kind == "choices":
            attrs += ' choice="multiple"'
        if kind.endswith("labels") or kind == "choices":
            child = "Choice" if kind == "choices" else "Label"
            lines.append(f"  <{tag} {attrs}>")
            # keypoints carry their position in COCO's keypoint list (what exporters read)
            index = (lambda i: f' model_index="{i}"') if kind == "keypointlabels" else (lambda i: "")
            lines += [f"    <{child} value={quoteattr(label)}{index(i)}/>" for i, label in enumerate(sorted(labels))]
            lines.append(f"  </{tag}>")
        else:
            lines.append(f"  <{tag} {attrs}/>")
    lines.append("</View>")
    return ("\n".join(lines) + "\n").encode()


def config_files(summaries: list[dict]) -> dict[str, bytes]:
    """Every written file's noted controls (WriteContext.summary), merged -> {CONFIG_FILE: xml}."""
    merged: dict = {}
    for summary in summaries:
        for key, labels in summary.get(CONTROLS, {}).items():
            merged.setdefault(key, set()).update(labels)
    return {CONFIG_FILE: labeling_config(merged)}

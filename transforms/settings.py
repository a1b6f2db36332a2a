"""Typed settings: dataclasses whose fields say their type, default, bounds and help once.

The job configuration (pipelines/config.py) and every format's own options are dataclasses built
with `setting()`. From the same declarations come: the conversion of YAML / flag values with one
error style (`job.read.shard_size: must be at least 1024 bytes, got '12'`), the command-line
flags, and the JSON Schema editors use to complete and check config files. Beam-free.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from typing import Any, Callable

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingError(ValueError):
    """A value that does not fit its setting; the message is one line for the user."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple | Callable[[], tuple] | None = None,
    size: bool = False,
    parse: Callable[[Any], Any] | None = None,
    schema: dict | None = None,
) -> Any:
    """A dataclass field with what the converter, the flags and the JSON Schema need to know.

    `flag` names the command-line flag (default: none); `size` reads '64MB'-style byte sizes;
    `parse` turns a flag's text (or a YAML value) into the field's value before type checks;
    `choices` may be a callable, for lists only known at run time (the registered formats).
    """
    metadata = {
        "help": help, "flag": flag, "minimum": minimum, "maximum": maximum,
        "choices": choices, "size": size, "parse": parse, "schema": schema,
    }
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_size(text: str | int) -> int:
    """'64MB', '512KB', '1.5GB', '4096' -> bytes (binary multiples, as storage tools count)."""
    if isinstance(text, bool):
        raise SettingError(f"not a size: {text!r}")
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise SettingError(f"not a size: {text!r} (examples: 4096, 512KB, 64MB, 1GB)")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit])


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingError(f"expected true or false, got {value!r}")


def parse_json_object(value: Any) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SettingError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingError("must be a JSON object")
    return value


def parse_pairs(value: Any, what: str = "KEY=VALUE") -> dict[str, str]:
    """'a=1,b=2', ['a=1', 'b=2'] or {'a': 1} -> {'a': '1', 'b': '2'}."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    items = value if isinstance(value, list) else [value]
    pairs: dict[str, str] = {}
    for item in items:
        for part in str(item).split(","):
            key, sep, text = part.partition("=")
            if not sep or not key.strip():
                raise SettingError(f"takes {what}, got {item!r}")
            pairs[key.strip()] = text.strip()
    return pairs


# -- conversion ------------------------------------------------------------------------------


def build(cls: type, values: dict | None, where: str) -> Any:
    """A dict (YAML, merged with flags) -> an instance of the settings dataclass `cls`."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise SettingError(f"{where}: must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(fields)
            raise SettingError(f"{where}: unknown setting {key!r}{hint} (known: {known})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name in values:
            kwargs[name] = convert(hints[name], field, values[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            flag = field.metadata.get("flag")
            raise SettingError(f"{where}.{name}" + (f" (--{flag})" if flag else "") + ": is required")
    try:
        return cls(**kwargs)
    except SettingError as exc:
        raise SettingError(f"{where}: {exc}") from None


def convert(kind: Any, field: dataclasses.Field | None, value: Any, where: str) -> Any:
    """One value -> the declared type, checked against the field's bounds and choices."""
    meta = field.metadata if field is not None else {}
    label = where + (f" (--{meta['flag']})" if meta.get("flag") else "")
    try:
        if meta.get("parse") is not None and value is not None:
            value = meta["parse"](value)
        if meta.get("size") and value is not None:
            value = parse_size(value)
        result = _typed(kind, value, where)
        _check_bounds(result, meta)
        return result
    except SettingError as exc:
        message = str(exc)
        if message.startswith(where):
            raise
        raise SettingError(f"{label}: {message}") from None
    except (TypeError, ValueError) as exc:
        raise SettingError(f"{label}: {exc}") from None


def _typed(kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _typed(inner[0], value, where)
    if dataclasses.is_dataclass(kind):
        return value if isinstance(value, kind) else build(kind, value, where)
    if kind is Any:
        return value
    if value is None:
        raise SettingError("must be set (null given)")
    if kind is bool:
        return parse_bool(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise SettingError(f"expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingError(f"expected an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise SettingError(f"expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SettingError(f"expected a number, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise SettingError(f"expected a string, got {value!r}")
        return value
    if origin is list:
        items = [value] if isinstance(value, str) or not isinstance(value, (list, tuple)) else list(value)
        converted = [_typed(args[0] if args else Any, item, where) for item in items]
        return list(dict.fromkeys(converted)) if args and args[0] is str else converted
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise SettingError(f"must be a mapping, got {value!r}")
        value_kind = args[1] if len(args) == 2 else Any
        return {str(k): _typed(value_kind, v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported setting type {kind!r}")


def _check_bounds(value: Any, meta: dict) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if callable(choices):
        choices = choices()
    values = value if isinstance(value, list) else [value]
    for item in values:
        if choices is not None and item not in choices:
            raise SettingError(f"{item!r} is not one of {', '.join(map(str, choices))}")
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if meta.get("minimum") is not None and item < meta["minimum"]:
                raise SettingError(f"must be at least {meta['minimum']:g}, got {item!r}")
            if meta.get("maximum") is not None and item > meta["maximum"]:
                raise SettingError(f"must be at most {meta['maximum']:g}, got {item!r}")


def as_dict(settings: Any) -> Any:
    """A settings dataclass -> plain dicts (for run.json and deep merges)."""
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return {f.name: as_dict(getattr(settings, f.name)) for f in dataclasses.fields(settings)}
    if isinstance(settings, dict):
        return {k: as_dict(v) for k, v in settings.items()}
    if isinstance(settings, (list, tuple)):
        return [as_dict(v) for v in settings]
    return settings


def deep_merge(cls: type, base: dict, update: dict) -> dict:
    """`update` over `base` for the settings dataclass `cls`: sections (nested settings) merge
    key by key, so a later config file wins per leaf; leaf mappings (split ratios, storage
    options) are replaced whole, as a user who writes one expects."""
    merged = dict(base or {})
    if not isinstance(update, dict):
        return update
    hints = typing.get_type_hints(cls)
    for key, value in update.items():
        kind = _without_none(hints[key]) if key in hints else None
        if dataclasses.is_dataclass(kind) and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(kind, merged[key], value)
        elif kind is not None and _is_section_map(kind) and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **{k: {**merged[key].get(k, {}), **v} if isinstance(v, dict) else v for k, v in value.items()}}
        else:
            merged[key] = value
    return merged


def _is_section_map(kind: Any) -> bool:
    """dict[str, <settings dataclass>]-like sections (per-format options) merge per entry."""
    args = typing.get_args(kind)
    return typing.get_origin(kind) is dict and len(args) == 2 and args[1] is dict


# -- flags and schema --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Flag:
    """A command-line flag and the settings path it writes."""

    name: str
    path: tuple[str, ...]
    help: str
    repeatable: bool
    boolean: bool
    choices: tuple | None
    default: Any


def flags_of(cls: type, prefix: tuple[str, ...] = ()) -> list[Flag]:
    """Every field with a `flag`, nested dataclasses included, in declaration order."""
    found = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = _without_none(hints[field.name])
        path = (*prefix, field.name)
        if field.metadata.get("flag"):
            choices = field.metadata.get("choices")
            found.append(
                Flag(
                    name=field.metadata["flag"],
                    path=path,
                    help=field.metadata.get("help", ""),
                    repeatable=typing.get_origin(kind) is list,
                    boolean=kind is bool,
                    choices=choices() if callable(choices) else choices,
                    default=_default_of(field),
                )
            )
        if dataclasses.is_dataclass(kind):
            found.extend(flags_of(kind, path))
    return found


def json_schema(cls: type, title: str | None = None) -> dict:
    """JSON Schema (draft 2020-12) of a settings dataclass, from the same declarations.

    Nothing is `required`: a config file is one layer, completed by other files and by flags;
    the launch check says what is missing once all are merged."""
    hints = typing.get_type_hints(cls)
    properties = {}
    for field in dataclasses.fields(cls):
        meta = field.metadata
        prop = dict(meta.get("schema") or _schema_of_type(_without_none(hints[field.name])))
        if _optional(hints[field.name]) and "type" in prop:
            prop = {"anyOf": [prop, {"type": "null"}]}
        if meta.get("size"):
            prop = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": _SIZE.pattern}]}
        prop["description"] = meta.get("help", "") + (f" (flag --{meta['flag']})" if meta.get("flag") else "")
        choices = meta.get("choices")
        choices = choices() if callable(choices) else choices
        if choices is not None:
            for variant in prop.get("anyOf", [prop]):
                if variant.get("type") != "null":
                    variant.get("items", variant)["enum"] = list(choices)
        for bound, key in (("minimum", "minimum"), ("maximum", "maximum")):
            if meta.get(bound) is not None and "type" in prop and prop["type"] in ("integer", "number"):
                prop[key] = meta[bound]
        default = _default_of(field)
        if default is not dataclasses.MISSING and not dataclasses.is_dataclass(default) and default is not None:
            prop["default"] = default
        properties[field.name] = prop
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if title:
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **schema}
    return schema


def _schema_of_type(kind: Any) -> dict:
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return json_schema(kind)
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer"}
    if kind is float:
        return {"type": "number"}
    if kind is str:
        return {"type": "string"}
    if origin is list:
        item = typing.get_args(kind)[0]
        return {"anyOf": [{"type": "array", "items": _schema_of_type(item)}, _schema_of_type(item)]}
    if origin is dict or kind is dict:
        args = typing.get_args(kind)
        values = _schema_of_type(args[1]) if len(args) == 2 and args[1] is not Any else {}
        return {"type": "object", "additionalProperties": values or True}
    return {}


def _without_none(kind: Any) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return inner[0]
    return kind


def _optional(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def url_list(value: Any) -> list[str]:
    """'a,b' or ['a', 'b,c'] -> ['a', 'b', 'c'] (comma-separated lists of URLs or names)."""
    items = value if isinstance(value, list) else [value]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]

"""The statistics engine: what a dataset holds, as small Arrow tables (stats/*.parquet), Beam-free.

ComputeStatistics (transforms/stages/stats.py) runs it as one CombineFn over the kept records'
RecordBatches and the dead letters. Each input is summarised with Arrow group-bys (no Python loop per record) into partial tables; merging
concatenates partials and groups again, so the accumulator stays as small as the number of
distinct keys (classes, files, codes, histogram bins), whatever the input size.

Distributions are fixed-bin histograms (log scale for sizes and fractions, one bin per value
for counts): a bin's counts add up under any merge order, so the tables are exact and equal
however the runner splits the work, and the quantiles read from them are within one bin of the
true ones (docs/statistics.md gives the bound). Derived columns (shares, means, quantiles,
bin edges, catalogue stage/group) are added once, by `finish`, after the last merge.

docs/statistics.md documents every table and column.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms import errors, storage
from transforms.schema import COL, FIELD

# Log-scale bins: bin b holds [10**(b/BINS_PER_DECADE), 10**((b+1)/BINS_PER_DECADE)).
BINS_PER_DECADE = 20
# Values at or below this (zero-size boxes) share the lowest bin.
LOG_FLOOR = 1e-10
LOG_MEASURES = ("box_width", "box_height", "box_area", "box_aspect", "image_width", "image_height", "mask_coverage")
COUNT_MEASURES = ("objects_per_image", "polygon_vertices")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# What a quantile read from a log-scale bin may be off by, as a factor (12.2%).
LOG_BIN_RATIO = 10 ** (1 / BINS_PER_DECADE)


@dataclasses.dataclass(frozen=True)
class _Table:
    keys: tuple[str, ...]
    measures: dict[str, str]  # column -> how partials merge: sum, min, max, first
    order: tuple[str, ...] = ()  # which row's `first` columns win: the smallest by these


_TABLES = {
    "summary": _Table(
        ("split", "task", "origin"),
        {
            "records": "sum", "labels": "sum", "objects": "sum", "issues": "sum", "masks": "sum",
            "images_with_size": "sum", "min_width": "min", "max_width": "max",
            "min_height": "min", "max_height": "max",
        },
    ),
    "classes": _Table(
        ("split", "task", "origin", "kind", "name"),
        {"count": "sum", "images": "sum", "scored": "sum", "score_sum": "sum"},
    ),
    "histograms": _Table(("measure", "name", "bin"), {"count": "sum", "sum": "sum", "min": "min", "max": "max"}),
    "masks": _Table(("split",), {"records": "sum", "masks": "sum", "validated": "sum", "measured": "sum"}),
    "annotation": _Table(
        ("job_name", "annotator", "human_annotated"),
        {"records": "sum", "first_created": "min", "last_created": "max"},
    ),
    "files": _Table(("uri", "format"), {"records": "sum", "labels": "sum", "objects": "sum", "warnings": "sum"}),
    "issues": _Table(
        ("split", "code", "severity", "uri"),
        {"count": "sum", "example_line": "first", "example_message": "first"},
        order=("example_line", "example_message"),
    ),
    "dead_letters": _Table(
        ("output", "stage", "code", "uri"),
        {"count": "sum", "example_line": "first", "example_message": "first", "example_raw": "first"},
        order=("example_line", "example_message", "example_raw"),
    ),
}
TABLES = tuple(_TABLES)


def _text(array) -> pa.Array:
    return pc.cast(array, pa.string()).fill_null("")


def _ones(n: int) -> pa.Array:
    return pa.array(np.ones(n, dtype=np.int64))


def _field(array, *path):
    for name in path:
        array = pc.struct_field(array, name)
    return array


def _regroup(name: str, table: pa.Table) -> pa.Table:
    """Groups a (concatenated) partial table by its keys again, merging the measures."""
    spec = _TABLES[name]
    keys = [(key, "ascending") for key in spec.keys]
    if spec.order:
        table = table.sort_by(keys + [(column, "ascending") for column in spec.order])
    grouped = table.group_by(list(spec.keys), use_threads=False).aggregate(list(spec.measures.items()))
    renamed = {f"{column}_{how}": column for column, how in spec.measures.items()}
    grouped = grouped.rename_columns([renamed.get(c, c) for c in grouped.column_names])
    return grouped.select([*spec.keys, *spec.measures]).sort_by(keys)


def summarise(batch: pa.RecordBatch) -> dict[str, pa.Table]:
    """One batch of canonical rows -> its partial tables, one row per measured thing; grouping
    waits for `merge` (a group-by has a fixed cost, paid once per _COMPACT_AT batches)."""
    n = batch.num_rows
    keys = {key: _text(batch.column(key)) for key in (COL.split, COL.task, COL.origin)}
    image, mask = batch.column(COL.image), batch.column(COL.mask)
    width, height = _field(image, FIELD.width), _field(image, FIELD.height)
    issues = pc.list_value_length(batch.column(COL.issues)).fill_null(0).cast(pa.int64())
    labels = pc.list_value_length(batch.column(COL.labels)).fill_null(0).cast(pa.int64())
    objects = pc.list_value_length(batch.column(COL.objects)).fill_null(0).cast(pa.int64())
    has_mask = pc.is_valid(_field(mask, FIELD.uri)).cast(pa.int64())
    per_row = pa.table(
        {
            **keys,
            "records": _ones(n), "labels": labels, "objects": objects, "issues": issues, "masks": has_mask,
            "images_with_size": pc.and_(pc.is_valid(width), pc.is_valid(height)).cast(pa.int64()),
            "min_width": width, "max_width": width, "min_height": height, "max_height": height,
        }
    )
    annotation = batch.column(COL.annotation)
    created = _field(annotation, FIELD.created_at)
    source = batch.column(COL.source)
    partials = {
        "summary": per_row,
        "classes": _classes(pa.concat_tables([
            _class_items(batch, keys, COL.labels, FIELD.name, "label"),
            _class_items(batch, keys, COL.objects, FIELD.label, "object"),
        ]), keys),
        "histograms": _histograms(batch, objects),
        "masks": pa.table({
            "split": keys[COL.split], "records": _ones(n), "masks": has_mask,
            "validated": pc.fill_null(_field(mask, FIELD.validated), False).cast(pa.int64()),
            "measured": pc.greater(pc.list_value_length(_field(mask, FIELD.class_pixels)).fill_null(0), 0).cast(pa.int64()),
        }),
        "annotation": pa.table({
            "job_name": _text(_field(annotation, FIELD.job_name)),
            "annotator": _text(_field(annotation, FIELD.annotator)),
            "human_annotated": _field(annotation, FIELD.human_annotated),
            "records": _ones(n), "first_created": created, "last_created": created,
        }),
        "files": pa.table({
            "uri": _text(_field(source, FIELD.uri)), "format": _text(_field(source, FIELD.format)),
            "records": _ones(n), "labels": labels, "objects": objects, "warnings": issues,
        }),
        "issues": _issues(batch, keys[COL.split]),
    }
    return partials


def _class_items(batch, keys, column, name_field, kind) -> pa.Table:
    """One row per label or region: its record's row, class, and score."""
    lists = batch.column(column)
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists)
    score = pc.struct_field(flat, FIELD.score)
    return pa.table(
        {
            **{key: pc.take(keys[key], parents) for key in keys},
            "kind": pa.repeat(pa.scalar(kind), len(flat)),
            "name": _text(pc.struct_field(flat, name_field)),
            "row": parents.cast(pa.int64()),
            "count": _ones(len(flat)),
            "scored": pc.is_valid(score).cast(pa.int64()),
            "score_sum": score.cast(pa.float64()).fill_null(0.0),
        }
    )


def _classes(items: pa.Table, keys) -> pa.Table:
    """`images` = 1 on the first item of each (record, kind, class), 0 on the others: found with
    numpy on integer codes (a group-by here would cost more than the rest of the batch)."""
    images = np.zeros(items.num_rows, np.int64)
    if items.num_rows:
        names = pc.dictionary_encode(items.column("name")).combine_chunks().indices.to_numpy().astype(np.int64)
        kinds = pc.equal(items.column("kind"), "object").combine_chunks().to_numpy(zero_copy_only=False).astype(np.int64)
        rows = items.column("row").combine_chunks().to_numpy()
        combined = (rows * 2 + kinds) * (int(names.max()) + 1) + names
        images[np.unique(combined, return_index=True)[1]] = 1
    return items.drop_columns(["row"]).append_column("images", pa.array(images)).select(
        [*keys, "kind", "name", "count", "images", "scored", "score_sum"]
    )


def _histograms(batch, objects_per_image) -> pa.Table:
    """Every measured value as (measure, name, bin, count, sum, min, max), ungrouped."""
    image = batch.column(COL.image)
    objects = batch.column(COL.objects)
    flat = pc.list_flatten(objects)
    parents = pc.list_parent_indices(objects)
    labels = _text(pc.struct_field(flat, FIELD.label))
    bbox = pc.struct_field(flat, FIELD.bbox)
    w = pc.subtract(_field(bbox, FIELD.x_max), _field(bbox, FIELD.x_min))
    h = pc.subtract(_field(bbox, FIELD.y_max), _field(bbox, FIELD.y_min))
    # Inverted and empty boxes (BBOX_INVERTED) have no size to measure.
    proper = pc.fill_null(pc.and_(pc.greater(w, 0), pc.greater(h, 0)), False)
    w, h = pc.if_else(proper, w, None), pc.if_else(proper, h, None)
    pixels_w = pc.multiply(w, pc.take(_field(image, FIELD.width), parents).cast(pa.float64()))
    pixels_h = pc.multiply(h, pc.take(_field(image, FIELD.height), parents).cast(pa.float64()))
    aspect = pc.if_else(pc.greater(pixels_h, 0), pc.divide(pixels_w, pixels_h), None)

    polygons = pc.struct_field(flat, FIELD.polygon)
    rings = pc.list_flatten(polygons)
    vertices = pc.divide(pc.list_value_length(rings).cast(pa.float64()), 2.0)
    ring_labels = pc.take(labels, pc.list_parent_indices(polygons))

    mask = batch.column(COL.mask)
    class_pixels = _field(mask, FIELD.class_pixels)
    per_class = pc.list_flatten(class_pixels)
    mask_rows = pc.list_parent_indices(class_pixels)
    mask_w = pc.coalesce(_field(mask, FIELD.width), _field(image, FIELD.width)).cast(pa.float64())
    mask_h = pc.coalesce(_field(mask, FIELD.height), _field(image, FIELD.height)).cast(pa.float64())
    area = pc.take(pc.multiply(mask_w, mask_h), mask_rows)
    coverage = pc.if_else(pc.greater(area, 0), pc.divide(pc.struct_field(per_class, FIELD.pixels).cast(pa.float64()), area), None)

    n = batch.num_rows
    everyone = pa.repeat(pa.scalar(""), n)
    parts = [
        ("box_width", labels, w), ("box_height", labels, h), ("box_area", labels, pc.multiply(w, h)),
        ("box_aspect", labels, aspect),
        ("image_width", everyone, _field(image, FIELD.width)), ("image_height", everyone, _field(image, FIELD.height)),
        ("objects_per_image", everyone, objects_per_image),
        ("polygon_vertices", ring_labels, vertices),
        ("mask_coverage", _text(pc.struct_field(per_class, FIELD.class_name)), coverage),
    ]
    tables = [_HISTOGRAM_SCHEMA.empty_table()]
    for measure, names, values in parts:
        if len(values) == values.null_count:  # nothing measured (e.g. no boxes): no table to build
            continue
        values = values.cast(pa.float64())
        if values.null_count:
            valid = pc.is_valid(values)
            values, names = pc.filter(values, valid), pc.filter(names, valid)
        tables.append(
            pa.table({
                "measure": pa.repeat(pa.scalar(measure), len(values)),
                "name": names, "bin": _bins(measure, values),
                "count": _ones(len(values)), "sum": values, "min": values, "max": values,
            })
        )
    return pa.concat_tables(tables)


_HISTOGRAM_SCHEMA = pa.schema([
    ("measure", pa.string()), ("name", pa.string()), ("bin", pa.int64()), ("count", pa.int64()),
    ("sum", pa.float64()), ("min", pa.float64()), ("max", pa.float64()),
])


def _bins(measure: str, values: pa.Array) -> pa.Array:
    array = values.to_numpy(zero_copy_only=False)
    if measure in COUNT_MEASURES:
        return pa.array(np.floor(array).astype(np.int64))
    logged = np.log10(np.maximum(array, LOG_FLOOR))
    return pa.array(np.floor(logged * BINS_PER_DECADE + 1e-9).astype(np.int64))


def _issues(batch, split) -> pa.Table:
    lists = batch.column(COL.issues)
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists)
    source = batch.column(COL.source)
    return pa.table(
        {
            "split": pc.take(split, parents),
            "code": _text(pc.struct_field(flat, FIELD.code)),
            "severity": _text(pc.struct_field(flat, FIELD.severity)),
            "uri": _text(pc.take(_field(source, FIELD.uri), parents)),
            "count": _ones(len(flat)),
            "example_line": pc.take(_field(source, FIELD.line), parents),
            "example_message": pc.struct_field(flat, FIELD.message),
        }
    )


_LETTER_SCHEMA = pa.schema([
    ("output", pa.string()), ("stage", pa.string()), ("code", pa.string()), ("uri", pa.string()), ("count", pa.int64()),
    ("example_line", pa.int64()), ("example_message", pa.string()), ("example_raw", pa.string()),
])


def summarise_dead_letters(letters: list[dict]) -> dict[str, pa.Table]:
    """Dead-letter dicts (errors.dead_letter) -> the dead_letters partial table."""
    rows = [
        {
            "output": letter.get("output") or "", "stage": letter.get("stage") or "", "code": letter.get("code") or "", "uri": letter.get("source_uri") or "",
            "count": 1, "example_line": letter.get("line"), "example_message": letter.get("message"),
            "example_raw": letter.get("raw"),
        }
        for letter in letters
    ]
    return {"dead_letters": _regroup("dead_letters", pa.Table.from_pylist(rows, schema=_LETTER_SCHEMA))}


def merge(partials: list[dict[str, pa.Table]]) -> dict[str, pa.Table]:
    partials = [p for p in partials if p]
    if not partials:
        return {}
    merged = {}
    for name in _TABLES:
        tables = [p[name] for p in partials if name in p]
        if tables:
            merged[name] = _regroup(name, pa.concat_tables(tables, promote_options="permissive"))
    return merged


def finish(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Merged tables -> the published ones: derived columns added, quantiles computed."""
    done = dict(tables)
    if "classes" in tables:
        done["classes"] = _finish_classes(tables["classes"], tables.get("summary"))
    if "histograms" in tables:
        done["histograms"] = _finish_histograms(tables["histograms"])
        done["quantiles"] = quantiles(tables["histograms"])
    for name in ("issues", "dead_letters"):
        if name in tables:
            done[name] = _with_catalogue(tables[name])
    return done


def _finish_classes(classes: pa.Table, summary: pa.Table | None) -> pa.Table:
    rows = classes.to_pylist()
    per_kind: dict = {}
    for row in rows:
        per_kind[(row["split"], row["kind"])] = per_kind.get((row["split"], row["kind"]), 0) + row["count"]
    records: dict = {}
    for row in (summary.to_pylist() if summary is not None else []):
        records[row["split"]] = records.get(row["split"], 0) + row["records"]
    share, image_share, mean = [], [], []
    for row in rows:
        share.append(row["count"] / per_kind[(row["split"], row["kind"])])
        image_share.append(row["images"] / records[row["split"]] if records.get(row["split"]) else None)
        mean.append(row["score_sum"] / row["scored"] if row["scored"] else None)
    return (
        classes.append_column("share", pa.array(share, pa.float64()))
        .append_column("image_share", pa.array(image_share, pa.float64()))
        .append_column("mean_score", pa.array(mean, pa.float64()))
    )


def bin_edges(measure: str, bin_index: int) -> tuple[float, float]:
    if measure in COUNT_MEASURES:
        return float(bin_index), float(bin_index + 1)
    return 10 ** (bin_index / BINS_PER_DECADE), 10 ** ((bin_index + 1) / BINS_PER_DECADE)


def _finish_histograms(histograms: pa.Table) -> pa.Table:
    edges = [bin_edges(m, b) for m, b in zip(histograms.column("measure").to_pylist(), histograms.column("bin").to_pylist())]
    return histograms.append_column("lower", pa.array([e[0] for e in edges], pa.float64())).append_column(
        "upper", pa.array([e[1] for e in edges], pa.float64())
    )


def quantiles(histograms: pa.Table) -> pa.Table:
    """Per (measure, name): count, mean, exact min/max, and QUANTILES read from the bins.

    The q-quantile is the value of rank ceil(q * count) (numpy's "inverted_cdf"); its estimate
    is the geometric middle of the part of its bin that holds values ([bin min, bin max]), so it
    lies in the same bin as the true value: exact for COUNT_MEASURES, within a factor
    LOG_BIN_RATIO for the log-scale ones.
    """
    groups: dict = {}
    for row in histograms.sort_by([("measure", "ascending"), ("name", "ascending"), ("bin", "ascending")]).to_pylist():
        groups.setdefault((row["measure"], row["name"]), []).append(row)
    out = []
    for (measure, name), bins in groups.items():
        total = sum(b["count"] for b in bins)
        cumulative = np.cumsum([b["count"] for b in bins])
        entry = {
            "measure": measure, "name": name, "count": total, "mean": sum(b["sum"] for b in bins) / total,
            "min": bins[0]["min"], "max": bins[-1]["max"],
        }
        for q in QUANTILES:
            rank = max(1, math.ceil(q * total))
            b = bins[int(np.searchsorted(cumulative, rank))]
            entry[f"p{round(q * 100):02d}"] = b["min"] if b["min"] == b["max"] or b["min"] <= 0 else math.sqrt(b["min"] * b["max"])
        out.append(entry)
    fields = [("measure", pa.string()), ("name", pa.string()), ("count", pa.int64()), ("mean", pa.float64()), ("min", pa.float64()), ("max", pa.float64())]
    fields += [(f"p{round(q * 100):02d}", pa.float64()) for q in QUANTILES]
    return pa.Table.from_pylist(out, schema=pa.schema(fields))


def _with_catalogue(table: pa.Table) -> pa.Table:
    """Adds the catalogue's stage (issues) and group of each code."""
    codes = table.column("code").to_pylist()
    known = [errors.CATALOGUE.get(code) for code in codes]
    if "stage" not in table.column_names:
        table = table.append_column("stage", pa.array([k.stage if k else "" for k in known], pa.string()))
    return table.append_column("group", pa.array([k.group if k else "" for k in known], pa.string()))


def write_table(store: storage.Storage, url: str, table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    store.write_atomically(url, sink.getvalue().to_pybytes())
    return url




# -- the accumulator: a list of partials, compacted every COMPACT_AT inputs -----------------
COMPACT_AT = 16


def add_input(accumulator: list, item) -> list:
    """A RecordBatch of kept records, or a list of dead-letter dicts, into the accumulator."""
    if isinstance(item, pa.RecordBatch):
        if item.num_rows:
            accumulator.append(summarise(item))
    elif item:
        accumulator.append(summarise_dead_letters(list(item)))
    if len(accumulator) >= COMPACT_AT:
        accumulator[:] = [merge(accumulator)]
    return accumulator


def add_partials(accumulator: list, partials: list) -> list:
    """Merged partials of another accumulator (one branch's) into this one."""
    accumulator.extend(partials)
    return compact(accumulator) if len(accumulator) >= COMPACT_AT else accumulator


def merge_accumulators(accumulators) -> list:
    return [merge([p for accumulator in accumulators for p in accumulator])]


def compact(accumulator: list) -> list:
    return [merge(accumulator)] if len(accumulator) > 1 else accumulator


def extract(accumulator: list) -> dict[str, pa.Table]:
    """The published tables: merged, derived columns added."""
    return finish(merge(accumulator))

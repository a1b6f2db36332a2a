"""Floor loops: the least a Python program must do for the same work as the job, knowing the
input's one shape in advance and checking nothing. Kept apart from the job's imports, so a
process that runs one pays for orjson, pyarrow or Pillow only.

    python -m benchmarks.floor lookout MANIFEST OUT_FOLDER    # -> OUT_FOLDER/floor.parquet
    python -m benchmarks.floor masks MANIFEST OUT_FOLDER      # -> OUT_FOLDER/count

- lookout: orjson per line, the fields of a Lookout for Vision line, Arrow columns, one
  Parquet file.
- masks: for every `anomaly-mask-ref` of a Lookout for Vision manifest, Pillow's open, load,
  getcolors (as benchmarks/masks_throughput.py `bare`), one process, one thread.
"""

from __future__ import annotations

import os
import sys

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

_FLOOR_SCHEMA = pa.schema(
    [
        ("source_ref", pa.string()),
        ("line", pa.int64()),
        ("class_name", pa.string()),
        ("confidence", pa.float32()),
        ("job_name", pa.string()),
        ("human_annotated", pa.bool_()),
        ("created_at", pa.string()),
        ("mask_ref", pa.string()),
    ]
)


def floor(manifest: str, out: str, batch_lines: int = 65536) -> int:
    """orjson per line, this shape's fields into column lists, Arrow arrays, one Parquet file."""
    os.makedirs(out, exist_ok=True)
    total = 0
    with open(manifest, "rb") as handle, pq.ParquetWriter(os.path.join(out, "floor.parquet"), _FLOOR_SCHEMA, compression="zstd") as writer:
        columns: list[list] = [[] for _ in _FLOOR_SCHEMA]
        refs, lines, names, scores, jobs, humans, dates, masks = columns
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            obj = orjson.loads(line)
            meta = obj["anomaly-label-metadata"]
            refs.append(obj["source-ref"])
            lines.append(number)
            names.append(meta["class-name"])
            scores.append(meta.get("confidence"))
            jobs.append(meta.get("job-name"))
            humans.append(meta.get("human-annotated") == "yes")
            dates.append(meta.get("creation-date"))
            masks.append(obj.get("anomaly-mask-ref"))
            if len(refs) >= batch_lines:
                total += _flush_floor(writer, columns)
        total += _flush_floor(writer, columns)
    return total


def _flush_floor(writer, columns) -> int:
    n = len(columns[0])
    if n:
        arrays = [pa.array(values, field.type) for values, field in zip(columns, _FLOOR_SCHEMA)]
        writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=_FLOOR_SCHEMA))
        for values in columns:
            values.clear()
    return n


def masks(manifest: str, out: str) -> int:
    """Opens, decodes and counts the colours of every mask the manifest names."""
    from PIL import Image

    with open(manifest, "rb") as handle:
        paths = [orjson.loads(line)["anomaly-mask-ref"] for line in handle if line.strip()]
    seen = 0
    for path in paths:
        with Image.open(path) as image:
            image.load()
            seen += bool(image.getcolors())
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "count"), "w") as handle:
        handle.write(str(seen))
    return seen


if __name__ == "__main__":
    kind, source, target = sys.argv[1:4]
    {"lookout": floor, "masks": masks}[kind](source, target)

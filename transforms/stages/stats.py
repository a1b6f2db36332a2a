"""ComputeStatistics: what a dataset holds, as small Parquet tables under stats/.

The engine (summaries per batch, merges, histograms, quantiles) is Beam-free:
transforms/statistics.py, documented table by table in docs/statistics.md. This module wires it
as CombineFns over the kept records' RecordBatches and the dead letters, and writes the tables.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from transforms import statistics, storage
from transforms.statistics import BINS_PER_DECADE, COUNT_MEASURES, LOG_FLOOR, bin_edges, write_table  # noqa: F401 - read by the report

__all__ = ["BINS_PER_DECADE", "COUNT_MEASURES", "LOG_FLOOR", "ComputeStatistics", "StatisticsCombineFn", "bin_edges", "write_table"]


class StatisticsCombineFn(beam.CombineFn):
    """RecordBatches and lists of dead-letter dicts -> {table name: pa.Table}; the accumulator
    is a list of partials, compacted every statistics.COMPACT_AT inputs."""

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, item):
        return statistics.add_input(accumulator, item)

    def merge_accumulators(self, accumulators):
        return statistics.merge_accumulators(accumulators)

    def compact(self, accumulator):
        return statistics.compact(accumulator)

    def extract_output(self, accumulator):
        return statistics.extract(accumulator)


class _Partials(StatisticsCombineFn):
    """The same combine, stopped before `finish`: its output is the merged partial of one
    branch (records, or dead letters), a small value the two branches can meet as."""

    def extract_output(self, accumulator):
        return self.compact(accumulator)


class _FinishPartials(StatisticsCombineFn):
    """Branch partials -> the tables."""

    def add_input(self, accumulator, partials):
        return statistics.add_partials(accumulator, partials)


class _WriteStatisticsFn(beam.DoFn):
    def __init__(self, root, store: storage.Storage):
        self._root = root
        self._storage = store

    def process(self, tables: dict[str, pa.Table]):
        for name, table in sorted(tables.items()):
            yield write_table(self._storage, storage.join(self._root, f"{name}.parquet"), table)


class ComputeStatistics(beam.PTransform):
    """(records, dead letters) -> the stats/*.parquet tables under `root`.

    Records and dead letters are combined apart and meet only as two small partials: a Flatten
    of the records with anything else would stop the runner from fusing the records' combine
    into the record path, and the local runners would then hold every record in memory."""

    def __init__(self, root: str, store: storage.Storage):
        super().__init__()
        self._root = root
        self._storage = store

    def expand(self, inputs):
        records, dead_letters = inputs
        from_records = records | "SummariseRecords" >> beam.CombineGlobally(_Partials()).without_defaults()
        from_letters = (
            dead_letters
            | "BatchDeadLetters" >> beam.BatchElements(min_batch_size=1, max_batch_size=1024)
            | "SummariseDeadLetters" >> beam.CombineGlobally(_Partials()).without_defaults()
        )
        return (
            (from_records, from_letters)
            | "BothPartials" >> beam.Flatten()
            | "Summarise" >> beam.CombineGlobally(_FinishPartials()).without_defaults()
            | "WriteStatistics" >> beam.ParDo(_WriteStatisticsFn(self._root, self._storage))
        )

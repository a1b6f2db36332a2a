"""Columnar fast paths of NormalizeRecords, one module per format that has one.

A fast path takes the lines of a RawBatch it fully understands straight to Arrow columns; every
other line goes through the format plugin exactly as before, and the two parts are merged back
in line order. tests/test_fast_normalize.py proves both give equal batches, dead letters and
counters.
"""

"""Format plugins. Every module here (but base) registers one format when imported.

Importing the package imports none of them: transforms.formats.base loads the module named as
a format when that format is asked for, and all of them when the whole registry is (names,
detection), so a worker process that parses one format does not import the others.
"""

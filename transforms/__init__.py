"""Reusable parts of labelbeam: the schema, the format plugins and the Beam transforms."""

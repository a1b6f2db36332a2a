"""Azure ML AutoML for images JSONL (parse.py: the plugin, its reader and writer)."""

from transforms.formats.azure_automl.parse import AzureAutoMLFormat, AzureAutoMLOptions, DatastoreMap, with_mask_task  # noqa: F401

"""The Beam stages of the graph, in order: read, normalize, validate, check_files, split, write,
stats; accounting is the ledger they all report through. Everything Beam-free they use lives
outside this package (formats/, checks/, schema, errors, storage, settings)."""

from transforms.stages import coders

coders.register()

"""Beam-free checks: mask PNGs, image headers, brush RLEs, target profile limits, and the
bounded thread pool that runs file checks. No Beam imports: each is a plain function or class
that tests call directly; transforms/stages/ wires them into the graph."""

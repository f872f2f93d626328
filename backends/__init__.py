"""Backends turn an (optimized) graph into an executable for concrete dims.

Each backend module defines BACKEND, a `base.Backend`: its name, the dataclass of its
options (knobs given as gc.compile(..., options={...})) and `build(graph, dims, options)
-> executable`; calling the executable with {input node: array} returns the graph's
outputs, then its update values, as NumPy arrays.
An executable that writes into a param itself (numpy's in-place updates) first calls the
`begin_commit` it is given as a second argument; the others ignore it.
An executable also has `.source`, `.kernels` and `.stats` to show what it runs.
Backends are imported on first use, and a backend's `check` says at once whether it can
run here, so triton and torch stay optional.
"""

import importlib

from graphc.errors import GraphcError

BACKENDS = {
    "reference": "graphc.backends.reference",
    "numpy": "graphc.backends.numpy",
    "triton": "graphc.backends.triton",
}


def load(name: str):
    """The Backend called `name` (its module imported on first use)."""
    if name not in BACKENDS:
        raise GraphcError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    backend = importlib.import_module(BACKENDS[name]).BACKEND
    backend.check()
    return backend

"""Optimization passes (placeholder until the pass manager lands: every level is O0)."""


def optimize(graph, level="O2"):
    return graph

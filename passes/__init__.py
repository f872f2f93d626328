"""Optimization passes: each a pure function Graph -> Graph, run as named pipelines.

    from graphc.passes import optimize
    graph = optimize(gc.Graph(outputs), "O2", verify=True, dump=print_step)

PASSES names every pass; PIPELINES lists, per level, the pass names to run in order.
Both are plain tables: adding a pass is one row in PASSES and its name in a pipeline.
"""

from __future__ import annotations

from typing import Callable

from graphc.errors import GraphcError
from graphc.ir import Graph

from .cse import cse
from .dce import dce
from .fold import fold
from .fusion import fuse
from .schedule import schedule
from .simplify import simplify
from .verify import verify as verify_step

PASSES = {
    "simplify": simplify,
    "fold": fold,
    "cse": cse,
    "dce": dce,
    "fuse": fuse,
    "schedule": schedule,
}

# simplify and fold feed each other (folding makes consts that rules match, rules make
# foldable nodes), so the cleanup runs twice; schedule comes last, after any pass that
# changes the nodes.
CLEANUP = ["simplify", "fold", "cse", "simplify", "fold", "cse", "dce"]
PIPELINES = {
    "O0": [],
    "O1": CLEANUP,
    "O2": CLEANUP + ["fuse", "schedule"],
}


class PassManager:
    """Runs passes by name. verify: check the IR after each pass (raises VerifyError
    naming the pass). dump: called as dump(pass_name, graph) after each pass."""

    def __init__(self, passes: list, verify: bool = False, dump: Callable | None = None):
        unknown = [name for name in passes if name not in PASSES]
        if unknown:
            raise GraphcError(f"unknown pass {unknown[0]!r}; passes are {', '.join(PASSES)}")
        self.passes = list(passes)
        self.verify = verify
        self.dump = dump

    def run(self, graph: Graph) -> Graph:
        for name in self.passes:
            result = PASSES[name](graph)
            if self.verify:
                verify_step(graph, result, name)
            if self.dump is not None:
                self.dump(name, result)
            graph = result
        return graph


def pipeline(level: str) -> list:
    if level not in PIPELINES:
        raise GraphcError(f"unknown optimization level {level!r}; choose one of "
                          f"{', '.join(PIPELINES)}")
    return PIPELINES[level]


def optimize(graph: Graph, level: str = "O2", *, verify: bool = False,
             dump: Callable | None = None) -> Graph:
    """Run the pipeline named `level` ("O0", "O1", "O2") on `graph`."""
    return PassManager(pipeline(level), verify, dump).run(graph)

"""Large pointwise kernels in cache-sized chunks of rows, on one thread or several.

A chunked kernel's ufunc calls run on rows [_i:_j] of every value that spans the
output's first axis, so a chunk's operands and temporaries stay in cache from one ufunc
to the next: memory traffic is the kernel's inputs and output, not each step's. With
more than one thread the chunks are shared out (NumPy's ufuncs release the GIL), each
thread with scratch arrays of its own (runtime.run_chunks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from graphc import ops
from graphc.ir import SOURCE_OPS, Node
from graphc.passes.schedule import SYMBOLIC_DIM_ESTIMATE

# A chunk is about this many elements (512 KiB of float32 an array). Measured on bench
# C, 2 cores with 1 MiB of L2 each: on one thread 64Ki-256Ki elements run within 3%,
# 1.3x faster than unchunked, 32Ki 5% slower (Python's per-call cost); on two threads
# 128Ki-256Ki run 10-15% faster than 64Ki.
CHUNK_ELEMENTS = 131072
# As many threads as the cores we may run on, the count OpenBLAS takes for its own.
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
    os.cpu_count() or 1)


@dataclass(frozen=True)
class Chunking:
    rows: int      # rows of the first axis per chunk
    total: object  # length of the first axis: an int, or a symbolic size's name
    threads: int   # how many threads share the chunks out

    @property
    def exact(self) -> bool:
        return isinstance(self.total, int) and self.total % self.rows == 0

    def loop(self, start: str, stop: str) -> list:
        bound = f"_i + {self.rows}" if self.exact else (
            f"min(_i + {self.rows}, {self.total}); _n = _j - _i")
        return [f"for _i in range({start}, {stop}, {self.rows}):", f"    _j = {bound}"]

    def wrap(self, scratch: list, more_scratch: list) -> tuple:
        """(lines before, indent, lines after) the statements of one chunk [_i:_j]: an
        inline loop over the chunks, or, with threads, a function over a range of chunks
        and its scratch arrays that _run_chunks calls once per thread (`more_scratch`:
        the scratch arrays of each further thread, in the order of `scratch`)."""
        if self.threads == 1:
            return self.loop("0", str(self.total)), 4, []
        sets = ", ".join(_tuple(names) for names in [scratch] + more_scratch)
        head = [f"def _kernel(_lo, _hi{''.join(', ' + name for name in scratch)}):"]
        head += ["    " + line for line in self.loop("_lo", "_hi")]
        return head, 8, [f"_run_chunks(_kernel, {self.total}, {self.rows}, ({sets}))"]


def _tuple(names: list) -> str:
    return f"({', '.join(names)}{',' if len(names) == 1 else ''})"


def chunking(node: Node, dims: dict, chunk_elements: int = CHUNK_ELEMENTS,
             threads: int = THREADS) -> Chunking | None:
    """How to run a fused pointwise kernel in cache-sized chunks, or None (small, or a
    body with ops other than elementwise ones and broadcasts). Every value whose shape
    spans the output's first axis is then taken a chunk at a time; smaller ones whole.
    A symbolic first axis (a generic build) is chunked if it would be at its estimate
    (passes.schedule), its chunk loop bounded at run time; a symbolic size further in
    is never chunked."""
    if node.op != "fused" or node.attrs["kind"] != "pointwise" or node.ndim == 0:
        return None
    shape = node.type.concrete_shape(dims)
    if any(isinstance(d, str) for d in shape[1:]):
        return None
    row = int(np.prod(shape[1:], dtype=np.int64))
    rows = max(1, chunk_elements // max(row, 1))
    symbolic = isinstance(shape[0], str)
    if (SYMBOLIC_DIM_ESTIMATE if symbolic else shape[0]) < 2 * rows:
        return None
    for b in node.body.nodes:
        if b.op not in SOURCE_OPS and b.op != "broadcast_to" and not ops.is_elementwise(b.op):
            return None
    return Chunking(rows, shape[0], threads if symbolic else min(threads, -(-shape[0] // rows)))


def spans_first_axis(shape: tuple, full: tuple) -> bool:
    """Whether a value of `shape` is read a chunk of rows at a time in a kernel whose
    output is `full`."""
    return len(shape) == len(full) and shape[0] == full[0]

"""The functions the generated code calls at run time (HELPERS: their names in it)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from graphc import ops, philox as philox_bits
from graphc.backends.base import label_error
from graphc.errors import GraphcError

from . import windows


def one_hot(labels, out, loc):
    depth = out.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= depth):
        label_error(labels, depth, loc)
    if not out.flags.c_contiguous:
        np.equal(labels[..., None], np.arange(depth), out=out)
        return
    # zeros, then one 1 a row by index: 3x faster than comparing every label to every
    # class, and the cost of the loss's one_hot is mostly this call's (256 x 10 in a step)
    out.fill(0)
    out.reshape(labels.size, depth)[np.arange(labels.size), labels.reshape(-1)] = 1


def gather(x, idx, axis, out, loc):
    """out = x at idx along axis (np.take_along_axis, x read at 0 on its size-1 axes),
    every index checked (ops.checked_indices) before anything is read."""
    idx = ops.checked_indices("gather", idx, x.shape[axis], loc)
    out[...] = x[ops.along_axis_index(idx, axis, x.shape)]


def scatter_add(base, idx, src, axis, out, loc):
    """out = base with src added at idx along axis (repeats accumulate: np.add.at)."""
    idx = ops.checked_indices("scatter_add", idx, base.shape[axis], loc)
    if out is not base:
        np.copyto(out, base)
    np.add.at(out, ops.along_axis_index(idx, axis, base.shape), src)


def erf(x, out):
    """The error function into `out`: the op table's (NumPy has no erf ufunc). Slow, a
    Python call an element: C kernels compute erf wherever C works."""
    out[...] = ops.erf(np.asarray(x))


def philox(key, out, dtype):
    """out = the Philox draw from key of out's shape (graphc/philox.py: the bits every
    backend computes)."""
    out[...] = philox_bits.draw(key, out.shape, dtype)


def run_chunks(kernel, total: int, rows: int, scratch: tuple):
    """Run kernel(lo, hi, *scratch arrays) over the rows [0, total), split into one range
    of whole chunks per scratch set: the first on this thread, the others on the pool's.
    Every range has finished when this returns or raises (they write shared buffers)."""
    chunks = -(-total // rows)
    bounds = [min(total, rows * (chunks * k // len(scratch))) for k in range(len(scratch) + 1)]
    futures = [_pool(len(scratch) - 1).submit(kernel, lo, hi, *arrays) for lo, hi, arrays
               in zip(bounds[1:-1], bounds[2:], scratch[1:])]
    try:
        kernel(bounds[0], bounds[1], *scratch[0])
    finally:
        for future in futures:
            future.result()


_pools = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """The threads that run chunks beside the caller's, started at first use."""
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="graphc-numpy")
    return _pools[workers]


def address(array: np.ndarray) -> int:
    """An input's or param's data address, for a C kernel (which reads it with the
    strides of a C-contiguous array)."""
    if not array.flags.c_contiguous:
        raise GraphcError(f"an array of shape {array.shape} is not C-contiguous; a param's "
                          "value must be (np.ascontiguousarray)")
    return array.ctypes.data


HELPERS = {"_one_hot": one_hot, "_erf": erf, "_gather": gather, "_scatter_add": scatter_add,
           "_philox": philox,
           "_run_chunks": run_chunks, "_address": address, "_label_error": label_error,
           **windows.HELPERS}

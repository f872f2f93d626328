"""The triton backend: every compute node of the optimized graph runs as a generated
Triton kernel, launched by a generated host function on torch tensors.

It runs on a CUDA device, or, without one, in Triton's CPU interpreter on CPU tensors
(`TRITON_INTERPRET=1` must be set before the kernels are defined; the test suite sets it).
Importing this module checks that one of the two is possible and raises
BackendUnavailable otherwise, so `gc.compile(..., backend="triton")` fails at once with
a message saying what to do, never deep inside triton.

Code generation lives in triton_codegen (kernels) and triton_host (the plan and host
function); ahead-of-time compilation for a GPU that is not here in triton_aot.
"""

from __future__ import annotations

import re

from dataclasses import dataclass

import numpy as np

from graphc.backends.base import Backend, label_error
from graphc.errors import BackendUnavailable
from graphc.ir import Graph

# The oldest triton with everything used here: the ahead-of-time path's
# `get_ptxas(arch)` is new in 3.6 (3.4 and 3.5 take no arch); `triton.knobs`, in 3.4.
# pyproject.toml's extras say the same.
MIN_TRITON = (3, 6)


def _check_available():
    """(torch, device) when kernels can run here; else BackendUnavailable saying why."""
    try:
        import torch
        import triton
    except ImportError as e:
        raise BackendUnavailable(
            f"the triton backend needs triton and torch ({e}); install them with "
            "`pip install graphc[triton]`, or use backend='numpy'") from None
    found = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", triton.__version__).groups())
    if found < MIN_TRITON:
        raise BackendUnavailable(
            f"the triton backend needs triton >= {'.'.join(map(str, MIN_TRITON))}, and "
            f"triton {triton.__version__} is installed; upgrade it with "
            "`pip install -U 'graphc[triton]'`, or use backend='numpy'")
    if torch.cuda.is_available():
        return torch, "cuda"
    if triton.knobs.runtime.interpret:   # reads TRITON_INTERPRET (or the knob, if set)
        return torch, "cpu"
    raise BackendUnavailable(
        "the triton backend needs a CUDA device or Triton's CPU interpreter: there is no "
        "CUDA device here, and TRITON_INTERPRET=1 was not set (set it in the environment "
        "before starting Python, or before triton is first imported). Use backend='numpy' "
        "on a CPU; `graphc kernels FILE` still generates and compiles kernels for sm_90.")


torch, DEVICE = _check_available()

from graphc.backends import triton_aot, triton_host  # noqa: E402  (after the check)


@dataclass(frozen=True)
class Options:
    """The triton backend's knobs (gc.compile(..., options={...}))."""
    # the largest reduction row held in one block; longer rows take the looped path
    max_row_block: int = 4096
    autotune: bool | None = None    # time several block sizes (None: on a CUDA device)


def build(graph: Graph, dims: dict, options: Options | None = None,
          max_row_block=None) -> "TritonExecutable":
    """Generate, load and wrap the program for `graph` at `dims`."""
    options = options or Options()
    _check_available()   # TRITON_INTERPRET may have been unset since this module loaded
    autotune = DEVICE == "cuda" if options.autotune is None else options.autotune
    program = triton_host.generate(graph, dims, device=DEVICE, autotune=autotune,
                                   max_row_block=max_row_block or options.max_row_block)
    return TritonExecutable(graph, dims, program)


class TritonExecutable:
    def __init__(self, graph: Graph, dims: dict, program: triton_host.Program):
        self.graph, self.dims, self.program = graph, dict(dims), program
        self.module = triton_host.load_module(program.source)
        self.source = program.source
        self.kernels = [k.describe() for k in program.kernels]
        self.stats = {"kernels": len(program.kernels), "views": program.views,
                      "device": DEVICE, "splits": list(program.notes)}
        # consts never change: convert them once
        self._consts = {n: _to_tensor(n.value) for n in program.sources if n.op == "const"}

    def __call__(self, feeds: dict, begin_commit=None) -> list:
        tensors = []
        for node in self.program.sources:
            if node.op == "const":
                tensors.append(self._consts[node])
            else:
                tensors.append(_to_tensor(feeds[node] if node.op == "input" else node.value))
        # The interpreter runs kernels with NumPy, which warns where a tl.where's unused
        # branch divides by zero; inf and nan are values here, as in the reference.
        with np.errstate(all="ignore"):
            results, labels = self.module.run(tensors)
        for check, found in zip(self.program.checks, labels):
            _raise_on_bad_labels(check, found.cpu().numpy())
        return [np.array(t.cpu().numpy()) for t in results]

    def compile_for(self, arch="sm_90") -> list:
        """Compile every kernel ahead of time for `arch` (no GPU needed); one dict of
        stats per kernel: registers, spill bytes, shared memory, PTX/cubin sizes."""
        return triton_aot.compile_program(self.program, arch)


def _raise_on_bad_labels(check, found: np.ndarray):
    """A one_hot's check buffer holds 0 where a label was in range and the label where it
    was not: raise the error the other backends raise for the first one, before any
    result is returned (so a failed step commits no update)."""
    if found.any():
        label_error(found, check.depth, check.loc)


def _to_tensor(array):
    array = np.asarray(array)
    # torch wants writable memory (consts are read-only); kernels index it row-major
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = array.copy()
    return torch.from_numpy(array).to(DEVICE)


BACKEND = Backend("triton", Options, build)

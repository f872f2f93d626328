"""The triton backend: every compute node of the optimized graph runs as a generated
Triton kernel, launched by a generated host function on torch tensors.

It runs on a CUDA device, or, without one, in Triton's CPU interpreter on CPU tensors
(`TRITON_INTERPRET=1` must be set before triton is imported; the test suite sets it).
`BACKEND.check` (device.py) says whether one of the two is possible, so
`gc.compile(..., backend="triton")` fails at once with a message saying what to do.

One idea a module:
- program.py: the graph as kernels, each lowered to a loop nest (backends/lower) and
  rendered; views as index arithmetic; the buffer plan (passes/schedule.py's, the
  numpy backend's planner);
- render.py (with values.py, elementwise.py, blocks.py): Triton source from a loop nest;
- host.py: the generated module and its host function;
- build.py: the executable (buffers allocated once, feeds in, results out) and Options;
- aot.py: ahead-of-time compiles for a GPU that is not here (`graphc kernels`).
Only device.py, the generated module and aot.py's child process import triton or torch,
so kernels can be generated, read and compiled ahead of time without a GPU.
"""

from graphc.backends.base import Backend

from .build import Options, build
from .device import check

BACKEND = Backend("triton", Options, build, check, ahead_of_time=True)

"""The numpy backend: straight-line Python over preallocated buffers, NumPy calls and C.

One module an idea:
  build.py       the function writer: values, buffers, one Job a kernel, the source
  strategy.py    THE table: how each kernel runs (C loops | gemm + C epilogue |
                 chunked ufuncs | ufuncs), each choice with its reason
  job.py         what a renderer is told about one kernel
  c.py           C loops: a Job lowered (backends/lower) and rendered (c_render.py)
  ufuncs.py      a kernel as NumPy calls;  ufunc_ops.py: one op as NumPy calls
  gemm.py        the matmul epilogues BLAS's gemm does for free
  chunks.py      large pointwise kernels in cache-sized chunks, on threads
  namespace.py   the generated function's names (the user's, and its own)
  runtime.py     what the generated code calls;  executable.py: what a build returns
"""

from graphc.backends.base import Backend

from .build import Options, build, fixed_dims

BACKEND = Backend("numpy", Options, build, fixed_dims=fixed_dims)

"""NumPy's own BLAS, called directly for what np.matmul cannot say: C = alpha*A@B + beta*C.

np.matmul always writes `A @ B` into its output, so an SGD update `W - lr * (x.T @ g)`
costs the matmul plus two passes over W's size (scale, subtract). BLAS's gemm does the
scaling and the accumulation while it stores its tiles, for free. SciPy's BLAS wrappers
would do it too, but SciPy bundles a second OpenBLAS with a thread pool of its own, and
two pools spinning on the same cores make every matmul slower. So graphc calls the very
library NumPy loaded, through ctypes: same kernels, same threads.

NumPy's wheels (Linux, Windows, macOS on x86) ship OpenBLAS built with 64-bit integers
and suffixed symbol names (`scipy_cblas_sgemm64_`); `find()` looks for those in the
folder of libraries that ships beside NumPy. A NumPy built another way (Accelerate, MKL,
a distribution's LP64 OpenBLAS) gives None: the numpy backend then writes np.matmul and
ufunc epilogues, as it always can.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# Symbol names of cblas_?gemm with 64-bit integers, as NumPy's wheels and others ship them.
_SYMBOLS = ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_")
_LETTER = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}
_SCALAR = {"s": ctypes.c_float, "d": ctypes.c_double}


class Gemm:
    """C = alpha * A @ B + beta * C for 2-D float32 or float64 arrays, in place in C."""

    def __init__(self, library: ctypes.CDLL, symbol: str, path: str):
        self.path = path
        self._functions = {}
        for dtype, letter in _LETTER.items():
            function = getattr(library, symbol.format(letter))
            i64, pointer, scalar = ctypes.c_int64, ctypes.c_void_p, _SCALAR[letter]
            function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64,
                                 scalar, pointer, i64, pointer, i64, scalar, pointer, i64]
            function.restype = None
            self._functions[dtype] = function

    def supports(self, dtype) -> bool:
        return np.dtype(dtype) in self._functions

    def __call__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, alpha: float,
                 beta: float):
        """`c` may have any shape holding m*n elements, C-contiguous: a (1, n) row sum
        lands in an (n,) bias. a and b must not overlap c (the caller guarantees it)."""
        (m, k), n = a.shape, b.shape[1]
        if b.shape[0] != k or c.size != m * n or not c.flags.c_contiguous or not (
                a.dtype == b.dtype == c.dtype):
            raise ValueError(f"gemm: operands {a.shape} {a.dtype} @ {b.shape} {b.dtype} "
                             f"do not fit the output {c.shape} {c.dtype}")
        if m * n * k == 0:  # BLAS would not touch c; the product is zeros
            np.multiply(c, beta, out=c)
            return
        a, trans_a, lda = _operand(a)
        b, trans_b, ldb = _operand(b)
        self._functions[c.dtype](_ROW_MAJOR, trans_a, trans_b, m, n, k, alpha,
                                 a.ctypes.data, lda, b.ctypes.data, ldb, beta,
                                 c.ctypes.data, max(n, 1))


def _operand(x: np.ndarray) -> tuple:
    """(array, transpose flag, leading dimension) of a row-major gemm operand: a C-ordered
    matrix as it is, a transposed view (F-ordered) with the transpose flag, anything
    else copied first."""
    rows, cols = x.shape
    item = x.itemsize
    row_stride, col_stride = x.strides
    if (col_stride == item or cols == 1) and row_stride >= max(cols, 1) * item and (
            row_stride % item == 0):
        return x, _NO_TRANS, row_stride // item
    if (row_stride == item or rows == 1) and col_stride >= max(rows, 1) * item and (
            col_stride % item == 0):
        return x, _TRANS, col_stride // item
    return _operand(np.ascontiguousarray(x))


@functools.cache
def find() -> Gemm | None:
    """The gemm of the BLAS NumPy loaded, or None when it cannot be found and trusted."""
    numpy_dir = os.path.dirname(np.__file__)
    for folder in (numpy_dir + ".libs", os.path.join(numpy_dir, ".dylibs")):
        for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            for symbol in _SYMBOLS:
                if all(hasattr(library, symbol.format(letter)) for letter in "sd"):
                    return Gemm(library, symbol, path)
    return None

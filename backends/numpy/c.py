"""C loops for the numpy backend: a Job lowered (backends/lower) and rendered as C
(backends/c_render.py), the Python line that calls it, and the library of a function's
C kernels.

Every C kernel of a function is compiled (ccompile.py: in units of bounded size) once
all its kernels are written. A kernel reads each operand through that operand's own strides (a
transposed weight, a slice, a broadcast row are read where they lie, never copied), at
its data address: fixed at build time for the arrays the function owns, read at the
start of each call for inputs and params. An operand stored where the output goes (the
buffer plan's in-place kernels, an update written into its param) must be read only at
the element the kernel then writes, or the kernel stays NumPy.

In a shape-generic function the kernel takes the symbolic sizes (its loop bounds) and
the numbers that depend on them as arguments, and arrays of the frame at addresses the
frame holds; an operand whose strides would depend on a symbolic size (a multiple of
its probe prime, job.Binding) is refused, the kernel then NumPy calls.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from graphc.backends import c_render, ccompile
from graphc.backends.lower import index as ix
from graphc.backends.lower.loops import Load, LoopNest, Unsupported, lower

from .job import Job, Operand


@dataclass(frozen=True)
class CCall:
    """A rendered C kernel and how the generated Python calls it."""
    function: c_render.CFunction
    nest: LoopNest
    labels: tuple | None        # (labels' expression, depth, loc) of its one_hot check


def loops(job: Job, product_of=None, name: str = "_k") -> CCall:
    """The C kernel of a Job (raises Unsupported, a one-line reason, if C cannot do it).
    product_of: in a matmul kernel, the body value gemm leaves in the output (the C
    kernel then computes the epilogue from it, in place)."""
    known = {p: o.known for p, o in job.leaves.items() if o.known is not None}
    nest = lower(job.kernel, job.shapes, known, product_of)
    if 0 in nest.domain:  # C would read an empty operand to fill a reduction's start
        raise Unsupported("an empty domain (NumPy's calls need no loop)")
    for k, operand in enumerate(job.operands):
        if operand.array is None and _loaded(nest, k):
            raise Unsupported("an operand is a copy (a reshape of a strided view)")
        if _loaded(nest, k) and any(s and s % p == 0 for s in _strides(operand)
                                    for p in job.binding.primes):
            raise Unsupported("an operand's strides depend on a symbolic size")
    _check_in_place(nest, job, after_product=product_of is not None)
    operands = [c_render.Operand(o.node.dtype, _strides(o)) for o in job.operands]
    function = c_render.render(name, nest, operands, job.kernel.result.dtype)
    return CCall(function, nest, _labels(nest, job))


def _loaded(nest: LoopNest, k: int) -> bool:
    return any(isinstance(v, Load) and v.operand == k for v in nest.values)


def _strides(operand: Operand) -> tuple:
    if operand.array is None:
        return ()
    return tuple(s // (operand.array.itemsize or 1) for s in operand.array.strides)


def _check_in_place(nest: LoopNest, job: Job, after_product: bool):
    """An operand stored where the output goes may be read only where the kernel then
    writes, element for element (a row's reduction reads the row before the row is
    written); after a product, not at all: the output holds the product by then."""
    store = ix.flatten(nest.store, nest.out_shape)
    for k, operand in enumerate(job.operands):
        if not operand.in_output or not _loaded(nest, k):
            continue
        if after_product:
            raise Unsupported("the epilogue reads an operand stored where the product goes")
        if operand.array.dtype != job.dtype:
            raise Unsupported("the output overwrites an operand of another dtype")
        offset = _elements_from_output(operand, job.output)
        for value in nest.values:
            if isinstance(value, Load) and value.operand == k and (
                    ix.address(value.index, _strides(operand), offset) != store):
                raise Unsupported("the output overwrites an operand read in another layout")


def _elements_from_output(operand: Operand, output: Operand) -> int:
    """Where an operand stored in the output's memory starts, in elements from the
    output's first element."""
    if operand.per_call is not None:
        return operand.offset - output.offset
    start = operand.array.__array_interface__["data"][0]
    return (start - output.array.__array_interface__["data"][0]) // operand.array.itemsize


def _labels(nest: LoopNest, job: Job):
    """The one_hot check's labels as the Python code names them, for the error."""
    if not nest.checks:
        return None
    if len(nest.checks) > 1:
        raise Unsupported("two one_hots in one kernel")
    (check,) = nest.checks
    value = nest.values[check.value]
    if not isinstance(value, Load):  # (label_error finds the bad label in the labels)
        raise Unsupported("a one_hot of computed labels")
    return job.operands[value.operand].expr, check.depth, check.loc


# --- the call ------------------------------------------------------------------------

def call_line(call: CCall, job: Job, namespace) -> str:
    """The Python statement that runs the kernel (raising one_hot's error if it says a
    label was out of range)."""
    args = [_address(job.operands[k], namespace) for k in call.function.operands]
    args.append(_address(job.output, namespace))
    if call.function.scratch:
        elements, dtype = call.function.scratch
        scratch = namespace.scratch.take((elements,), np.dtype(dtype), set())
        args.append(namespace.address(namespace.scratch.arrays[scratch])
                    if scratch in namespace.scratch.arrays else
                    namespace.address_in_frame(scratch))
    args += list(call.function.sizes)   # the generated code's names of the sizes
    args += [namespace.runtime_number(v.number) for v in call.function.numbers]
    text = f"{call.function.name}({', '.join(args)})"
    if call.labels is not None:
        labels, depth, loc = call.labels
        text = f"if {text}: _label_error({labels}, {depth}, {loc!r})"
    return text


def _address(operand: Operand, namespace) -> str:
    if operand.framed:
        return namespace.address_in_frame(operand.expr)
    if operand.per_call is None:
        return namespace.address(operand.array)
    name = namespace.address_per_call(operand.per_call)
    offset = operand.offset * operand.array.itemsize
    return f"{name} + {offset}" if offset else name


# --- the library ---------------------------------------------------------------------

# the ctypes of a number argument, by dtype (c_render.C_TYPES's)
_CTYPES = {"float32": ctypes.c_float, "float64": ctypes.c_double, "bool": ctypes.c_ubyte,
           "int32": ctypes.c_int32, "int64": ctypes.c_int64}

class Library:
    """The C kernels of one generated function, compiled together (ccompile.py)."""

    def __init__(self, options: ccompile.Options):
        self.functions = []
        self.options = options      # the compiler's run: timeout, budget, unit size
        self.files = ()             # the libraries' paths, once loaded

    def next_name(self) -> str:
        """The next kernel's name: `_k<n>` (a generated name, see namespace.py)."""
        return f"_k{len(self.functions)}"

    def add(self, call: CCall):
        assert call.function.name == self.next_name()
        self.functions.append(call.function)

    def load(self, globals_: dict) -> str:
        """Compiles the kernels, binds each by name in `globals_`; returns their source as
        comment lines, shown after the Python function."""
        if not self.functions:
            return ""
        source = "\n".join(f.source for f in self.functions)
        functions = ccompile.compile_kernels({f.name: f.source for f in self.functions},
                                             self.options)
        self.files = functions.files
        for f in self.functions:
            function = functions[f.name]
            function.argtypes = [ctypes.c_void_p] * (len(f.operands) + 1 + bool(f.scratch)) + [
                ctypes.c_int64] * len(f.sizes) + [_CTYPES[v.dtype] for v in f.numbers]
            function.restype = ctypes.c_int
            globals_[f.name] = function
        flags = " ".join(ccompile.FLAGS)
        return (f"\n# C kernels, compiled with `cc {flags}`:\n"
                + "".join(f"# {line}\n" if line else "#\n" for line in source.splitlines()))
